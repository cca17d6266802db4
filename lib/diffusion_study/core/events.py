"""Event dimensions, worked out in one place: a tensor is [*batch, *event]; the trailing `event_dims`
dimensions are one example ([D] for 2D points, [C, H, W] for images), the leading ones index examples
(and ensemble members). Every log-density, KL and squared error is summed over the event dims here."""

from __future__ import annotations

from torch import Tensor


def event_dims_of(x: Tensor, event_dims: int | None = None, model=None) -> int:
    """`event_dims` if given; else the model's (`model.event_dims`, or that of the model a guidance wrapper
    holds in `.model`); else all but the first dimension of `x`. 0 is a valid answer (scalar examples)."""
    if event_dims is not None:
        return event_dims
    for source in (model, getattr(model, "model", None)):
        dims = getattr(source, "event_dims", None)
        if dims is not None:
            return dims
    return x.ndim - 1


def sum_event(x: Tensor, event_dims: int) -> Tensor:
    """Sum `x` [*batch, *event] over its trailing `event_dims` dimensions -> [*batch] (x itself when 0)."""
    return x.sum(dim=tuple(range(x.ndim - event_dims, x.ndim))) if event_dims else x
