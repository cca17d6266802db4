"""Adequacy gates: an empirical verdict about trained models is computed only when the models beat stated
baselines measured in the same chapter; otherwise the verdict is "inadequate model", with the numbers.

A model that scores no better than a per-pixel histogram has learned nothing a comparison between models
could rest on: any difference between two such models is a difference between two ways of not having learned.

- `adequate(model_value, baselines)`: (passed, reason) for one model against named baselines.
- `all_adequate(models, baselines)`: every model against every baseline, one reason text.
- `gated(verdict, gate)`: the verdict when the gate passed, else `INADEQUATE`.

Values are floats or per-seed sequences; with several seeds every seed must beat every baseline (the gate
is judged on the worst seed), so one lucky seed does not pass a configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from diffusion_study.eval import verdicts

INADEQUATE = verdicts.INADEQUATE  # the verdict of a model that did not beat its baselines


def _values(value) -> np.ndarray:
    v = np.asarray(value, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("a gate needs at least one model value")
    return v


def adequate(model_value, baselines: Mapping[str, float], *, lower_is_better: bool = True, margin: float = 0.0,
             name: str = "model", unit: str = "", fmt: str = ".3f") -> tuple[bool, str]:
    """Does the model beat every baseline by more than `margin`?

    model_value: a float or per-seed values (every seed must beat: judged on the worst one); baselines:
    {name: value}; lower_is_better: True for losses (bits/dim, NLL, distances), False for scores (mass on the
    data's support). Returns (passed, reason), the reason naming every number, e.g. "DDPM 2.510 bits/dim
    (worst of 3 seeds) does not beat mixture of categoricals 2.257 (by more than 0.000)".
    A non-finite model value never passes."""
    if not baselines:
        raise ValueError("a gate needs at least one baseline")
    if not margin >= 0:
        raise ValueError(f"margin must be non-negative, got {margin!r}")
    v = _values(model_value)
    worst = float(v.max() if lower_is_better else v.min())
    if not np.isfinite(v).all():
        worst = math.inf if lower_is_better else -math.inf
    u = f" {unit}" if unit else ""
    seeds = f" (worst of {v.size} seeds)" if v.size > 1 else ""
    beaten, missed = [], []
    for base, value in baselines.items():
        value = float(value)
        wins = worst < value - margin if lower_is_better else worst > value + margin
        (beaten if wins else missed).append(f"{base} {format(value, fmt)}")
    by = f" (by more than {format(margin, fmt)})" if margin else ""
    head = f"{name} {format(worst, fmt)}{u}{seeds}"
    if missed:
        return False, f"{head} does not beat {', '.join(missed)}{by}" + (f"; beats {', '.join(beaten)}" if beaten else "")
    return True, f"{head} beats {', '.join(beaten)}{by}"


def all_adequate(models: Mapping[str, object], baselines: Mapping[str, float], **kwargs) -> tuple[bool, str]:
    """`adequate` for every model of {name: value or per-seed values}: passed if all pass; the reasons joined
    by '; '. kwargs as `adequate` (lower_is_better, margin, unit, fmt)."""
    if not models:
        raise ValueError("a gate needs at least one model")
    results = [adequate(value, baselines, name=name, **kwargs) for name, value in models.items()]
    return all(ok for ok, _ in results), "; ".join(reason for _, reason in results)


def gated(verdict: str, gate: tuple[bool, str] | bool) -> str:
    """`verdict` if the gate passed, else `INADEQUATE` (the reason text stays with the caller's evidence)."""
    return verdicts.gate(verdict, gate[0] if isinstance(gate, Sequence) else bool(gate))
