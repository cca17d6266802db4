"""Chapter 4's verdict rules (studies.ndm_2d.n1 ... n7) read as the claims they judge, including the cases
the seeds cannot decide, and the controls' building blocks (scalar-gain F, optimal reverse variance)."""

import numpy as np
import torch

from diffusion_study.core.objectives import GaussianDecoder, vlb_terms
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.eval import verdicts as rules
from diffusion_study.nets.transforms import EnsembleScalarGain, LearningRateScale
from diffusion_study.nets.models import EnsembleMLP
from diffusion_study.studies import ndm_2d

PASS = {"checkerboard": (True, "ok"), "two_moons": (True, "ok")}
FAIL_MOONS = {"checkerboard": (True, "ok"), "two_moons": (False, "DDPM 2.8 does not beat Gaussian fit 2.5")}
SCHEDULE = continuous_schedule("logsnr_cosine", logsnr_max=10.0, logsnr_min=-10.0)


def seeds(mean, sd=0.001, n=5):
    return (mean + sd * np.linspace(-1, 1, n)).tolist()


def test_n1_supported_when_ndm_beats_ddpm_by_more_than_the_margin_everywhere():
    diffs = {("bound", n): seeds(-0.1) for n in PASS}
    parts, verdict = ndm_2d.n1(diffs, {}, PASS, 0.02)
    assert verdict == rules.SUPPORTED and len(parts) == 2
    assert all("interval" in p and "mde" in p for p in parts)


def test_n1_contradicted_when_ndm_is_no_better_and_inconclusive_when_the_seeds_spread():
    assert ndm_2d.n1({("bound", n): seeds(0.0) for n in PASS}, {}, PASS, 0.02)[1] == rules.CONTRADICTED
    assert ndm_2d.n1({("bound", n): seeds(-0.02, sd=0.5) for n in PASS}, {}, PASS, 0.02)[1] == rules.INCONCLUSIVE


def test_n1_a_data_set_failing_its_gate_reads_inadequate_and_all_failing_is_inadequate():
    diffs = {("bound", n): seeds(-0.1) for n in PASS}
    parts, verdict = ndm_2d.n1(diffs, {}, FAIL_MOONS, 0.02)
    assert verdict == rules.SUPPORTED
    assert [p["verdict"] for p in parts] == [rules.SUPPORTED, rules.INADEQUATE]
    assert "does not beat" in parts[1]["effect"]
    none = {n: (False, "no") for n in PASS}
    assert ndm_2d.n1(diffs, {}, none, 0.02)[1] == rules.INADEQUATE


def test_n1_controls_are_reported_but_do_not_decide_the_verdict():
    diffs = {("bound", n): seeds(-0.1) for n in PASS}
    controls = {("beyond scalar gain", n): seeds(0.0) for n in PASS}
    parts, verdict = ndm_2d.n1(diffs, controls, PASS, 0.02)
    assert verdict == rules.SUPPORTED and len(parts) == 4
    assert [p["verdict"] for p in parts[2:]] == [rules.CONTRADICTED] * 2


def test_n1_holm_makes_a_family_harder_to_support_than_one_part():
    one = ndm_2d.n1({("bound", "checkerboard"): [-0.06, -0.04, -0.05]}, {}, PASS, 0.02)[1]
    many = {(f"m{i}", "checkerboard"): [-0.06, -0.04, -0.05] for i in range(6)}
    assert one == rules.SUPPORTED and ndm_2d.n1(many, {}, PASS, 0.02)[1] == rules.INCONCLUSIVE


def test_n2_comparable_is_an_equivalence_test():
    gates = {"two_gaussians": (True, "ok")}
    assert ndm_2d.n2({("DDIM", "two_gaussians"): seeds(0.0)}, gates, 0.005)[1] == rules.SUPPORTED
    assert ndm_2d.n2({("DDIM", "two_gaussians"): seeds(0.02)}, gates, 0.005)[1] == rules.CONTRADICTED
    assert ndm_2d.n2({("DDIM", "two_gaussians"): seeds(0.0, sd=0.05)}, gates, 0.005)[1] == rules.INCONCLUSIVE
    assert ndm_2d.n2({("DDIM", "two_gaussians"): seeds(0.0)}, {"two_gaussians": (False, "x")}, 0.005)[1] == rules.INADEQUATE


def test_n3_needs_a_better_few_step_bound_and_no_worse_samples():
    bound = {n: seeds(-0.2) for n in PASS}
    same = {n: seeds(0.0) for n in PASS}
    assert ndm_2d.n3(bound, same, {}, PASS, 0.02, 0.005)[1] == rules.SUPPORTED
    worse = {n: seeds(0.05) for n in PASS}
    assert ndm_2d.n3(bound, worse, {}, PASS, 0.02, 0.005)[1] == rules.MIXED
    assert ndm_2d.n3({n: seeds(0.1) for n in PASS}, worse, {}, PASS, 0.02, 0.005)[1] == rules.CONTRADICTED


def test_n4_straighter_and_fewer_steps_and_a_sampler_that_never_converges_is_capped():
    ratio = {"checkerboard": seeds(0.2)}
    parts, verdict = ndm_2d.n4(ratio, {"checkerboard": seeds(32, 0)}, {"checkerboard": seeds(4, 0)}, 0.5)
    assert verdict == rules.SUPPORTED
    never = {"checkerboard": [np.inf] * 5}
    parts, verdict = ndm_2d.n4(ratio, never, {"checkerboard": seeds(4, 0)}, 0.5)
    assert verdict == rules.SUPPORTED and np.isfinite(parts[1]["interval"]).all()
    assert ndm_2d.n4({"checkerboard": seeds(0.9)}, {"checkerboard": seeds(32, 0)},
                     {"checkerboard": seeds(4, 0)}, 0.5)[1] == rules.MIXED


def test_n6_collapse_under_the_noise_loss_only():
    kept = {"bound, T = 1000": (seeds(1.0), seeds(1.0))}
    assert ndm_2d.n6((seeds(0.01), seeds(0.01)), kept, 0.1)[1] == rules.SUPPORTED
    # forgets x (spread) but keeps a norm of the data's order: collapse to a point that is not 0
    assert ndm_2d.n6((seeds(0.8), seeds(0.01)), kept, 0.1)[1] == rules.MIXED
    assert ndm_2d.n6((seeds(0.1, sd=0.2), seeds(0.1, sd=0.2)), kept, 0.1)[1] == rules.INCONCLUSIVE


def test_n7_constant_calls_whatever_t_is_a_verified_identity():
    same = {("NDM", 8): {"x_hat": 1, "F": 2}, ("NDM", 1000): {"x_hat": 1, "F": 2}}
    assert ndm_2d.n7(same)[1] == rules.VERIFIED
    grows = {("NDM", 8): {"x_hat": 1, "F": 2}, ("NDM", 1000): {"x_hat": 999, "F": 2}}
    assert ndm_2d.n7(grows)[1] == rules.FAILS


def test_gates_name_their_numbers():
    ok, why = ndm_2d.likelihood_gate({"DDPM": [2.5, 2.6]}, [2.9, 2.9], 2.0, 0.05)
    assert ok and "Gaussian fit's 2.900" in why and "above the exact NLL by DDPM 0.550" in why
    ok, why = ndm_2d.structure_gate("checkerboard", {"DDPM": [0.40, 0.45]}, [0.42], 0.05)
    assert not ok and "not above" in why


def test_ensemble_scalar_gain_is_a_learned_schedule_starting_at_the_identity():
    gain = EnsembleScalarGain(3)
    x, t = torch.randn(3, 7, 2), torch.rand(3, 7)
    assert torch.equal(gain(x, t), torch.zeros_like(x))  # F = x + t * 0
    with torch.no_grad():
        gain.g.biases[-1].fill_(0.5)
    out = gain(x, t)
    assert torch.allclose(out, 0.5 * x)  # the same factor for every point: c(t) x


def test_learning_rate_scale_keeps_the_function_and_scales_adams_step():
    net = EnsembleMLP(2, 2, 8, 2, 8, "silu", generator=torch.Generator().manual_seed(0))
    x, t = torch.randn(2, 5, 2), torch.rand(2, 5)
    before = net(x, t).detach()
    scaled = LearningRateScale(net, 10.0)
    assert torch.allclose(scaled(x, t), before, atol=1e-6)
    w0 = scaled.net.weights[0].detach().clone() * 10
    opt = torch.optim.Adam(scaled.parameters(), lr=1e-3)
    scaled(x, t).sum().backward()
    opt.step()
    step = (scaled.net.weights[0].detach() * 10 - w0).abs().max()
    assert 5e-3 < float(step) < 2e-2  # about 10 x lr on the effective weights


def test_analytic_variance_lowers_the_bound_and_the_posterior_variance_gives_vlb_terms():
    model = ndm_2d.toy_model(SCHEDULE, "ddpm", 2, hidden=8, generator=torch.Generator().manual_seed(0))
    x, grid, dec = torch.randn(2, 3000, 2), SCHEDULE.grid(6), GaussianDecoder()
    post = torch.stack([model.process.step_coefficients(s, t).posterior_var.expand(2) for s, t in ndm_2d._pairs(grid)])
    ours = ndm_2d.analytic_bound(model, x, grid, post, decoder=dec, generator=torch.Generator().manual_seed(2))
    ref = vlb_terms(model, x, decoder=dec, times=grid, generator=torch.Generator().manual_seed(2)).total
    assert torch.allclose(ours, ref.detach(), atol=1e-5)
    best = ndm_2d.analytic_variances(model, x, grid, torch.Generator().manual_seed(1))
    better = ndm_2d.analytic_bound(model, x, grid, best, decoder=dec, generator=torch.Generator().manual_seed(2))
    assert float(better.mean()) < float(ours.mean())


def test_matched_width_gives_ddpm_at_least_ndms_parameters():
    w = ndm_2d.matched_width(16)
    ddpm = ndm_2d.toy_model(SCHEDULE, "ddpm", 1, hidden=16, x_hidden=w)
    ndm = ndm_2d.toy_model(SCHEDULE, "ndm", 1, hidden=16)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(ndm) <= n(ddpm) < 1.1 * n(ndm)


def test_figure_ranges_are_not_set_by_one_outlier():
    from diffusion_study.studies.ndm_2d_figures import robust_limits

    values = list(np.linspace(-0.05, 0.05, 40)) + [5.0]
    low, high = robust_limits(values, include=(0,))
    assert high < 1.0 and low < -0.04


def test_results_are_jsonable_with_tuple_keys_and_arrays():
    import json

    out = ndm_2d.jsonable({("bound", "ddpm"): np.ones((2, 3)), "t": torch.zeros(2), "gate": (True, "ok"), 8: 1.5})
    assert json.loads(json.dumps(out)) == {"bound ddpm": [[1.0] * 3] * 2, "t": [0.0, 0.0], "gate": [True, "ok"], "8": 1.5}


def test_chapter_data_lays_out_members_by_data_set_then_seed():
    train, test, exact = ndm_2d.chapter_data(("checkerboard", "two_gaussians"), 50, 20, range(3))
    assert train.shape == (50, 6, 2) and test.shape == (6, 20, 2)
    assert exact["checkerboard"] == np.log(8.0) and exact["two_gaussians"] > 0
    assert float(ndm_2d.structure("checkerboard", test[:3]).min()) > 0.9  # members 0-2: the checkerboard


def test_control_text_says_what_f_adds_beyond_each_control():
    parts = [{"setting": "bound, two_gaussians", "verdict": rules.SUPPORTED},
             {"setting": "beyond DDPM, wider, checkerboard", "verdict": rules.INADEQUATE},
             {"setting": "beyond DDPM, wider, two_gaussians", "verdict": rules.SUPPORTED},
             {"setting": "beyond NDM, F = c(t) x, two_gaussians", "verdict": rules.CONTRADICTED}]
    assert ndm_2d.control_text(parts) == "DDPM, wider: supported; NDM, F = c(t) x: contradicted"


def test_falling_and_ablation_texts_follow_the_numbers():
    text = ndm_2d.falling_text(["a", "b"], [[0.5, 0.6, 0.55], [0.0, 0.01, -0.01]])
    assert "a 0.550" in text and "(still falling)" in text and "b" in text and "(no longer falling)" in text
    assert "not from how F is trained" in ndm_2d.ablation_text({"x": 0.01, "y": 0.02}, 0.3)
    assert "optimiser's doing" in ndm_2d.ablation_text({"x": 0.01, "y": 0.2}, 0.3)
