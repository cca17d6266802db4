"""Argument checks shared by the library: one wording for every bad-input error."""

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


class ShapeError(ValueError):
    """A tensor argument of the wrong shape; the message names the argument, the expected and the given shape."""


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def check_tensor(name: str, x, *, floating: bool = True, where: str = "") -> None:
    """Raise TypeError unless `x` is a torch tensor (of a floating dtype unless floating=False)."""
    if not hasattr(x, "is_floating_point") or not hasattr(x, "shape"):
        raise TypeError(f"{where}{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{where}{name} must be a floating-point tensor (float32 or float64), got {x.dtype}; "
                        f"convert it with {name}.float()")


def _attr(obj, name: str):
    """getattr(obj, name, None) without nn.Module.__getattr__'s exception for a missing name (microseconds
    per entry-point call)."""
    d = getattr(obj, "__dict__", None)
    if d is not None:
        if name in d:
            return d[name]
        modules = d.get("_modules")
        if modules and name in modules:
            return modules[name]
    value = getattr(type(obj), name, None)
    return getattr(obj, name, None) if isinstance(value, property) else value


def _network_spec(net):
    """(expected shape labels, event_dims) of a TimeMLP / EnsembleMLP / UNet-like network, read off its
    `members`, `dim`, `channels` and `event_dims`; None for any other module."""
    event_dims = _attr(net, "event_dims")
    channels, dim, members = (_attr(net, a) for a in ("channels", "dim", "members"))
    if event_dims == 3 and isinstance(channels, int):
        labels = ("B", channels, "H", "W")
    elif event_dims == 1 and isinstance(dim, int):
        labels = (members, "B", dim) if isinstance(members, int) else ("B", dim)
    else:
        return None
    return labels, event_dims


def _weights_dtype(net, depth: int = 6):
    """The dtype of a module's first parameter (depth first, as net.parameters() orders them); None if none."""
    d = getattr(net, "__dict__", {})
    for p in d.get("_parameters", {}).values():
        if p is not None:
            return p.dtype
    if depth:
        for child in d.get("_modules", {}).values():
            dtype = _weights_dtype(child, depth - 1)
            if dtype is not None:
                return dtype
    return None


def check_network_input(net, z, t=None, *, name: str = "z", where: str | None = None) -> None:
    """Named errors for an input `z` (and times `t`, which must have z's batch shape) of a network
    with `dim`/`members` (MLPs: [B, dim], ensembles: [G, B, dim]) or `channels` (U-Nets: [B, C, H, W]):
    the expected shape, or the network's dtype and how to convert."""
    where = f"{type(net).__name__}: " if where is None else where
    check_tensor(name, z, where=where)
    if t is not None:
        check_tensor("t", t, floating=False, where=where)
    spec = _network_spec(net)
    if spec is not None:
        labels, event_dims = spec
        ok = z.ndim == len(labels) and all(not isinstance(n, int) or z.shape[i] == n for i, n in enumerate(labels))
        if not ok:
            meaning = {4: f"batch B, {labels[1]} channels, height H, width W",
                       3: f"{labels[0]} members, batch B, {labels[-1]} features",
                       2: f"batch B, {labels[-1]} features"}[len(labels)]
            raise ShapeError(f"{where}{name} must have shape {_shape(labels)} ({meaning}), got {_shape(z.shape)}")
        if t is not None and hasattr(t, "shape") and tuple(t.shape) != tuple(z.shape[: z.ndim - event_dims]):
            batch = z.shape[: z.ndim - event_dims]
            raise ShapeError(f"{where}t must have z's batch shape {_shape(labels[: len(batch)])} = {_shape(batch)} "
                             f"(one time per example), got {_shape(t.shape)}")
    dtype = _weights_dtype(net)
    if dtype is not None and z.dtype != dtype:
        import torch

        if not torch.is_autocast_enabled():
            raise TypeError(f"{where}{name} is {z.dtype} but the network's weights are {dtype}; pass "
                            f"{name}.to({dtype}) (or convert the network with net.to({z.dtype}))")


def model_network(model, depth: int = 4):
    """The TimeMLP / EnsembleMLP / UNet-like network behind a Denoiser (and wrappers that keep its event
    dims, e.g. guidance, PreconditionedX0) whose input has the model's shape; None if there is none."""
    for _ in range(depth):
        if model is None or _network_spec(model) is not None:
            return model
        inner = _attr(model, "model")  # a guidance wrapper around a model
        if inner is None:
            inner = _attr(model, "net")
            same_input = hasattr(model, "event_dims") and _attr(inner, "event_dims") == model.event_dims
            if inner is None or not same_input:
                return None  # no network, or one whose input need not be the model's
        model = inner
    return None


def check_times_shape(name: str, t, batch_shape, *, where: str = "") -> None:
    """`t` (a tensor) must be 0-dim (one time for all) or broadcast to the batch shape (e.g. the batch
    shape itself); a Python number passes."""
    if not hasattr(t, "shape"):
        return
    shape, batch = tuple(t.shape), tuple(batch_shape)
    fits = len(shape) <= len(batch) and all(s in (1, b) for s, b in zip(shape[::-1], batch[::-1]))
    if not fits:
        raise ShapeError(f"{where}{name} must be 0-dim (one time for all) or of the batch shape "
                         f"{_shape(batch)}, got {_shape(shape)}")


def check_labels(name: str, y, batch_shape, *, where: str = "") -> None:
    """Labels `y`, when given: an int64/int32 tensor of the batch shape."""
    if y is None:
        return
    check_tensor(name, y, floating=False, where=where)
    if str(y.dtype) not in ("torch.int64", "torch.int32"):
        raise ValueError(f"{where}labels {name} must be an int64 or int32 tensor, got {y.dtype}")
    if tuple(y.shape) != tuple(batch_shape):
        raise ShapeError(f"{where}labels {name} must have the batch shape {_shape(batch_shape)}, "
                         f"got {_shape(y.shape)}")


def check_model_input(model, x, *, name: str = "x", where: str = "", y=None) -> None:
    """At an entry point (loss, bound, sampler): `x` a floating tensor, of the shape and dtype of the model's
    network when it has one (`model_network`); labels y of x's batch shape. Shapes and dtypes only."""
    check_tensor(name, x, where=where)
    net = model_network(model)
    if net is not None:
        check_network_input(net, x, name=name, where=where or None)
        if y is not None:
            event_dims = _network_spec(net)[1]
            check_labels("y", y, x.shape[: x.ndim - event_dims], where=where)
