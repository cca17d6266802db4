"""Verdict rules: how an effect measured over seeds becomes one class of verdict.

Every rule here is a small pure function on numbers (means, standard errors, intervals,
p-values); the chapters supply the numbers, the ledger shows the classes.

Empirical classes (a measurement that could have come out either way):

=====================  =============================================================
``supported``          the interval lies wholly beyond the supporting margin
``contradicted``       the interval lies wholly on the other side of the contradicting margin
``inconclusive``       neither: the interval crosses a margin (with one threshold, it spans it)
``mixed``              parts of a claim were each decided, and they disagree
``not testable here``  the book cannot measure this part (no data, no model of that kind)
``inadequate model``   the model did not beat its baselines, so its numbers judge nothing
=====================  =============================================================

Identity classes (a theorem checked against the library's own formulas; it can find a bug,
not a wrong paper): ``verified identity``, ``identity fails``, ``identity inconclusive``
(too few samples to tell).

Decisions use the two-sided 95% Student-t interval over seeds, i.e. two one-sided tests at
alpha / 2 = 0.025 each; "matches" claims use the equivalence test (TOST) with the 90%
interval; a family of parts of one claim is corrected with Holm's step-down method.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from scipy import optimize, stats

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
MIXED = "mixed"
NOT_TESTABLE = "not testable here"
INADEQUATE = "inadequate model"
VERIFIED = "verified identity"
FAILS = "identity fails"
IDENTITY_INCONCLUSIVE = "identity inconclusive"

DECIDED = (SUPPORTED, CONTRADICTED)
EMPIRICAL = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, MIXED, NOT_TESTABLE, INADEQUATE)
IDENTITY = (VERIFIED, FAILS, IDENTITY_INCONCLUSIVE)
CLASSES = EMPIRICAL + IDENTITY
DIRECTIONS = ("above", "below")


# ---------------------------------------------------------------------------------------
# Estimates over seeds
# ---------------------------------------------------------------------------------------


class Estimate(NamedTuple):
    """An effect over seeds: its mean, standard error and the t distribution's degrees of freedom."""

    mean: float
    se: float
    df: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """(low, high) = mean -+ t_{(1 + level) / 2, df} se; (nan, nan) without degrees of freedom."""
        if not self.df > 0 or not math.isfinite(self.se):
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def p_above(self, value: float) -> float:
        """One-sided p-value of H0: effect <= value (small when the effect is clearly above it)."""
        return _p_value(self.mean - value, self.se, self.df)

    def p_below(self, value: float) -> float:
        """One-sided p-value of H0: effect >= value (small when the effect is clearly below it)."""
        return _p_value(value - self.mean, self.se, self.df)


def _p_value(distance: float, se: float, df: float) -> float:
    """P(T_df >= distance / se); se = 0 gives 0 or 1 by the sign of the distance."""
    if not df > 0 or not math.isfinite(se):
        return math.nan
    if se == 0:
        return 0.0 if distance > 0 else 1.0
    return float(stats.t.sf(distance / se, df))


def estimate(values) -> Estimate:
    """One sample (or paired differences) over seeds: mean, s / sqrt(n), df = n - 1."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("estimate needs at least one value")
    if v.size == 1:
        return Estimate(float(v[0]), math.nan, 0.0)
    return Estimate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)), float(v.size - 1))


def welch_estimate(a, b) -> Estimate:
    """mean(a) - mean(b) of two independent samples: se = sqrt(s_a^2 / n_a + s_b^2 / n_b) and the
    Welch-Satterthwaite df = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1))."""
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.size < 2 or b.size < 2:
        raise ValueError("welch_estimate needs at least two values on each side")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else float(a.size + b.size - 2)
    return Estimate(float(a.mean() - b.mean()), se, float(df))


# ---------------------------------------------------------------------------------------
# One decision
# ---------------------------------------------------------------------------------------


def decide(low: float, high: float, support: float, contradict: float | None = None,
           direction: str = "above") -> str:
    """The class of one part from its interval [low, high].

    direction "above" (the claim: the effect exceeds `support`):
        supported     if low > support
        contradicted  if high < contradict          (contradict <= support; default = support)
    direction "below" (the claim: the effect stays below `support`):
        supported     if high < support
        contradicted  if low > contradict           (contradict >= support; default = support)
    inconclusive otherwise: the interval spans the threshold (or, with two margins, reaches into
    the zone between them), and so does a missing interval (nan, e.g. one seed).
    """
    contradict = support if contradict is None else contradict
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if (direction == "above" and contradict > support) or (direction == "below" and contradict < support):
        raise ValueError(f"the contradicting margin {contradict} lies beyond the supporting one {support}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if low > high:
        raise ValueError(f"interval low {low} > high {high}")
    if direction == "above":
        return SUPPORTED if low > support else CONTRADICTED if high < contradict else INCONCLUSIVE
    return SUPPORTED if high < support else CONTRADICTED if low > contradict else INCONCLUSIVE


def decide_ratio(low: float, high: float, ratio: float, contradict: float | None = None,
                 direction: str = "above") -> str:
    """`decide` on a ratio's interval (e.g. exp of a log-ratio interval): the claim "the ratio
    exceeds (or stays below) `ratio`"; the same as `decide` on the logarithms."""
    if min(low, high, ratio) <= 0 or (contradict is not None and contradict <= 0):
        raise ValueError("ratios and thresholds must be positive")
    log_c = None if contradict is None else math.log(contradict)
    return decide(math.log(low), math.log(high), math.log(ratio), log_c, direction)


def decide_values(values, support: float, contradict: float | None = None, direction: str = "above",
                  level: float = 0.95) -> str:
    """`decide` on the `level` t-interval of per-seed values (or paired differences)."""
    return decide(*estimate(values).interval(level), support, contradict, direction)


def equivalence(est: Estimate, margin: float, alpha: float = 0.05) -> str:
    """A "matches" claim (two one-sided tests, TOST): is the effect within +-margin?

    With the 1 - 2 alpha interval [low, high] (90% for alpha = 0.05):
        supported     if -margin < low and high < margin      (both one-sided tests reject)
        contradicted  if low > margin or high < -margin        (the effect lies outside the margin)
        inconclusive  otherwise (including a missing interval).
    """
    if margin <= 0:
        raise ValueError("the equivalence margin must be positive")
    low, high = est.interval(1 - 2 * alpha)
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if -margin < low and high < margin:
        return SUPPORTED
    return CONTRADICTED if low > margin or high < -margin else INCONCLUSIVE


def identity(error: float, tolerance: float, n_samples: int | None = None, min_samples: int = 1) -> str:
    """An identity check: "verified identity" if |error| <= tolerance, "identity fails" if not;
    "identity inconclusive" when fewer than `min_samples` samples were drawn or the error is nan."""
    if (n_samples is not None and n_samples < min_samples) or not math.isfinite(error):
        return IDENTITY_INCONCLUSIVE
    return VERIFIED if abs(error) <= tolerance else FAILS


def gate(verdict: str, adequate: bool) -> str:
    """A part's verdict if its model beat its baselines, else "inadequate model"."""
    return verdict if adequate else INADEQUATE


# ---------------------------------------------------------------------------------------
# Several parts
# ---------------------------------------------------------------------------------------


def combine(parts: Iterable[str]) -> str:
    """One class for a claim from the classes of its parts (settings, data sets, cells).

    Parts that are "not testable here" or "inadequate model" are left out (they are evidence of
    nothing); of the rest:
        no part left                              -> "inadequate model" if any part was, else "not testable here"
        any part "mixed", or both "supported"
        and "contradicted" among the parts        -> "mixed"  (the decided parts disagree)
        every part "supported"                    -> "supported"
        every part "contradicted"                 -> "contradicted"
        otherwise (some or all "inconclusive",
        the decided rest agreeing)                -> "inconclusive": the claim is not established either
                                                     way; `explain` says how many parts were decided.
    Identity classes combine by the same rule: all verified -> verified, any failure -> fails,
    otherwise inconclusive; mixing identity and empirical classes is an error.
    """
    found = list(parts)
    unknown = [p for p in found if p not in CLASSES]
    if unknown:
        raise ValueError(f"unknown verdict classes {unknown}; valid: {CLASSES}")
    if found and all(p in IDENTITY for p in found):
        return VERIFIED if all(p == VERIFIED for p in found) else FAILS if FAILS in found else IDENTITY_INCONCLUSIVE
    if any(p in IDENTITY for p in found):
        raise ValueError("identity and empirical verdicts are not combined")
    usable = [p for p in found if p not in (NOT_TESTABLE, INADEQUATE)]
    if not usable:
        return INADEQUATE if INADEQUATE in found else NOT_TESTABLE
    if MIXED in usable or (SUPPORTED in usable and CONTRADICTED in usable):
        return MIXED
    for decided in DECIDED:
        if all(p == decided for p in usable):
            return decided
    return INCONCLUSIVE


def exists(parts: Iterable[str]) -> str:
    """One class for an existential claim ("the signature appears", "it breaks for some step"):
        any part "supported"                -> "supported"
        every part "contradicted"           -> "contradicted"
        no part left (see `combine`)        -> "inadequate model" or "not testable here"
        otherwise                           -> "inconclusive"
    Parts that are "not testable here" or "inadequate model" are left out. With many parts, decide
    them with `decide_family` (Holm) first: otherwise some part "supports" by chance."""
    found = list(parts)
    unknown = [p for p in found if p not in EMPIRICAL]
    if unknown:
        raise ValueError(f"unknown empirical verdict classes {unknown}; valid: {EMPIRICAL}")
    usable = [p for p in found if p not in (NOT_TESTABLE, INADEQUATE)]
    if not usable:
        return INADEQUATE if INADEQUATE in found else NOT_TESTABLE
    if SUPPORTED in usable:
        return SUPPORTED
    return CONTRADICTED if all(p == CONTRADICTED for p in usable) else INCONCLUSIVE


def explain(parts: Iterable[str]) -> str:
    """The parts counted by class, in the order of CLASSES: e.g. '2 supported, 1 inconclusive'."""
    counts = Counter(parts)
    return ", ".join(f"{counts[c]} {c}" for c in CLASSES if counts[c])


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction of a family of m p-values: (adjusted p-values, rejections).

    With p_(1) <= ... <= p_(m) sorted, the adjusted value is
        p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)),
    and hypothesis (i) is rejected when p~_(i) <= alpha; this keeps the chance of any false
    rejection in the family at most alpha. A nan p-value is never rejected and counts in m.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        value = 1.0 if np.isnan(p[i]) else min(1.0, (m - rank) * p[i])
        running = max(running, value)
        adjusted[i] = running
    adjusted[np.isnan(p)] = math.nan
    return adjusted.tolist(), [bool(a <= alpha) for a in adjusted]


def decide_family(estimates: Sequence[Estimate], support: float, contradict: float | None = None,
                  direction: str = "above", alpha: float = 0.05) -> list[str]:
    """`decide` for each part of a family (K6's cells, N1's bounds) with Holm's correction.

    Each part has two one-sided hypotheses, each tested at alpha / 2 as in the two-sided
    (1 - alpha) interval: H0_support (the effect does not pass `support`) and H0_contradict (the
    effect does not pass `contradict` the other way). Holm corrects each set of m hypotheses
    at alpha / 2; a part is supported (contradicted) when its H0_support (H0_contradict) is
    rejected. A family of one part gives exactly `decide` on its (1 - alpha) interval.
    """
    contradict = support if contradict is None else contradict
    decide(0.0, 0.0, support, contradict, direction)  # validates the margins and direction
    if direction == "above":
        p_sup = [e.p_above(support) for e in estimates]
        p_con = [e.p_below(contradict) for e in estimates]
    else:
        p_sup = [e.p_below(support) for e in estimates]
        p_con = [e.p_above(contradict) for e in estimates]
    _, sup = holm(p_sup, alpha / 2)
    _, con = holm(p_con, alpha / 2)
    return [SUPPORTED if s else CONTRADICTED if c else INCONCLUSIVE for s, c in zip(sup, con)]


# ---------------------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------------------


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8,
                              design: str = "one-sample") -> float:
    """The smallest distance |effect - margin| that the two-sided (1 - alpha) t-interval separates
    from the margin with probability `power`, for per-seed standard deviation `sd`.

    design "one-sample" (also paired differences, n pairs): se = sd / sqrt(n), df = n - 1;
    design "two-sample" (n seeds on each side, equal sd): se = sd sqrt(2 / n), df = 2n - 2.
    The effect d solves P(T' > t_{1 - alpha/2, df}) + P(T' < -t_{1 - alpha/2, df}) = power for the
    noncentral t, T' ~ t(df, d / se); close to (t_{1 - alpha/2, df} + t_{power, df}) se.
    Examples, sd 1: 3 seeds (t's 97.5% point 4.30) 3.26; 5 seeds 1.68; two samples of 5 seeds
    2.02, i.e. a ratio of e^2.02 = 7.5 when the values are logarithms (chapter 2's K3).
    """
    if design not in ("one-sample", "two-sample"):
        raise ValueError(f"design must be 'one-sample' or 'two-sample', got {design!r}")
    if n < 2:
        return math.inf
    if sd == 0:
        return 0.0
    if not (sd > 0 and 0 < alpha < 1 and 0 < power < 1):
        raise ValueError("need sd > 0, 0 < alpha < 1 and 0 < power < 1")
    se, df = (sd / math.sqrt(n), n - 1) if design == "one-sample" else (sd * math.sqrt(2 / n), 2 * n - 2)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(d: float) -> float:
        nc = d / se
        upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
        # scipy's noncentral t returns nan far in the tail, where the power is 1 (upper) or 0 (lower)
        return float(np.nan_to_num(upper, nan=1.0) + np.nan_to_num(lower, nan=0.0)) - power

    guess = (crit + stats.t.ppf(power, df)) * se
    return float(optimize.brentq(shortfall, 0.0, 3 * guess))


def minimum_detectable_effect_of(values, alpha: float = 0.05, power: float = 0.8) -> float:
    """`minimum_detectable_effect` with the sd and n of per-seed values (or paired differences)."""
    v = np.asarray(values, dtype=float).reshape(-1)
    return minimum_detectable_effect(float(v.std(ddof=1)) if v.size > 1 else math.nan, v.size, alpha, power)


# ---------------------------------------------------------------------------------------
# One row of the ledger
# ---------------------------------------------------------------------------------------


def part(setting: str, verdict: str, effect: str, *, interval: tuple[float, float] | None = None,
         mde: float | str | None = None, margin: str | None = None) -> dict:
    """A ledger row for one part of a claim in one setting (e.g. N1 on digits), as the "parts"
    entries of a claim record: {"setting", "verdict", "effect", "interval", "mde", "margin"}."""
    if verdict not in CLASSES:
        raise ValueError(f"verdict must be one of {CLASSES}, got {verdict!r}")
    record = {"setting": setting, "verdict": verdict, "effect": effect}
    if interval is not None:
        record["interval"] = [float(interval[0]), float(interval[1])]
    if mde is not None:
        record["mde"] = mde
    if margin is not None:
        record["margin"] = margin
    return record


def _fmt(x: float, fmt: str) -> str:
    return format(x, fmt).replace("-", "−") if math.isfinite(x) else "—"


def interval_text(est: Estimate, level: float = 0.95, fmt: str = ".3f", unit: str = "") -> str:
    """'mean ± half-width unit' of the `level` interval of an estimate ('mean ± —' for one sample):
    the one way the book prints an effect."""
    low, high = est.interval(level)
    half = (high - low) / 2 if math.isfinite(low) else math.nan
    return f"{_fmt(est.mean, fmt)} ± {_fmt(half, fmt)}" + (f" {unit}" if unit else "")


def _margin(x: float, unit: str) -> str:
    """A margin as a reader reads it: 4 significant digits, and a log-ratio also as its factor
    (0.0953102 log-ratio -> "0.0953 log-ratio (×1.1)")."""
    text = _fmt(x, ".4g") + (f" {unit}" if unit else "")
    if "log" in unit and math.isfinite(x):
        text += f" (×{math.exp(x):.3g})"
    return text


def judge(setting: str, est: Estimate, support: float, contradict: float | None = None, *,
          direction: str = "above", verdict: str | None = None, mde: float | None = None,
          unit: str = "", fmt: str = ".3f", level: float = 0.95) -> dict:
    """A ledger part for one estimate: its class by `decide` on the `level` interval (or the
    `verdict` given, e.g. from `decide_family`), the effect "mean ± half-width unit", the interval,
    the minimum detectable effect and the margin, e.g.
    judge("checkerboard", estimate(ndm - ddpm), -0.02, direction="below", unit="nats")."""
    low, high = est.interval(level)
    verdict = decide(low, high, support, contradict, direction) if verdict is None else verdict
    side = ">" if direction == "above" else "<"
    margin = f"{side} {_margin(support, unit)}"
    if contradict is not None and contradict != support:
        margin += f" (contradicted {'<' if direction == 'above' else '>'} {_margin(contradict, unit)})"
    return part(setting, verdict, interval_text(est, level, fmt, unit),
                interval=(low, high), mde=None if mde is None else float(mde), margin=margin)


def judge_values(setting: str, values, support: float, contradict: float | None = None, **kwargs) -> dict:
    """`judge` on per-seed values (or paired differences), with their one-sample minimum
    detectable effect (`minimum_detectable_effect_of`)."""
    kwargs.setdefault("mde", minimum_detectable_effect_of(values))
    return judge(setting, estimate(values), support, contradict, **kwargs)


def judge_family(values: dict[str, object], support: float, contradict: float | None = None, *,
                 direction: str = "above", alpha: float = 0.05, **kwargs) -> list[dict]:
    """`judge_values` for each part of a family {setting: per-seed values}, the classes by
    `decide_family` (Holm within the family); the intervals shown are the parts' own."""
    ests = [estimate(v) for v in values.values()]
    classes = decide_family(ests, support, contradict, direction, alpha)
    return [judge_values(name, v, support, contradict, direction=direction, verdict=c, **kwargs)
            for (name, v), c in zip(values.items(), classes)]


def judge_equivalence(setting: str, values, margin: float, *, alpha: float = 0.05, unit: str = "",
                      fmt: str = ".3f") -> dict:
    """A "matches" part: `equivalence` on per-seed differences, shown with the 1 - 2 alpha interval
    and the minimum detectable effect at that level."""
    est = estimate(values)
    low, high = est.interval(1 - 2 * alpha)
    return part(setting, equivalence(est, margin, alpha), interval_text(est, 1 - 2 * alpha, fmt, unit),
                interval=(low, high), mde=minimum_detectable_effect_of(values, alpha=2 * alpha),
                margin=f"within ±{_margin(margin, unit)} (equivalence, 90% interval)")
