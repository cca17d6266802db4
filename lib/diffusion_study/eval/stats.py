"""Summaries over seeds: means with Student-t confidence intervals, and verdicts judged at a threshold.

Every effect the book reports comes with a 95% interval over independent seeds (chapter 1 onwards),
and every verdict says how it moves when its threshold is halved or doubled.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats


class Interval(NamedTuple):
    """mean and half-width of the `level` t-interval over n seeds (half-width nan for n = 1)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, fmt: str = ".3f") -> str:
        """'m +- h' with the given number format."""
        return f"{format(self.mean, fmt)} +- {format(self.half_width, fmt)}"


def mean_interval(values, level: float = 0.95) -> Interval:
    """The mean of per-seed values and its Student-t interval: mean +- t_{n-1} sd / sqrt(n)."""
    v = np.asarray(values, dtype=float).reshape(-1)
    n = v.size
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    if n == 1:
        return Interval(float(v[0]), math.nan, 1)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return Interval(float(v.mean()), float(half), n)


def threshold_sensitivity(verdict_at, threshold: float, factors=(0.5, 1.0, 2.0)) -> dict[str, str]:
    """{'x0.5': verdict, 'x1': ..., 'x2': ...}: the verdict recomputed at scaled thresholds."""
    return {f"x{f:g}": verdict_at(threshold * f) for f in factors}
