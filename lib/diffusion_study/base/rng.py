"""Random draws that stay a function of one generator whatever device the data live on.

A CPU `torch.Generator` cannot draw on CUDA, so draws are made on the generator's device
and moved to the data's: the same seed gives the same noise on CPU and GPU runs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _device(generator) -> torch.device | None:
    return generator.device if generator is not None else None


def randn(shape, like: Tensor, generator=None) -> Tensor:
    """N(0, 1) draws of `shape` with `like`'s dtype, on `like`'s device."""
    out = torch.randn(shape, generator=generator, dtype=like.dtype, device=_device(generator) or like.device)
    return out.to(like.device)


def randint(low: int, high: int, shape, like: Tensor, generator=None) -> Tensor:
    """Uniform integers in [low, high) of `shape`, on `like`'s device."""
    out = torch.randint(low, high, shape, generator=generator, device=_device(generator) or like.device)
    return out.to(like.device)


def rand(shape, like: Tensor, generator=None, dtype=torch.float64) -> Tensor:
    """U[0, 1) draws of `shape` (float64 by default), on `like`'s device."""
    out = torch.rand(shape, generator=generator, dtype=dtype, device=_device(generator) or like.device)
    return out.to(like.device)
