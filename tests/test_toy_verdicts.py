"""Chapter 2's verdict rules (studies/toy_verdicts.py) and its estimated pairing map: each rule can come out
supported, contradicted or inconclusive (or "inadequate model" where it has a gate), and moves with its threshold."""

import math

import numpy as np
import pytest
import torch
from diffusion_study.data.toy2d import toy_split, two_gaussians
from diffusion_study.eval import metrics
from diffusion_study.eval import verdicts as rules
from diffusion_study.studies import toy_verdicts as kv
from diffusion_study.studies.toy_grid import (
    EmpiricalGaussianisingMap,
    data_scale,
    gaussian_fit_samples,
    median_mean_distance,
    scaled_recovery_error,
)

LOG2 = math.log(2)
GOOD = [0.010, 0.012, 0.011, 0.009, 0.010]  # energy distances of five seeds of a working model
FIT = kv.logs([0.13, 0.12, 0.14, 0.13, 0.13])  # the Gaussian fit's, one per draw


def scaled(values, factor):
    return [v * factor for v in values]


# --- the estimated pairing map (K2) -----------------------------------------------------------------


def test_the_estimated_pairing_is_an_exact_bijection_learned_from_training_points_only():
    x_train, x_test = toy_split("two_gaussians", 4000, 1000, seed=0)
    G = EmpiricalGaussianisingMap(x_train)
    far = torch.tensor([[9.0, 4.0], [-12.0, -5.0]])  # far outside the training points
    for x in (x_train, x_test, far):
        assert (G.inverse(G(x)) - x.double()).abs().max() < 1e-9
    u = G(x_test)
    assert u.mean(0).abs().max() < 0.1 and (torch.cov(u.T) - torch.eye(2, dtype=torch.float64)).abs().max() < 0.1
    gauss = torch.randn(2, 1000, 2, generator=torch.Generator().manual_seed(1))
    floor = metrics.energy_distance(gauss[1], gauss[0])
    assert metrics.energy_distance(u.float(), gauss[0]) < 3 * floor + 0.005
    assert metrics.energy_distance(x_test[:1000], gauss[0]) > 10 * floor  # the data themselves are far from N(0, I)


def test_recovery_is_measured_in_units_of_the_data_scale():
    x = toy_split("two_gaussians", 2000, 10, seed=0)[0]
    scale = data_scale(x)
    assert scale == pytest.approx(math.sqrt(4 + 0.25 + 0.25), rel=0.05)  # two modes at +-2, std 0.5
    shifted = x + torch.tensor([0.1 * scale, 0.0])
    assert float(scaled_recovery_error(shifted[None], x, scale)[0]) == pytest.approx(0.1)


def test_the_median_distance_to_a_mean_sees_a_collapse_a_few_far_points_hide_from_the_mean():
    mixture = two_gaussians()
    x = mixture.sample(4000, torch.Generator().manual_seed(0))
    assert float(median_mean_distance(mixture, x)) == pytest.approx(0.5 * math.sqrt(2 * math.log(2)), rel=0.05)
    collapsed = mixture.means[torch.arange(400) % 2] + 0.1 * torch.randn(400, 2, dtype=torch.float64)
    collapsed[:40] = 30.0  # a tenth of the samples far off
    assert float(median_mean_distance(mixture, collapsed)) < 0.3 * float(median_mean_distance(mixture, x))
    assert float(metrics.nearest_mean_distance(mixture, collapsed)) > float(metrics.nearest_mean_distance(mixture, x))


def test_the_nearest_neighbour_distance_sees_samples_collapse_onto_a_point_or_the_means():
    from diffusion_study.studies.toy_grid import median_nn_distance

    mixture = two_gaussians()
    data = mixture.sample(500, torch.Generator().manual_seed(0))
    point = torch.full((500, 2), 0.3, dtype=torch.float64) + 1e-4 * torch.randn(500, 2, dtype=torch.float64)
    means = mixture.means[torch.arange(500) % 2] + 0.05 * torch.randn(500, 2, dtype=torch.float64)
    nn = median_nn_distance(torch.stack([data, point, means]))
    assert nn.shape == (3,) and nn[1] < 0.01 * nn[0] and nn[2] < 0.3 * nn[0]


def test_the_gaussian_fit_has_the_data_moments_one_draw_per_seed():
    x = toy_split("two_gaussians", 4000, 10, seed=0)[0]
    fit = gaussian_fit_samples(x, 3000, 3, seed=0)
    assert fit.shape == (3, 3000, 2)
    assert (fit.mean(1) - x.mean(0)).abs().max() < 0.2 and not torch.equal(fit[0], fit[1])


# --- K1: judged against working baselines only -------------------------------------------------------


def test_k1_is_judged_only_against_a_stochastic_baseline_that_beats_the_gaussian_fit():
    ed = {("noise_free", "linear", "x0"): scaled(GOOD, 90), ("stochastic", "linear", "x0"): GOOD}
    parts, verdict = kv.k1(ed, FIT, ["linear"], LOG2)
    assert verdict == rules.SUPPORTED and "beats the Gaussian fit" in parts[0]["effect"]
    assert parts[0]["interval"][0] > 2 and parts[0]["mde"].startswith("×")
    failing = {("noise_free", "linear", "x0"): scaled(GOOD, 90 * 20), ("stochastic", "linear", "x0"): scaled(GOOD, 20)}
    parts, verdict = kv.k1(failing, FIT, ["linear"], LOG2)
    assert verdict == rules.INADEQUATE and "does not beat" in parts[0]["effect"]


def test_k1_can_be_contradicted_or_inconclusive():
    same = {("noise_free", "linear", "x0"): scaled(GOOD, 1.02), ("stochastic", "linear", "x0"): GOOD}
    assert kv.k1(same, FIT, ["linear"], LOG2)[1] == rules.CONTRADICTED
    noisy = {("noise_free", "linear", "x0"): [0.01, 0.2, 0.02, 0.3, 0.015], ("stochastic", "linear", "x0"): GOOD}
    assert kv.k1(noisy, FIT, ["linear"], LOG2)[1] == rules.INCONCLUSIVE
    assert kv.k1({}, FIT, ["linear"], LOG2) == ([], rules.NOT_TESTABLE)


# --- K2: cover (Holm, existential) and recover (data scale) -----------------------------------------


def test_k2_needs_cover_and_exact_recovery_in_units_of_the_data_scale():
    ed = {("stochastic", "linear", "eps"): GOOD, ("pairing", "linear", "eps"): scaled(GOOD, 1.1)}
    exact = {("linear", "eps"): [0.010, 0.012, 0.011, 0.009, 0.010]}
    parts, verdict = kv.k2(ed, exact, ["linear"], ["eps"], LOG2, 0.05)
    assert verdict == rules.SUPPORTED and [p["setting"] for p in parts] == ["cover linear/eps", "recover linear/eps"]
    assert all("Holm" in p["margin"] for p in parts) and all("mde" in p for p in parts)
    near = {("linear", "eps"): [0.30, 0.28, 0.33, 0.31, 0.29]}  # lands near the data, not on its point
    assert kv.k2(ed, near, ["linear"], ["eps"], LOG2, 0.05)[1] == rules.MIXED
    spread = {("linear", "eps"): [0.01, 0.2, 0.03, 0.1, 0.02]}
    assert kv.k2(ed, spread, ["linear"], ["eps"], LOG2, 0.05)[1] == rules.INCONCLUSIVE


# --- K3, K5: ratios of energy distances ---------------------------------------------------------------


def test_k3_the_cosine_schedule_must_beat_the_linear_one_by_the_factor():
    better = {("linear", "eps", "ddim"): scaled(GOOD, 5), ("cosine", "eps", "ddim"): GOOD}
    assert kv.k3(better, ["eps"], ["ddim"], LOG2)[1] == rules.SUPPORTED
    assert kv.k3(better, ["eps"], ["ddim"], LOG2, f=4)[1] == rules.CONTRADICTED  # a factor 5 is not 16
    noisy = {("linear", "eps", "ddim"): [0.01, 0.2, 0.02, 0.3, 0.015], ("cosine", "eps", "ddim"): GOOD}
    assert kv.k3(noisy, ["eps"], ["ddim"], LOG2)[1] == rules.INCONCLUSIVE


def test_k5_compares_the_worst_and_best_sampling_method():
    eds = {("linear", "eps", "ddim"): GOOD, ("linear", "x0", "ddim"): scaled(GOOD, 1.5),
           ("linear", "prev", "ddim"): scaled(GOOD, 50)}
    parts, verdict = kv.k5(eds, ["linear"], ["ddim"], LOG2)
    assert verdict == rules.SUPPORTED and parts[0]["setting"] == "linear/ddim: prev vs eps"
    eds[("linear", "prev", "ddim")] = scaled(GOOD, 1.2)
    assert kv.k5(eds, ["linear"], ["ddim"], LOG2)[1] == rules.CONTRADICTED
    eds[("linear", "prev", "ddim")] = [0.01, 0.2, 0.02, 0.3, 0.015]
    assert kv.k5(eds, ["linear"], ["ddim"], LOG2)[1] == rules.INCONCLUSIVE


# --- K4: per target ------------------------------------------------------------------------------------


def rank(a, b):
    return metrics.rank_correlation_interval(a, b, n_boot=500, seed=0)


def test_k4_has_one_pair_of_parts_per_target_and_within_target_correlations():
    rng = np.random.default_rng(0)
    err = rng.uniform(0.01, 1, 20)
    share = {"eps": [0.2] * 10 + [0.25] * 10, "prev": [0.8] * 10 + [0.85] * 10}
    score_error = {"eps": err.tolist(), "prev": err.tolist()}
    sample_ed = {"eps": (err * 2).tolist(), "prev": (-err).tolist()}  # eps ranks perfectly, prev the wrong way
    parts, verdict = kv.k4(share, score_error, sample_ed, rank, 0.5, 0.3)
    by = {p["setting"]: p["verdict"] for p in parts}
    assert by == {"eps: conditional mean": rules.SUPPORTED, "eps: score error ranks with sample error": rules.SUPPORTED,
                  "prev: conditional mean": rules.CONTRADICTED,
                  "prev: score error ranks with sample error": rules.CONTRADICTED}
    assert verdict == rules.MIXED and all(p["mde"] > 0 for p in parts)
    few = kv.k4({"eps": [0.2, 0.3, 0.25, 0.2]}, {"eps": [1, 2, 3, 4]}, {"eps": [2, 1, 4, 3]}, rank, 0.5, 0.3)
    assert few[1] == rules.INCONCLUSIVE  # four runs cannot decide a rank correlation
    assert kv.correlation_mde(4) > kv.correlation_mde(40) and kv.correlation_mde(3) == math.inf


# --- K6: signatures with Holm over the cells ----------------------------------------------------------


def collapse_cells(n_cells, collapsed):
    cells = {f"cell{k}": [0.02, -0.01, 0.0, 0.01, -0.02] for k in range(n_cells)}
    cells.update({f"cell{k}": [-0.70, -0.72, -0.69, -0.71, -0.70] for k in range(collapsed)})
    return cells


def test_k6_finds_a_collapse_the_cells_show_with_holm_over_the_cells():
    taus = {"collapse": 0.2}
    parts, verdict = kv.k6({"collapse": collapse_cells(28, 2)}, taus)
    assert verdict == rules.SUPPORTED and parts[0]["effect"].startswith("2 of 28 cells (Holm)")
    assert kv.k6({"collapse": collapse_cells(28, 0)}, taus)[1] == rules.CONTRADICTED


def test_k6_holm_keeps_a_marginal_cell_from_deciding_the_family():
    marginal = {"cell0": [-0.35, -0.45, -0.3, -0.5, -0.4]}  # one cell alone clears log(0.8) = -0.22
    assert kv.k6({"collapse": marginal}, {"collapse": 0.2})[1] == rules.SUPPORTED
    family = {**marginal, **{f"cell{k}": [0.1, -0.5, 0.3, -0.4, 0.2] for k in range(1, 28)}}
    parts, verdict = kv.k6({"collapse": family}, {"collapse": 0.2})
    assert verdict == rules.INCONCLUSIVE and parts[0]["effect"].startswith("0 of 28")


def test_signature_values_are_the_per_seed_effects_of_each_cell():
    rows = {"median_nn": [{"values": [0.589, 0.2945]}], "start_end_corr": [{"values": [0.9, 0.5]}],
            "low_density": [{"values": [0.0, 0.05]}]}
    out = kv.signature_values(rows, {("stochastic", "linear", "x0", "ddim"): 0}, {("linear", "ddim"): 0.5}, 0.589)
    cell = "stochastic/linear/x0/ddim"
    assert out["collapse"][cell] == pytest.approx([0.0, math.log(0.5)])
    assert out["bias"][cell] == pytest.approx([0.4, 0.0]) and out["low"][cell] == pytest.approx([0.05, 0.0])


# --- records and prose -----------------------------------------------------------------------------------


def test_claim_records_carry_parts_and_the_threshold_sensitivity_and_the_prose_reads_them():
    ed = {("noise_free", "linear", "x0"): scaled(GOOD, 90), ("stochastic", "linear", "x0"): GOOD}
    parts, verdict = kv.k1(ed, FIT, ["linear"], LOG2)
    sens = {"x0.5": verdict, "x1": verdict, "x2": verdict}
    record = kv.claim_record(verdict, parts, "fig-samples", "toy", sens)
    assert record["parts"] == parts and "thresholds ×0.5 / ×1 / ×2: supported / supported / supported" in record["effect"]
    numbers = kv.prose_numbers({"K1": record})
    assert numbers["k1-supported"] == (1, "d") and numbers["k1-total"] == (1, "d") and numbers["k1-inadequate"] == (0, "d")
    rec = kv.recovery_numbers({("linear", "eps"): [0.02, 0.04], ("cosine", "eps"): [0.3, 0.5]}, 2.0)
    assert rec["k2-recovery-best"][0] == pytest.approx(0.03) and rec["k2-recovery-best-cell"][0] == "linear/eps"


def test_the_estimated_pairing_keeps_each_axis_like_the_exact_map_does():
    from diffusion_study.studies.toy_grid import GaussianisingMap

    x_train, x_test = toy_split("two_gaussians", 10000, 1000, seed=0)
    estimated, exact = EmpiricalGaussianisingMap(x_train)(x_test), GaussianisingMap(two_gaussians())(x_test)
    assert (estimated - exact).pow(2).sum(-1).sqrt().mean() < 0.1  # no swap or reflection of the coordinates
