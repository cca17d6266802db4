"""Shape and dtype checks at the library's entry points: host-side only (shapes, dtypes), no device sync.
Each error names the argument, the expected and the given shape."""

from __future__ import annotations


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
