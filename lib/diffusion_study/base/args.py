"""Scalar argument checks shared by the library: one wording for every bad-input error, naming the
argument, its value and the valid choices or range."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable


def choose(kind: str, name: str, valid: Iterable[str]) -> str:
    """Return `name` if it is one of `valid`, else raise ValueError listing the valid choices."""
    valid = list(valid)
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid choices: {', '.join(map(repr, valid))}")
    return name


def positive_int(name: str, value) -> int:
    """Return `value` as an int if it is a positive integer (an int, or a float/str holding one), else
    raise ValueError naming the parameter: "abc", None, nan, inf, 2.5, 0 and True are all refused."""
    try:
        number = float(value) if isinstance(value, str) else value
        if hasattr(number, "item") and getattr(number, "ndim", None) == 0:  # numpy / torch scalars
            number = number.item()
        ok = (not isinstance(number, bool) and isinstance(number, numbers.Real) and math.isfinite(number)
              and int(number) == number and int(number) > 0)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(number)


def probability(name: str, value: float, *, open_left: bool = False) -> float:
    """Return `value` if it lies in [0, 1] ((0, 1] with open_left), else raise ValueError."""
    value = float(value)
    low_ok = value > 0 if open_left else value >= 0
    if not (low_ok and value <= 1):
        interval = "(0, 1]" if open_left else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- chapter parameters


def writable_folder(path: str | os.PathLike) -> str | None:
    """None if a folder can be made (or is) at `path` and written, else why not; creates nothing."""
    path = os.path.abspath(os.fspath(path))
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"permission denied at {probe}"
    import tempfile

    try:  # access() says yes to root everywhere: try it (an empty folder, removed at once)
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=probe))
    except OSError as exc:
        return f"{exc.strerror or exc} at {probe}"
    return None


# ----------------------------------------------------------------------------- tensor arguments
# Shape and dtype checks at the library's entry points: host-side only (shapes, dtypes), no device sync.


