"""Chapter 5's logic (studies/images_chapter.py): the chapter judges the store's models, and its verdict helpers
turn per-seed numbers into the classes the claims read, including the inconclusive and untestable cases."""

import math

import numpy as np
import pytest
import torch

from diffusion_study.eval import verdicts as rules
from diffusion_study.studies import evidence
from diffusion_study.studies import images_chapter as ic
from diffusion_study.training import store

PASS = (True, "beats both")
FAIL = (False, "X 3.0 bits/dim does not beat per-pixel histogram 2.4")


def _gates(*labels, failed=()):
    return {label: FAIL if label in failed else PASS for label in labels}


# --- which models, from where ------------------------------------------------------------


def test_at_the_stores_sizes_the_chapter_asks_for_exactly_the_stored_configurations():
    configs = ic.chapter_configs(steps=evidence.STEPS, batch_size=64, base=16, seeds=evidence.SEEDS)
    asked = {store.config_hash(c) for cs in configs.values() for c in cs}
    stored = {store.config_hash(c) for c in evidence.CONFIGS + evidence.LONG_CONFIGS}
    assert asked == stored


def test_without_controls_the_chapter_asks_for_no_control_model():
    configs = ic.chapter_configs(steps=12, batch_size=16, base=8, seeds=[0, 1], controls=False)
    assert ic.SCALAR not in configs and ic.WIDE not in configs
    assert all(len(cs) == 2 for cs in configs.values())


def test_a_stored_model_is_loaded_not_trained():
    config = evidence.CONFIGS[0]
    run = ic.obtain(config)
    assert run.source == "stored" and run.record["config_hash"] == store.config_hash(config)
    assert run.curve and run.curve[-1][0] == config["steps"]


def test_a_missing_model_is_trained_from_scratch_unless_forbidden(tmp_path):
    config = evidence.digits_config("ddpm", 10, 2, base=8, batch_size=4)
    assert ic.obtain(config, tmp_path, may_train=False) is None
    run = ic.obtain(config, tmp_path, curve_points=2)
    assert run.source == "trained" and run.record is None
    assert [step for step, _ in run.curve] == [1, 2] and all(math.isfinite(v) for _, v in run.curve)


def test_the_bench_times_every_model_in_every_round():
    configs = {label: evidence.digits_config(kind, 10, 2, base=8, batch_size=4)
               for label, kind in ((ic.DDPM, "ddpm"), (ic.NDM, "ndm"))}
    seconds = ic.bench_rounds(configs, rounds=2, steps=1)
    assert set(seconds) == set(configs) and all(v.shape == (2,) and (v > 0).all() for v in seconds.values())


# --- curves -------------------------------------------------------------------------------


def test_a_curve_is_read_between_its_points_and_not_beyond():
    curve = [[250, 2.5], [500, 2.3]]
    assert ic.at_step(curve, 375) == pytest.approx(2.4)
    assert math.isnan(ic.at_step(curve, 100)) and math.isnan(ic.at_step(curve, 600))


def test_a_flat_curve_has_levelled_off_and_a_falling_one_has_not():
    steps = np.arange(250, 4001, 250)
    flat = [[s, 2.1 + 0.001 * (s == 3000)] for s in steps]
    falling = [[s, 3.0 - 1e-4 * s] for s in steps]
    rows = ic.plateau_rows({"flat": [flat], "falling": [falling], "short": [[[250, 2.5]]]}, thr=0.01)
    assert [r[2] for r in rows] == ["levelled off", "still improving", "too short"]
    assert ic.plateau(falling) == pytest.approx(0.1)


# --- gates --------------------------------------------------------------------------------


def test_a_part_resting_on_a_failed_or_missing_model_fails_its_gate():
    gate_of = _gates("a", "b", failed=("b",))
    assert ic.combine_gates(gate_of, ["a"]) == (True, PASS[1])
    ok, why = ic.combine_gates(gate_of, ["a", "b"])
    assert not ok and why == FAIL[1]
    ok, why = ic.combine_gates(gate_of, ["a", "c"])
    assert not ok and "c not stored" in why


# --- N1 and N3: NDM's bound below DDPM's by more than the margin ----------------------------


def _bpd(ndm_gain, noise=0.001, labels=(ic.NDM, ic.NDM_FEW)):
    rng = np.random.default_rng(0)
    out = {ic.DDPM: np.array([2.18, 2.19, 2.17]), ic.DDPM_FEW: np.array([2.25, 2.25, 2.25])}
    for n, d in ((ic.NDM, ic.DDPM), (ic.NDM_FEW, ic.DDPM_FEW)):
        if n in labels:
            out[n] = out[d] - ndm_gain + noise * rng.standard_normal(3)
    return out


def test_n1_is_supported_when_ndm_gains_clearly_more_than_the_margin():
    bpd = _bpd(0.08)
    parts = ic.n1_parts(bpd, _gates(*bpd), 0.02)
    main = {p["setting"]: p["verdict"] for p in parts[:3]}
    assert main == {"T = 10, 4000 steps": "supported", "T = 1000, 4000 steps": "supported",
                    "T = 1000, 12000 steps": "not testable here"}
    assert all(p["verdict"] == "not testable here" for p in parts[3:])  # controls not stored
    assert rules.combine(p["verdict"] for p in parts) == "supported"


def test_n1_is_contradicted_when_the_gain_is_below_the_margin():
    bpd = _bpd(0.0)
    assert {p["verdict"] for p in ic.n1_parts(bpd, _gates(*bpd), 0.02)[:2]} == {"contradicted"}


def test_n1_is_inconclusive_when_the_seeds_disagree_across_the_margin():
    bpd = _bpd(0.02, noise=0.05)
    assert {p["verdict"] for p in ic.n1_parts(bpd, _gates(*bpd), 0.02)[:2]} == {"inconclusive"}


def test_n1_reads_inadequate_model_when_a_compared_model_fails_its_gate():
    bpd = _bpd(0.08)
    parts = ic.n1_parts(bpd, _gates(*bpd, failed=(ic.DDPM,)), 0.02)
    by = {p["setting"]: p["verdict"] for p in parts}
    assert by["T = 1000, 4000 steps"] == "inadequate model" and by["T = 10, 4000 steps"] == "supported"


def test_matched_wall_time_reads_ndm_off_its_curve_at_ddpms_time():
    curve = [[1000, 2.4], [2000, 2.2], [4000, 2.1]]
    runs = {ic.NDM: [ic.Run(None, curve, None, 0.0, "stored")] * 3, ic.NDM_FEW: [ic.Run(None, curve[:1], None, 0.0, "stored")] * 3}
    bpd = {ic.DDPM: np.array([2.2, 2.2, 2.2]), ic.DDPM_FEW: np.array([2.25, 2.25, 2.25])}
    out = ic.matched_time(bpd, runs, {"T = 1000": 2.0, "T = 10": 2.0}, 4000)
    assert out["T = 1000, 4000 steps"] == pytest.approx([0.0, 0.0, 0.0])  # NDM at 2000 steps ties DDPM at 4000
    assert out["T = 10, 4000 steps"] is None  # the curve does not reach 2000 steps: not testable


def test_n3_is_one_holm_family_of_the_few_step_bound_and_samples():
    bpd = _bpd(0.08)
    parts = ic.n3_parts(bpd, {"T = 10": np.array([-0.5, -0.52, -0.49])}, _gates(*bpd), 0.02, 0.1)
    assert [p["verdict"] for p in parts] == ["supported", "supported"]
    parts = ic.n3_parts(bpd, {}, _gates(*bpd), 0.02, 0.1)
    assert parts[1]["verdict"] == "not testable here"


# --- N2: equivalence of sample quality ------------------------------------------------------


def test_n2_is_supported_only_when_the_log_ratio_lies_within_the_margin():
    g = _gates(ic.NDM, ic.DDPM, ic.NDM_FEW, ic.DDPM_FEW)
    close = {"T = 1000": np.array([0.01, -0.01, 0.0]), "T = 10": np.array([0.5, 0.52, 0.49])}
    assert [p["verdict"] for p in ic.n2_parts(close, g, 0.1)] == ["supported", "contradicted"]
    noisy = {"T = 1000": np.array([0.3, -0.3, 0.0]), "T = 10": np.array([0.0, 0.0, 0.001])}
    assert [p["verdict"] for p in ic.n2_parts(noisy, g, 0.1)] == ["inconclusive", "supported"]


# --- N5: thicker strokes, beyond the scalar-F control ---------------------------------------


def test_n5_needs_a_widening_beyond_the_margin_and_beyond_the_scalar_control():
    g = _gates(ic.NDM, ic.NDM_FEW, ic.SCALAR)
    wide = {ic.NDM_FEW: np.array([1.3, 1.31, 1.29]), ic.NDM: np.array([1.25, 1.26, 1.24]), ic.SCALAR: np.ones(3)}
    assert {p["verdict"] for p in ic.n5_parts(wide, g, 0.1)} == {"supported"}
    same = {ic.NDM_FEW: np.array([1.0, 1.01, 0.99]), ic.NDM: np.array([1.0, 1.0, 1.01]), ic.SCALAR: np.ones(3)}
    assert {p["verdict"] for p in ic.n5_parts(same, g, 0.1)} == {"contradicted"}
    assert len(ic.n5_parts({ic.NDM: wide[ic.NDM]}, g, 0.1)) == 1  # no control, no comparison part


# --- N8: about 2x parameters and 2.3x time ----------------------------------------------------


def test_n8_judges_the_counted_parameters_and_the_bench_rounds():
    near = np.array([2.2, 2.3, 2.4, 2.3, 2.35])
    assert [p["verdict"] for p in ic.n8_parts(2.0, near, 0.25)] == ["supported", "supported"]
    far = np.array([5.0, 5.1, 4.9, 5.0, 5.2])
    assert [p["verdict"] for p in ic.n8_parts(1.0, far, 0.25)] == ["contradicted", "contradicted"]
    spread = np.array([1.0, 5.0, 2.3])
    assert ic.n8_parts(2.0, spread, 0.25)[1]["verdict"] == "inconclusive"


def test_cost_ratios_are_taken_round_by_round():
    s = {ic.DDPM: np.array([1.0, 2.0]), ic.NDM: np.array([2.0, 4.0]), ic.DDPM_FEW: np.ones(2), ic.NDM_FEW: 3 * np.ones(2)}
    r = ic.cost_ratios(s)
    assert r["T = 1000"].tolist() == [2.0, 2.0] and r["T = 10"].tolist() == [3.0, 3.0]


# --- records -----------------------------------------------------------------------------


def test_a_claim_combines_its_parts_as_the_ledger_does():
    parts = [rules.part("a", "supported", "x"), rules.part("b", "not testable here", "y"),
             rules.part("c", "inconclusive", "z")]
    rec = ic.claim(parts, "fig-x", "digits", {"x0.5": "supported", "x1": "inconclusive", "x2": "inconclusive"})
    assert rec["verdict"] == "inconclusive" and "x0.5: supported" in rec["effect"]


def test_the_parameter_count_includes_frozen_copies():
    model, _, _ = evidence.build(evidence.digits_config("ndm", 10, 2, base=8))
    n = ic.parameter_count(model)
    for p in model.parameters():
        p.requires_grad_(False)
    assert ic.parameter_count(model) == n > 0
    with torch.no_grad():
        assert n == sum(p.numel() for p in model.parameters())


def test_a_log_ratio_has_a_direction_only_when_its_interval_excludes_zero():
    assert ic.direction_text(np.array([-0.5, -0.45, -0.4])).endswith("NDM closer")
    assert ic.direction_text(np.array([0.5, 0.45, 0.4])).endswith("NDM farther")
    assert ic.direction_text(np.array([-0.5, 0.5, 0.0])).endswith("no clear direction")


def test_the_reduced_mnist_rows_are_empty_when_nothing_is_stored(tmp_path):
    assert ic.stored_mnist(tmp_path, [evidence.digits_config("ddpm", 1000, 4000, dataset="mnist5k14")]) == []
