"""A chapter's papermill parameters checked before any work: every name known, every value of the type
and in the range the chapter declares (its profiles' sizes and LIMITS); one line per refusal."""

from __future__ import annotations

import math
import numbers
import os


class ParameterError(ValueError):
    """A chapter parameter out of its range. The message is one line: "parameter NAME = VALUE: must be ...";
    `name` is the parameter's name."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name


PROFILES = ("smoke", "cpu", "gpu")
_FIXED = ("profile", "seed", "out_dir")  # every chapter's parameters with their own rules


def parse_scalar(text: str):
    """A `-p NAME VALUE` value read as papermill's -p reads it: "None" -> None, "True"/"False" -> bool,
    "5" -> 5, "1e-3" -> 0.001, "nan" -> nan; anything else stays text."""
    stripped = text.strip()
    if stripped in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[stripped]
    for number in (int, float):
        try:
            return number(stripped)
        except ValueError:
            pass
    return text


def parse_text(text: str):
    """A parameter given as text for a non-string parameter: `parse_scalar`, else YAML ("[0, 3]" -> [0, 3],
    which papermill's -p keeps a string); text YAML cannot read stays text."""
    value = parse_scalar(text)
    if not isinstance(value, str):
        return value
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml ships with papermill and jupyter
        import ast

        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _spec(examples: list, limit=None) -> dict:
    """What a parameter accepts, read off the values the chapter gives it (its default, its profile sizes):
    integers >= 1 (or >= the smallest given), finite numbers > 0 (or >= 0 when a 0 is given), strings
    (from the given ones, in lists), booleans, and non-empty lists of these. `limit` = (low, high) or
    {"low", "high", "min_len"} from the chapter's LIMITS overrides the bounds."""
    examples = [e for e in examples if e is not None]
    if not examples:
        return {"kind": "any"}
    if all(isinstance(e, (list, tuple)) for e in examples):
        elements = [x for e in examples for x in e]
        element = _spec(elements, limit)
        min_len = limit.get("min_len", 1) if isinstance(limit, dict) else 1
        if element["kind"] == "str":
            element["choices"] = sorted(set(elements), key=elements.index)
        return {"kind": "list", "element": element, "min_len": min_len, "example": examples[0]}
    if all(isinstance(e, bool) for e in examples):
        return {"kind": "bool"}
    if all(isinstance(e, str) for e in examples):
        return {"kind": "str"}
    if all(_is_int(e) for e in examples):
        spec = {"kind": "int", "low": min(1, *examples), "high": None}
    elif all(_is_real(e) for e in examples):
        low = min(examples)
        spec = {"kind": "real", "low": 0 if low > 0 else min(0, low), "open": low > 0, "high": None}
    else:
        return {"kind": "any"}
    if isinstance(limit, dict):
        bounds = {k: limit[k] for k in ("low", "high") if k in limit}
    elif limit is not None:
        bounds = dict(zip(("low", "high"), tuple(limit)[:2]))
    else:
        bounds = {}
    if "low" in bounds:
        spec["open"] = False
    spec.update(bounds)
    return spec


def _plural(word: str, plural: bool) -> str:
    return {"an integer": "integers", "a finite number": "finite numbers", "a string": "strings",
            "true or false": "true or false"}.get(word, word) if plural else word


def _requirement(spec: dict, plural: bool = False) -> str:
    """The rule a spec states, e.g. "an integer >= 1", "a finite number > 0"."""
    kind = spec["kind"]
    if kind in ("int", "real"):
        text = _plural("an integer" if kind == "int" else "a finite number", plural)
        low, high = spec.get("low"), spec.get("high")
        if low is not None and high is not None:
            return f"{text} in [{low}, {high}]"
        if low is not None:
            return f"{text} {'>' if spec.get('open') else '>='} {low}"
        return f"{text} <= {high}" if high is not None else text
    if kind == "str":
        choices = spec.get("choices")
        if choices:
            return ("values" if plural else "one") + " from " + ", ".join(map(repr, choices))
        return _plural("a string", plural)
    if kind == "bool":
        return "true or false"
    if kind == "list":
        least = f"a list of at least {spec['min_len']} " if spec["min_len"] > 1 else "a non-empty list of "
        return least + _requirement(spec["element"], plural=True)
    return "a value"


def _read(value, spec: dict):
    """A string given for a non-string parameter, read as YAML ("[0, 3]" -> [0, 3]; "16,64" as a list)."""
    if isinstance(value, str) and spec["kind"] not in ("str", "any"):
        value = parse_text(value)
        if spec["kind"] == "list" and isinstance(value, str) and "," in value:
            value = parse_text(f"[{value}]")  # -p gap_Ts 16,64
    return value


def _conform(value, spec: dict):
    """`value` in the form `spec` asks for, or raise ValueError (message: the requirement)."""
    kind = spec["kind"]
    if kind == "any":
        return value
    value = _read(value, spec)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    if kind == "list":
        if not isinstance(value, (list, tuple)) or len(value) < spec["min_len"]:
            raise ValueError
        return [_conform(v, spec["element"]) for v in value]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if kind == "str":
        if not isinstance(value, str) or (spec.get("choices") and value not in spec["choices"]):
            raise ValueError
        return value
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError
    if kind == "int":
        if int(value) != value:
            raise ValueError
        value = int(value)
    else:
        value = float(value)
    low, high = spec.get("low"), spec.get("high")
    if low is not None and (value <= low if spec.get("open") else value < low):
        raise ValueError
    if high is not None and value > high:
        raise ValueError
    return value


def _how_to_pass(name: str, spec: dict) -> str:
    example = spec.get("example") or []
    shown = "[" + ", ".join(map(str, example)) + "]"
    return f'; pass a list in brackets: -p {name} "{shown}"'


def check_chapter_parameters(values: dict, params, sizes: dict[str, dict], limits: dict | None = None, *,
                             cuda_available=None) -> dict:
    """Check a chapter's parameter `values` against what the chapter declares, before any work; return
    every parameter's value (the given ones in the form the chapter uses: "[0, 3]" read as a list, 4.0
    as 4) or raise ParameterError naming the first bad one, its value and the valid range.

    params: the parameters cell, [(name, default, comment)] or {name: default}; sizes: SIZES
    {profile: {name: value}}; limits: the chapter's LIMITS {name: (low, high)} (None: no bound; for a
    list, of each entry) or {name: {"low", "high", "min_len"}}. Each value is checked against the kind
    of its default and profile values: integers >= 1 (seed >= 0), finite numbers, strings (lists of
    strings: from the chapter's own), non-empty lists. A value None means "the profile's value" where
    the default is None. `cuda_available()` is asked only for profile 'gpu'. out_dir is checked to be a
    string here; where it can be written depends on the working directory (notebook.check_parameters).
    """
    __tracebackhide__ = True
    defaults = dict(params) if isinstance(params, dict) else {p[0]: p[1] for p in params}
    limits = limits or {}
    for name, value in values.items():
        if name not in defaults:
            raise ParameterError(f"parameter {name} = {value!r}: unknown; this chapter's parameters are "
                                 f"{', '.join(defaults)}", name)
    resolved = {**defaults, **values}

    profile = resolved.get("profile", "cpu")
    if profile not in PROFILES:
        raise ParameterError(f"parameter profile = {profile!r}: must be one of {', '.join(map(repr, PROFILES))}",
                             "profile")
    if "seed" in resolved:
        try:
            resolved["seed"] = _conform(resolved["seed"], {"kind": "int", "low": 0})
        except (ValueError, TypeError, OverflowError):
            raise ParameterError(f"parameter seed = {resolved['seed']!r}: must be an integer >= 0", "seed") from None
    if "out_dir" in resolved:
        out_dir = resolved["out_dir"]
        if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
            raise ParameterError(f"parameter out_dir = {out_dir!r}: must be a folder path", "out_dir")

    for name, value in resolved.items():
        if name in _FIXED:
            continue
        examples = [defaults[name]] + [sizes[p][name] for p in PROFILES if name in sizes.get(p, {})]
        spec = _spec(examples, limits.get(name))
        if value is None and defaults[name] is None:
            if name not in sizes.get(profile, {}):
                raise ParameterError(f"parameter {name} = None: profile {profile!r} gives it no value; "
                                     f"pass -p {name} VALUE", name)
            continue
        value = _read(value, spec)
        try:
            resolved[name] = _conform(value, spec)
        except (ValueError, TypeError, OverflowError):
            hint = _how_to_pass(name, spec) if spec["kind"] == "list" and not isinstance(value, (list, tuple)) else ""
            raise ParameterError(f"parameter {name} = {value!r}: must be {_requirement(spec)}{hint}", name) from None
    # last: asking for CUDA may import torch (seconds); every other mistake is reported before that
    if profile == "gpu" and cuda_available is not None and not cuda_available():
        raise ParameterError("parameter profile = 'gpu': needs a CUDA device and this machine has none; "
                             "use -p profile cpu", "profile")
    return resolved


