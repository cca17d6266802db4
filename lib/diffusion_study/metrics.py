"""Sample-quality metrics for the 2D studies: two-sample distances and mode weights."""

from __future__ import annotations

import torch
from torch import Tensor


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Szekely's energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic), x: [N, D], y: [M, D].

    Zero iff the two laws agree; about 1/N-sized for two samples of the same law.
    """
    x, y = x.double(), y.double()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)


def mode_fractions(mixture, samples: Tensor) -> Tensor:
    """Fraction of `samples` [N, D] assigned to each component by maximum responsibility; [K]."""
    labels = mixture.responsibilities(samples).argmax(-1)
    return torch.bincount(labels, minlength=mixture.weights.numel()).double() / samples.shape[0]
