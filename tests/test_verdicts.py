"""Verdict rules (eval.verdicts): each rule of the ledger's classes, including the inconclusive cases."""

import math

import numpy as np
import pytest
from diffusion_study.eval import verdicts as v

# --- one part: an interval against its margins -----------------------------------------------


def test_an_interval_wholly_beyond_the_threshold_supports_the_claim():
    assert v.decide(0.3, 0.9, support=0.2) == v.SUPPORTED
    assert v.decide(-0.9, -0.3, support=-0.2, direction="below") == v.SUPPORTED


def test_an_interval_wholly_on_the_other_side_contradicts_it():
    assert v.decide(-0.5, 0.1, support=0.2) == v.CONTRADICTED
    assert v.decide(-0.1, 0.5, support=-0.2, direction="below") == v.CONTRADICTED


def test_an_interval_that_spans_the_threshold_is_inconclusive_never_not_supported():
    assert v.decide(-0.5, 3.0, support=0.2) == v.INCONCLUSIVE
    assert v.decide(-3.0, 0.5, support=-0.2, direction="below") == v.INCONCLUSIVE


def test_with_two_margins_an_interval_reaching_between_them_is_inconclusive():
    # the claim needs > 0.2; it is contradicted only below 0.05
    assert v.decide(0.25, 0.4, support=0.2, contradict=0.05) == v.SUPPORTED
    assert v.decide(-0.2, 0.04, support=0.2, contradict=0.05) == v.CONTRADICTED
    assert v.decide(0.1, 0.15, support=0.2, contradict=0.05) == v.INCONCLUSIVE
    assert v.decide(0.0, 0.3, support=0.2, contradict=0.05) == v.INCONCLUSIVE
    with pytest.raises(ValueError, match="beyond"):
        v.decide(0.0, 1.0, support=0.2, contradict=0.3)


def test_a_missing_interval_one_seed_is_inconclusive():
    assert v.decide(math.nan, math.nan, support=0.0) == v.INCONCLUSIVE
    assert v.decide_values([5.0], support=0.0) == v.INCONCLUSIVE


def test_a_ratio_is_judged_on_its_logarithm():
    assert v.decide_ratio(2.5, 8.0, ratio=2.0) == v.SUPPORTED
    assert v.decide_ratio(0.3, 1.5, ratio=2.0) == v.CONTRADICTED
    assert v.decide_ratio(0.3, 7.0, ratio=2.0) == v.INCONCLUSIVE  # K3's intervals: x0.27 to x7
    assert v.decide_ratio(0.2, 0.4, ratio=0.5, direction="below") == v.SUPPORTED


def test_decide_values_uses_the_95_percent_t_interval():
    values = [1.0, 1.2, 0.8, 1.1, 0.9]
    low, high = v.estimate(values).interval()
    assert low == pytest.approx(1.0 - 2.776445 * np.std(values, ddof=1) / math.sqrt(5), rel=1e-6)
    assert v.decide_values(values, support=low - 1e-9) == v.SUPPORTED
    assert v.decide_values(values, support=low + 1e-9) == v.INCONCLUSIVE


def test_welch_estimate_matches_the_welch_interval():
    from diffusion_study.eval.metrics import welch_interval

    a, b = [1.0, 2.0, 1.5, 1.7], [0.2, 0.9, 0.1]
    diff, low, high = welch_interval(a, b)
    est = v.welch_estimate(a, b)
    assert est.mean == pytest.approx(diff)
    assert est.interval() == pytest.approx((low, high))


# --- "matches" claims: equivalence (TOST) ------------------------------------------------------


def test_equivalence_needs_the_90_percent_interval_inside_the_margin():
    tight = v.Estimate(0.01, 0.01, 10)
    assert v.equivalence(tight, margin=0.05) == v.SUPPORTED
    low, high = tight.interval(0.90)
    assert -0.05 < low and high < 0.05


def test_equivalence_is_contradicted_when_the_interval_lies_outside_the_margin():
    assert v.equivalence(v.Estimate(0.3, 0.01, 10), margin=0.05) == v.CONTRADICTED
    assert v.equivalence(v.Estimate(-0.3, 0.01, 10), margin=0.05) == v.CONTRADICTED


def test_equivalence_with_a_wide_interval_is_inconclusive():
    # no difference measured, but too noisy to show it is small: not "matches", not "differs"
    assert v.equivalence(v.Estimate(0.0, 0.5, 4), margin=0.05) == v.INCONCLUSIVE
    assert v.equivalence(v.Estimate(0.0, math.nan, 0), margin=0.05) == v.INCONCLUSIVE


# --- identities --------------------------------------------------------------------------------


def test_identity_verdicts():
    assert v.identity(1e-13, tolerance=1e-12) == v.VERIFIED
    assert v.identity(-1e-3, tolerance=1e-12) == v.FAILS
    assert v.identity(1e-13, tolerance=1e-12, n_samples=3, min_samples=100) == v.IDENTITY_INCONCLUSIVE
    assert v.identity(math.nan, tolerance=1e-12) == v.IDENTITY_INCONCLUSIVE


def test_an_inadequate_model_judges_nothing():
    assert v.gate(v.SUPPORTED, adequate=False) == v.INADEQUATE
    assert v.gate(v.CONTRADICTED, adequate=True) == v.CONTRADICTED


# --- several parts -----------------------------------------------------------------------------


S, C, I, M = v.SUPPORTED, v.CONTRADICTED, v.INCONCLUSIVE, v.MIXED


@pytest.mark.parametrize(
    "parts, expected",
    [
        ([S, S, S], S),  # all decided and agree
        ([C, C], C),
        ([S, C], M),  # each decided, they disagree
        ([S, C, I], M),  # the decided parts already disagree
        ([S, M], M),
        ([I, I, I], I),  # could not tell anywhere: inconclusive, never "not supported"
        ([S, S, I], I),  # the rest agree, but one part is open: not established
        ([C, I], I),
        ([S, v.NOT_TESTABLE], S),  # untestable parts are left out
        ([S, v.INADEQUATE], S),
        ([v.INADEQUATE, v.NOT_TESTABLE], v.INADEQUATE),
        ([v.NOT_TESTABLE], v.NOT_TESTABLE),
        ([], v.NOT_TESTABLE),
        ([v.VERIFIED, v.VERIFIED], v.VERIFIED),
        ([v.VERIFIED, v.FAILS], v.FAILS),
        ([v.VERIFIED, v.IDENTITY_INCONCLUSIVE], v.IDENTITY_INCONCLUSIVE),
    ],
)
def test_combine(parts, expected):
    assert v.combine(parts) == expected


def test_combine_rejects_unknown_and_mixed_kinds():
    with pytest.raises(ValueError, match="unknown"):
        v.combine(["not supported"])
    with pytest.raises(ValueError, match="identity"):
        v.combine([v.SUPPORTED, v.VERIFIED])


@pytest.mark.parametrize(
    "parts, expected",
    [
        ([C, S, I], S),  # it appears somewhere
        ([C, C], C),  # it appears nowhere, each part decided
        ([C, I], I),  # not seen, but one part could not tell
        ([I, I], I),
        ([v.NOT_TESTABLE, C], C),
        ([v.INADEQUATE], v.INADEQUATE),
    ],
)
def test_exists_for_claims_that_something_appears(parts, expected):
    assert v.exists(parts) == expected


def test_explain_counts_the_parts():
    assert v.explain([S, I, S, C]) == "2 supported, 1 contradicted, 1 inconclusive"


def test_holm_adjusts_step_down():
    adjusted, rejected = v.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]
    adjusted, rejected = v.holm([0.01, math.nan])
    assert rejected == [True, False] and math.isnan(adjusted[1])


def test_a_family_of_one_part_decides_as_its_interval():
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.normal(rng.normal(0, 1), 1, 5)
        est = v.estimate(values)
        assert v.decide_family([est], support=0.3, contradict=-0.3) == [v.decide(*est.interval(), 0.3, -0.3)]


def test_holm_makes_a_family_stricter_than_its_parts_alone():
    # each part alone clears the margin (one-sided p = 0.02 < 0.025); in a family of five, none does
    parts = [v.Estimate(1.0, 0.33, 4)] * 5
    assert parts[0].p_above(0.0) == pytest.approx(0.0193, abs=1e-3)
    assert [v.decide(*e.interval(), 0.0) for e in parts] == [S] * 5
    assert v.decide_family(parts, support=0.0) == [I] * 5
    # a clear part stays decided
    assert v.decide_family(parts[:4] + [v.Estimate(5.0, 0.1, 4)], support=0.0) == [I] * 4 + [S]


def test_holm_keeps_the_family_wise_error_at_alpha():
    rng = np.random.default_rng(1)
    false = 0
    for _ in range(2000):  # 6 cells, no effect anywhere, margin at the truth: any "supported" is false
        family = [v.estimate(rng.normal(0.0, 1.0, 5)) for _ in range(6)]
        false += v.SUPPORTED in v.decide_family(family, support=0.0)
    assert false / 2000 < 0.025 + 0.01


# --- power -------------------------------------------------------------------------------------


def test_minimum_detectable_effect_has_80_percent_power():
    rng = np.random.default_rng(2)
    for n in (3, 5):
        d = v.minimum_detectable_effect(1.0, n)
        hits = np.mean([v.decide_values(rng.normal(d, 1.0, n), 0.0) == S for _ in range(4000)])
        assert 0.77 < hits < 0.83, (n, d, hits)


def test_minimum_detectable_effect_with_three_seeds_is_large():
    # t's 97.5% point at 2 degrees of freedom is 4.30; the effect must exceed 3 sd
    assert v.minimum_detectable_effect(1.0, 3) == pytest.approx(3.26, abs=0.01)
    # chapter 2's K3: two samples of 5 seeds, sd of log energy distance 1: a ratio of about x7.5
    assert math.exp(v.minimum_detectable_effect(1.0, 5, design="two-sample")) == pytest.approx(7.5, abs=0.1)
    assert v.minimum_detectable_effect(1.0, 1) == math.inf
    assert v.minimum_detectable_effect(0.0, 5) == 0.0
    assert v.minimum_detectable_effect_of([1.0, 2.0, 3.0]) == pytest.approx(3.26, abs=0.01)


def test_minimum_detectable_effect_shrinks_as_one_over_root_n():
    ratio = v.minimum_detectable_effect(1.0, 400) / v.minimum_detectable_effect(1.0, 100)
    assert ratio == pytest.approx(0.5, abs=0.01)
    assert v.minimum_detectable_effect(1.0, 100) == pytest.approx((1.96 + 0.8416) / 10, rel=0.02)


def test_part_records_a_ledger_row():
    row = v.part("digits", v.INCONCLUSIVE, "−0.05 ± 0.10 bits/dim", interval=(-0.15, 0.05), mde=0.21,
                 margin="−0.02 bits/dim")
    assert row == {"setting": "digits", "verdict": "inconclusive", "effect": "−0.05 ± 0.10 bits/dim",
                   "interval": [-0.15, 0.05], "mde": 0.21, "margin": "−0.02 bits/dim"}
    with pytest.raises(ValueError):
        v.part("2D", "not supported", "")


# --- ledger rows from per-seed values ------------------------------------------------------------


def test_judge_values_makes_a_row_with_interval_mde_and_margin():
    diffs = [-0.05, -0.06, -0.055]  # NDM - DDPM, bits/dim, 3 seeds
    row = v.judge_values("digits, T = 10", diffs, -0.02, direction="below", unit="bits/dim")
    assert row["verdict"] == v.SUPPORTED and row["margin"] == "< −0.02 bits/dim"
    assert row["effect"].startswith("−0.055 ± ") and row["effect"].endswith(" bits/dim")
    low, high = row["interval"]
    assert high < -0.02 and row["mde"] == pytest.approx(v.minimum_detectable_effect(np.std(diffs, ddof=1), 3))
    wide = v.judge_values("digits, T = 1000", [-0.2, 0.1, -0.05], -0.02, direction="below")
    assert wide["verdict"] == v.INCONCLUSIVE


def test_judge_family_applies_holm_and_keeps_each_parts_interval():
    rng = np.random.default_rng(3)
    family = {f"cell {k}": rng.normal(1.0, 0.33 * math.sqrt(5), 5) for k in range(6)}
    rows = v.judge_family(family, 0.0)
    assert [r["setting"] for r in rows] == list(family)
    alone = [v.decide_values(x, 0.0) for x in family.values()]
    assert sum(r["verdict"] == S for r in rows) <= sum(a == S for a in alone)
    assert all(r["interval"] == pytest.approx(list(v.estimate(x).interval())) for r, x in zip(rows, family.values()))


def test_judge_equivalence():
    row = v.judge_equivalence("2D", [0.001, -0.001, 0.0005, 0.0, -0.0005], margin=0.005, unit="energy distance")
    assert row["verdict"] == v.SUPPORTED and "equivalence" in row["margin"]
    assert v.judge_equivalence("digits", [0.5, -0.6, 0.1], margin=0.1)["verdict"] == v.INCONCLUSIVE


def test_a_log_ratio_margin_reads_with_its_factor_and_four_digits():
    row = v.judge("2D", v.estimate([0.5, 0.6, 0.7]), math.log(1.25), unit="log-ratio")
    assert row["margin"] == "> 0.2231 log-ratio (×1.25)"
    assert v.judge_equivalence("2D", [0.01, -0.02, 0.0], math.log(1.1), unit="log-ratio")["margin"].startswith(
        "within ±0.09531 log-ratio (×1.1)")
