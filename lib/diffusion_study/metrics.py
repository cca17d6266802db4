"""Sample-quality metrics for the 2D studies: two-sample distances and mode weights."""

from __future__ import annotations

import torch
from torch import Tensor


def energy_distance(x: Tensor, y: Tensor) -> float | Tensor:
    """Szekely's energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic), x: [*batch, N, D], y: [M, D].

    Zero iff the two laws agree; about 1/N-sized for two samples of the same law. A float for
    x: [N, D], a tensor [*batch] for a batch of samples (e.g. one per ensemble member).
    """
    x, y = x.double(), y.double().expand(x.shape[:-2] + y.shape)
    xy = torch.cdist(x, y).mean((-2, -1))
    xx = torch.cdist(x, x).mean((-2, -1))
    yy = torch.cdist(y, y).mean((-2, -1))
    out = 2 * xy - xx - yy
    return float(out) if out.ndim == 0 else out


def mode_fractions(mixture, samples: Tensor) -> Tensor:
    """Fraction of `samples` [*batch, N, D] assigned to each component by maximum responsibility; [*batch, K]."""
    K, N = mixture.weights.numel(), samples.shape[-2]
    labels = mixture.responsibilities(samples.reshape(-1, samples.shape[-1])).argmax(-1)
    one_hot = torch.nn.functional.one_hot(labels, K).double().reshape(samples.shape[:-1] + (K,))
    return one_hot.sum(-2) / N
