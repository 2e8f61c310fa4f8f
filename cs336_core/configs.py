"""What every config object shares: building a dataclass from a dict, and checking one number.

Light on purpose (no torch): ModelConfig, TrainConfig and the optimizers all validate through here,
so a rule and its message are written once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls(**data)`, after a ValueError naming the keys that are not fields of `cls` ("unknown X
    fields: [...]") or the fields without a default that `data` lacks ("X needs [...]")."""
    fields = dataclasses.fields(cls)
    unknown = set(data) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = required - set(data)
    if missing:
        raise ValueError(f"{cls.__name__} needs {sorted(missing)}")
    return cls(**data)


def check_number(name: str, value: Any, minimum: float, *, exclusive: bool = False, strict: bool = True) -> Any:
    """`value` if it is >= `minimum` (> with `exclusive`), else ValueError naming `name`.

    strict: it must also be a finite int or float (not a bool), and comes back as a float. Without
    strict only the comparison is made (as torch's optimizers do: nan and inf pass, a value that
    cannot be compared raises TypeError) and the value comes back unchanged.
    """
    if strict:
        real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = real and (value > minimum if exclusive else value >= minimum)
    else:
        ok = not (value <= minimum if exclusive else value < minimum)
    if not ok:
        relation = ">" if exclusive else ">="
        raise ValueError(f"{name} must be a {'finite ' if strict else ''}number {relation} {minimum}, got {value!r}")
    return float(value) if strict else value
