"""Versions Dagster compares to mark assets stale: the code version of an asset (the source it runs and
the knobs it runs with) and the data version of what an asset produced (its config and its files).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from dagster import DataVersion


# The project's own packages: imports of these are followed, everything else is a dependency pinned elsewhere.
_PACKAGES = ("cs336_core", "cs336_assets")
# The presets module is data: the knobs an asset runs with are hashed as its config, so editing one
# preset (or adding one) must not mark every asset of every other preset stale.
_NOT_FOLLOWED = {"cs336_assets.presets"}
# The cs336_core sources code versions hash; tests point this at a copy to see versions change.
CORE_DIR = Path(importlib.util.find_spec("cs336_core").origin).parent


def code_version(asset_file: str, config: Any = None, *, core_dir: str | Path | None = None) -> str:
    """Hash of the source an asset runs (its module and every project module reachable by imports,
    C sources of extension modules included) and the configuration it runs with.

    The imports are read from the source, so a new helper module, `files.py` or the tokenizer's C
    accelerator cannot be left out the way a hand-kept list leaves them out. Changing any of that
    code or a knob changes the version, and Dagster marks the asset stale.
    """
    asset_path = Path(asset_file).resolve()
    dirs = {"cs336_core": Path(core_dir or CORE_DIR).resolve(), "cs336_assets": _package_root(asset_path)}
    digest = hashlib.sha256()
    for path in _reachable_sources([asset_path], dirs):
        top, relative = _locate(dirs, path)
        digest.update(f"{top}/{relative.as_posix()}\0".encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def _package_root(source: Path) -> Path:
    """The top-level package directory holding `source` (the outermost parent with an __init__.py)."""
    root = source.parent
    while (root.parent / "__init__.py").is_file():
        root = root.parent
    return root


def _reachable_sources(seeds: list[Path], dirs: dict[str, Path]) -> list[Path]:
    """`seeds` and every project source file their imports reach, transitively, sorted."""
    seen: set[Path] = set()
    todo = list(seeds)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.suffix in (".c", ".h"):  # a C source: the headers it includes from beside it
            todo.extend(_c_includes(path))
            continue
        if path.suffix != ".py":
            continue
        top, relative = _locate(dirs, path)
        package = ".".join((top, *relative.parent.parts))
        stat = path.stat()
        modules, names = _imports(str(path), package, stat.st_mtime_ns, stat.st_size)
        for module in modules - _NOT_FOLLOWED:
            # A top-level package's __init__ only re-exports lazily (cs336_core) or builds the
            # definitions (cs336_assets); its submodules are what runs.
            if module not in _PACKAGES:
                todo.extend(_source_or_package(dirs, module))
        for name in names - _NOT_FOLLOWED:  # `from X import name`: a submodule, or an attribute of X
            source = _module_source(dirs, name)
            if source is not None:
                todo.append(source)
            elif name.rpartition(".")[0] in _PACKAGES:
                # An attribute a top-level package re-exports lazily: hash the whole package
                # rather than miss the module it comes from.
                todo.extend(_package_sources(dirs[name.partition(".")[0]]))
    return sorted(seen)


def _c_includes(path: Path) -> list[Path]:
    """The files a C source includes with `#include "name"` that lie beside it."""
    names = re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(errors="replace"), flags=re.MULTILINE)
    return [path.parent / name for name in names if (path.parent / name).is_file()]


def _locate(dirs: dict[str, Path], path: Path) -> tuple[str, Path]:
    """(top-level package, path inside it) of a project source file."""
    for top, directory in dirs.items():
        if path.is_relative_to(directory):
            return top, path.relative_to(directory)
    raise ValueError(f"{path} is in neither of {sorted(map(str, dirs.values()))}")


def _module_source(dirs: dict[str, Path], module: str) -> Path | None:
    """The source of a dotted module: a .py file, a package's __init__.py, or a C extension's .c."""
    top, _, rest = module.partition(".")
    base = dirs[top].joinpath(*rest.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py", base.with_suffix(".c")):
        if path.is_file():
            return path
    return None


def _source_or_package(dirs: dict[str, Path], module: str) -> list[Path]:
    source = _module_source(dirs, module)
    # Unresolvable (a module the scan cannot place): the whole package rather than nothing.
    return [source] if source is not None else _package_sources(dirs[module.partition(".")[0]])


def _package_sources(package_dir: Path) -> list[Path]:
    return sorted(p for suffix in ("*.py", "*.c", "*.h") for p in package_dir.rglob(suffix)
                  if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=None)
def _imports(path: str, package: str, mtime_ns: int, size: int) -> tuple[frozenset[str], frozenset[str]]:
    """(modules, names) of the project a source file imports anywhere (function bodies too).

    `from X import y` yields module X and name X.y (y may be a submodule or an attribute of X).
    `mtime_ns` and `size` are part of the cache key, so an edited file is read again.
    """
    tree = ast.parse(Path(path).read_bytes(), filename=path)
    modules: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            modules.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")

    def ours(found: set[str]) -> frozenset[str]:
        return frozenset(n for n in found if n.partition(".")[0] in _PACKAGES)

    return ours(modules), ours(names)


# Files up to this size are hashed whole; a larger one (a multi-GB corpus) by size, mtime and its
# first and last MiB, so that versioning an 11 GB corpus costs milliseconds, not a minute.
_FULL_HASH_LIMIT = 256 << 20
_EDGE_BYTES = 1 << 20


def _file_digest(path: Path, digest) -> None:
    stat = path.stat()
    digest.update(f"{path.name}:{stat.st_size}".encode())
    with open(path, "rb") as f:
        if stat.st_size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f"{stat.st_mtime_ns}".encode())
            digest.update(f.read(_EDGE_BYTES))
            f.seek(-_EDGE_BYTES, 2)
            digest.update(f.read(_EDGE_BYTES))


def output_data_version(effective_config: Any, *outputs: str | Path) -> DataVersion:
    """The data version of what an asset produced: its effective config plus a digest of its files.

    Dagster's default data version only follows code versions and inputs, so an asset rebuilt with
    other run config (say `max_steps: 400`) would keep its old version and leave everything
    downstream marked fresh. Returning this from every asset makes a different product a new
    version, and Dagster then marks the downstream assets stale.
    """
    digest = hashlib.sha256(json.dumps(effective_config, sort_keys=True, default=str).encode())
    for output in outputs:
        path = Path(output)
        # Hidden files are locks and temporary files of atomic writes, not part of the product.
        files = (sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                 if path.is_dir() else [path])
        for file in files:
            _file_digest(file, digest)
    return DataVersion(digest.hexdigest()[:16])
