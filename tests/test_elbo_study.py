"""Chapter 1's verdict rules (studies/elbo.py): each identity check verifies, fails, or is inconclusive when
the run had too few seeds, chains or points; L4 is an empirical interval against its margin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_study.data.toy2d import two_gaussians
from diffusion_study.eval import verdicts as rules
from diffusion_study.studies import elbo as study

VERIFIED, FAILS, INCONCLUSIVE = rules.VERIFIED, rules.FAILS, rules.IDENTITY_INCONCLUSIVE


# --- an inequality checked by an interval over seeds ----------------------------------------------------


def test_an_inequality_whose_interval_lies_above_zero_is_verified():
    assert study.inequality_identity([1.0, 1.1, 0.9, 1.05]) == VERIFIED


def test_an_inequality_whose_interval_lies_below_zero_fails():
    assert study.inequality_identity([-1.0, -1.1, -0.9, -1.05]) == FAILS


def test_an_inequality_whose_interval_spans_zero_is_inconclusive_not_failed():
    assert study.inequality_identity([-1.0, 1.2, 0.1, -0.3]) == INCONCLUSIVE


def test_a_tolerance_verifies_an_interval_that_leaves_no_larger_violation():
    values = [0.01, -0.02, 0.03, 0.0, 0.01]
    assert study.inequality_identity(values) == INCONCLUSIVE
    assert study.inequality_identity(values, tolerance=0.1) == VERIFIED


def test_too_few_seeds_make_an_inequality_inconclusive_whatever_they_show():
    assert study.inequality_identity([-5.0, -5.1]) == INCONCLUSIVE
    assert study.inequality_identity([5.0, 5.1]) == INCONCLUSIVE
    assert study.inequality_identity([5.0, 5.1], min_seeds=2) == VERIFIED


# --- an upper-bound estimator that converges to the exact value -----------------------------------------


def test_a_converged_estimate_within_the_tolerance_is_verified():
    assert study.converged_identity([0.004, 0.001, 0.012, 0.0015, 0.0003], 0.1) == VERIFIED


def test_an_estimate_not_yet_converged_is_inconclusive_not_failed():
    # above the exact value by more than the tolerance: the estimator's bias at small k, not a failure
    assert study.converged_identity([0.5, 0.45, 0.55, 0.5], 0.1) == INCONCLUSIVE


def test_an_estimate_below_the_exact_value_fails():
    assert study.converged_identity([-0.5, -0.45, -0.55, -0.5], 0.1) == FAILS


def test_a_converged_estimate_on_too_few_seeds_is_inconclusive():
    assert study.converged_identity([0.001, 0.002], 0.1) == INCONCLUSIVE


# --- simulated moments against a closed form -----------------------------------------------------------


def test_z_scores_below_the_threshold_with_a_powerful_control_verify():
    assert study.z_identity(3.2, 5.0, n_samples=10_000, min_samples=1000, control=11.0) == VERIFIED


def test_z_scores_beyond_the_threshold_fail():
    assert study.z_identity(7.0, 5.0, n_samples=10_000, min_samples=1000, control=11.0) == FAILS


def test_too_few_chains_or_a_powerless_control_leave_the_check_inconclusive():
    assert study.z_identity(3.2, 5.0, n_samples=100, min_samples=1000, control=11.0) == INCONCLUSIVE
    assert study.z_identity(3.2, 5.0, n_samples=10_000, min_samples=1000, control=4.0) == INCONCLUSIVE


def test_the_negative_control_of_the_chain_check_is_far_beyond_the_threshold():
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    factor, z = study.control_chain_check(study.schedule("linear", 50), x0, 2000, torch.Generator().manual_seed(0))
    assert factor > 1 and z > 5


# --- the claims ----------------------------------------------------------------------------------------


def l2(seeds: int, n_points: int = 400, gap: float = 1.5):
    rng = np.random.default_rng(0)
    noise = lambda: rng.normal(0, 0.1, seeds)  # noqa: E731
    gaps = {"cosine": np.stack([gap + noise(), gap / 2 + noise()], axis=1)}
    return study.identity_claim(
        study.l2_parts([0.3] * seeds, n_points, 4.0, {"control": list(gap + noise()), "mixture": list(gap + noise())},
                       list(0.005 + noise() / 20), 0.1, gaps), "fig-iw", "test")


def test_l2_is_verified_on_five_seeds_and_inconclusive_on_two_never_failed():
    assert l2(5)["verdict"] == VERIFIED
    assert l2(2)["verdict"] == INCONCLUSIVE  # the smoke profile
    parts = l2(5, n_points=2)["parts"]  # n_data = 1: two points per seed
    assert parts[0]["setting"] == "decomposition" and parts[0]["verdict"] == INCONCLUSIVE


def test_l2_fails_when_the_bound_lies_below_the_likelihood():
    assert l2(5, gap=-1.5)["verdict"] == FAILS


def test_l1_parts_name_their_checks_and_combine_to_one_identity():
    parts = study.l1_parts(1e-16, [3.1, 3.3, 2.9], 11.0, 5.0, 10_000, (1e-9, 1e-6), True)
    assert [p["setting"] for p in parts] == ["exact recursion", "simulated chains", "posterior on a grid", "sympy"]
    assert study.identity_claim(parts, "fig", "c")["verdict"] == VERIFIED
    broken = study.l1_parts(1e-3, [3.1], 11.0, 5.0, 10_000, (1e-9, 1e-6), True)
    assert study.identity_claim(broken, "fig", "c")["verdict"] == FAILS


def test_l3_fails_when_the_library_kl_is_not_the_weight():
    assert rules.combine(p["verdict"] for p in study.l3_parts(True, 1e-12)) == VERIFIED
    assert rules.combine(p["verdict"] for p in study.l3_parts(True, 1e-3)) == FAILS


def test_k7_follows_from_the_definitions_and_is_inconclusive_on_too_few_seeds():
    parts = study.k7_parts([0.57, 0.55, 0.58], [0.87, 0.86, 0.88], 995, 1000)
    assert all(p["setting"].startswith("from the definitions") for p in parts)
    assert rules.combine(p["verdict"] for p in parts) == VERIFIED
    assert rules.combine(p["verdict"] for p in study.k7_parts([0.57, 0.55], [0.87, 0.86], 995, 1000)) == INCONCLUSIVE


def shape_kl(small: float, large: float, seeds: int = 5, spread: float = 0.01) -> np.ndarray:
    """[seeds, 4 lambda_t, 2 steps] with the given means at the small and the large step."""
    rng = np.random.default_rng(1)
    out = np.empty((seeds, 4, 2))
    out[:, :, 0] = small * (1 + spread * rng.standard_normal((seeds, 4)))
    out[:, :, 1] = large * (1 + spread * rng.standard_normal((seeds, 4)))
    return out


def test_l4_is_supported_when_small_steps_stay_below_and_large_ones_exceed_the_margin():
    parts = study.l4_parts(shape_kl(1e-5, 0.3), [0.03, 3.0], 0.01)
    assert [p["verdict"] for p in parts] == [rules.SUPPORTED, rules.SUPPORTED]
    assert parts[1]["mde"] >= 0 and parts[1]["margin"] == "> 0.01 nats" and "interval" in parts[1]


def test_l4_is_mixed_or_contradicted_when_even_small_steps_break():
    assert study.l4_verdict(shape_kl(0.3, 0.5), [0.03, 3.0], 0.01) == rules.MIXED  # close contradicted, breaks supported
    assert study.l4_verdict(shape_kl(0.3, 0.001), [0.03, 3.0], 0.01) == rules.CONTRADICTED


def test_l4_is_inconclusive_when_the_intervals_span_the_margin():
    assert study.l4_verdict(shape_kl(1e-5, 0.01, spread=1.0), [0.03, 3.0], 0.01) == rules.INCONCLUSIVE


# --- measurements and text ---------------------------------------------------------------------------------


def test_interval_text_is_mean_and_half_width():
    assert study.interval_text([1.0, 1.0, 1.0]) == "1.000 ± 0.000"
    assert study.interval_text([2.0]) == "2.000 ± —"


def test_first_below_is_the_first_step_under_the_threshold_per_seed():
    curves = np.array([[[1.0, 0], [0.2, 0], [0.05, 0]], [[1.0, 0], [0.05, 0], [0.01, 0]]])
    assert study.first_below(curves, [10, 20, 30], 100, 0.1) == [0.3, 0.2]
    assert study.first_below(curves, [10, 20, 30], 100, 0.001) == [1.0, 1.0]


def test_the_control_has_the_mixtures_mean_and_variance():
    control, mean, var = study.moment_matched_gaussian(two_gaussians())
    assert torch.allclose(mean, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(var, torch.tensor([4.25, 0.25], dtype=torch.float64))
    assert control.means.shape == (1, 2)


def test_weight_spread_leaves_out_a_clipped_last_step():
    w = torch.tensor([1.0, 2.0, 4.0, 1000.0])
    s = study.weight_spread(w, clipped_last=True)
    assert s["spread"] == 1000.0 and s["body"] == 4.0
    assert math.isclose(study.weight_spread(w, clipped_last=False)["body"], 1000.0)


def test_the_eps_weight_is_the_librarys_kl_of_a_unit_noise_error():
    assert study.eps_weight_error([study.schedule("linear", 100), study.schedule("cosine", 100)], [2, 30, 99]) < 1e-9
