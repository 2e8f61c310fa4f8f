"""The `cs336-train` command: `python -m cs336_core.training --config cfg.json [--field value ...]`.

Every TrainConfig and ModelConfig field has a flag (`--resume never` starts over); the TrainResult
is printed as JSON with its numbers rounded to 4 significant digits (OUT_DIR/result.json keeps them
whole). The progress bar shows the loss, last val loss, tokens/s and MFU. Under torchrun only rank 0
prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from cs336_core.model import ModelConfig
from cs336_core.progress import ConsoleProgress, round_floats
from cs336_core.training.checkpoint import CheckpointError
from cs336_core.training.config import TrainConfig
from cs336_core.training.lock import RunLockedError
from cs336_core.training.loop import train
from cs336_core.training.run_dir import ResumeMismatch
from cs336_core.training.tracking import TrackingUnavailable


def _flag_parser(annotation: str) -> Callable[[str], Any]:
    """Flags take JSON values (numbers, true/false, null, lists); string fields take the text as is."""
    if annotation.startswith("str"):
        return str

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return parse


def _add_field_flag(parser, f: dataclasses.Field, dest: str, aliases: list[str] = ()) -> None:
    """`--field-name VALUE` for a dataclass field; a bool flag alone means true (`--compile`)."""
    is_bool = str(f.type) == "bool"
    default = "required" if f.default is dataclasses.MISSING else f"default {f.default}"
    parser.add_argument("--" + f.name.replace("_", "-"), *aliases, dest=dest, type=_flag_parser(str(f.type)),
                        default=argparse.SUPPRESS, nargs="?" if is_bool else None,
                        const=True if is_bool else None, metavar="BOOL" if is_bool else f.name.upper(),
                        help=f"{f.type} ({default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336-train",
        description="Train a Transformer LM on memory-mapped token files. Resumes OUT_DIR/ckpt/latest.pt if the run "
                    "there was started with the same config (--resume never archives it and starts over).",
    )
    parser.add_argument("--config", help="a TrainConfig JSON file; the flags below override its values")
    aliases = {"train_path": ["--train"], "valid_path": ["--valid"], "max_steps": ["--steps"]}
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            _add_field_flag(parser, f, f.name, aliases.get(f.name, []))
    model_flags = parser.add_argument_group("model (ModelConfig fields)")
    for f in dataclasses.fields(ModelConfig):
        _add_field_flag(model_flags, f, "model." + f.name)
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    data: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        if not Path(config_path).is_file():
            parser.error(f"config file not found: {config_path}")
        try:
            data = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            parser.error(f"config file {config_path} is not valid JSON: {error}")
    data["model"] = dict(data.get("model", {}))
    for key, value in args.items():
        if key.startswith("model."):
            data["model"][key.removeprefix("model.")] = value
        else:
            data[key] = value
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = ConsoleProgress(unit="step") if is_main else None
    try:
        result = train(config, progress=progress)
    except (RunLockedError, ResumeMismatch, CheckpointError, TrackingUnavailable) as error:
        # A refusal that says what to do, not a bug: one line instead of a traceback.
        print(f"cs336-train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    if is_main:
        print(json.dumps(round_floats(result.to_dict()), indent=2))
    return 0
