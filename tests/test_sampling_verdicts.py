"""Chapter 3's verdict rules and model plumbing (studies.sampling): the stored digits ensemble, L5's rows (DDIM is
deterministic, uses DDPM's training, matches DDPM at many steps; the few-step extension apart) and L6's rows
against the exact guided sampler (support, coverage, the precision ceiling), including the inconclusive cases."""

import numpy as np
import pytest
import torch
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.eval import verdicts as rules
from diffusion_study.studies import sampling as study

THRESHOLDS = {"precision": 0.02, "coverage": 0.10, "gradient": 0.30}


class _Member(torch.nn.Module):
    """A stand-in stored model: x0_hat = scale * z on images [N, 1, 8, 8]; records the shapes it saw."""

    def __init__(self, scale):
        super().__init__()
        self.scale, self.seen = scale, []

    def forward(self, z, t):
        self.seen.append((tuple(z.shape), tuple(torch.as_tensor(t).shape)))
        return self.scale * z


def _sweep(values: dict[str, dict[int, list[float]]]) -> study.Sweep:
    sweep = study.Sweep()
    for name, by_steps in values.items():
        for n, q in by_steps.items():
            sweep.add(name, n, q, n, 0.0)
    return sweep


def test_stored_ensemble_gives_member_g_the_slice_g_as_images():
    members = [_Member(1.0), _Member(2.0)]
    ens = study.StoredEnsemble(members, process=None)
    z = torch.ones(2, 3, 64)
    out = ens(z, torch.tensor(0.5))
    assert out.shape == (2, 3, 64) and torch.equal(out[0], z[0]) and torch.equal(out[1], 2 * z[1])
    assert members[0].seen == [((3, 1, 8, 8), ())]
    ens(z, torch.full((2, 3), 0.5))  # times of the batch shape: member g sees t[g]
    assert members[1].seen[-1] == ((3, 1, 8, 8), (3,))
    with pytest.raises(ValueError, match="unconditional"):
        ens(z, 0.5, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="3 members, the ensemble 2"):
        ens(torch.ones(3, 3, 64), 0.5)


def test_stored_models_are_used_only_when_the_chapter_settings_match_the_store():
    assert len(study.stored_digits_configs(3, 1000, 5.0, -10.0)) == 3
    assert study.stored_digits_configs(3, 100, 5.0, -10.0) is None  # another T: train in the chapter
    assert study.stored_digits_configs(3, 1000, 8.0, -10.0) is None  # another schedule
    assert study.stored_digits_configs(9, 1000, 5.0, -10.0) is None  # more seeds than stored


def test_a_missing_stored_model_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits-ddpm-T1000.*set digits_models = 'train'"):
        study.load_stored_digits(study.stored_digits_configs(1, 1000, 5.0, -10.0), tmp_path)


def test_on_process_moves_the_networks_to_the_t_step_grid_of_the_same_log_snr():
    from diffusion_study.core.denoiser import Denoiser

    cont = GaussianForward(continuous_schedule("logsnr_cosine", logsnr_max=5.0, logsnr_min=-10.0))
    disc = GaussianForward(discrete_schedule("logsnr_cosine", 100, logsnr_max=5.0, logsnr_min=-10.0))
    stored = [Denoiser(torch.nn.Identity(), cont, prediction="x0", clip=(-1, 1)) for _ in range(2)]
    ens = study.on_process(stored, disc)
    assert ens.process is disc and all(m.process is disc and m.clip == (-1, 1) for m in ens.members)
    assert all(m.net is s.net for m, s in zip(ens.members, stored))  # the same weights


def test_ddim_determinism_is_an_identity_checked_bitwise_and_named_so():
    x = torch.randn(2, 5, 3)
    same, differs = study.determinism_row("2D", x, x.clone()), study.determinism_row("2D", x, x + 1e-7)
    assert same["verdict"] == rules.SUPPORTED and same["setting"] == "2D (identity check)"
    assert differs["verdict"] == rules.CONTRADICTED and "e-07" in differs["effect"]
    assert study.gate_rows([same], {"2D": (False, "bad model")}) == [same]  # an identity holds whatever the model


def test_ddim_matching_ddpm_at_many_steps_is_an_equivalence_and_can_be_inconclusive():
    top = 1000
    close = _sweep({"ddim": {top: [1.0, 1.02, 0.99, 1.01, 1.0]}, "ddpm-beta-tilde": {top: [1.0, 1.0, 1.0, 1.0, 1.0]}})
    far = _sweep({"ddim": {top: [2.0, 2.1, 1.9, 2.0, 2.05]}, "ddpm-beta-tilde": {top: [1.0] * 5}})
    noisy = _sweep({"ddim": {top: [0.5, 2.0, 1.0, 0.6, 1.9]}, "ddpm-beta-tilde": {top: [1.0] * 5}})
    gaussian = {"a": np.full(5, 10.0)}
    for sweep, expected in ((close, rules.SUPPORTED), (far, rules.CONTRADICTED), (noisy, rules.INCONCLUSIVE)):
        beats, matches = study.l5_rows({"a": sweep}, gaussian, [10, top], 0.25)
        assert matches["verdict"] == expected and "equivalence" in matches["margin"]
        assert beats["verdict"] == rules.SUPPORTED  # every DDIM run beats a Gaussian fit ten times as far


def test_ddim_on_ddpm_training_no_better_than_a_gaussian_fit_is_contradicted():
    sweep = _sweep({"ddim": {100: [1.0, 1.1, 0.9]}, "ddpm-beta-tilde": {100: [1.0, 1.0, 1.0]}})
    beats, _ = study.l5_rows({"a": sweep}, {"a": np.array([1.0, 1.05, 0.95])}, [100], 0.25)
    assert beats["verdict"] == rules.CONTRADICTED


def test_the_few_step_extension_is_judged_apart_from_l5():
    sweep = _sweep({"ddim": {10: [1.0, 1.1, 0.9]}, "ddpm-beta-tilde": {10: [3.0, 3.2, 2.9]}})
    (row,) = study.l5_extension_rows({"a": sweep}, 10, 0.25)
    assert row["verdict"] == rules.SUPPORTED and "extension" in row["setting"]


def test_a_claim_verdict_keeps_identities_apart_and_a_failed_identity_contradicts():
    verified = rules.part("x", rules.VERIFIED, "0")
    supported = rules.part("y", rules.SUPPORTED, "1")
    assert study.verdict_of([verified, supported]) == rules.SUPPORTED
    assert study.verdict_of([verified]) == rules.SUPPORTED
    assert study.verdict_of([rules.part("x", rules.FAILS, "1"), supported]) == rules.MIXED
    assert study.verdict_of([rules.part("x", rules.IDENTITY_INCONCLUSIVE, "?"), supported]) == rules.INCONCLUSIVE


def test_a_failed_gate_makes_its_rows_inadequate_with_the_numbers_and_keeps_identities():
    rows = [rules.part("2D: a", rules.SUPPORTED, "1"), rules.part("2D: b", rules.VERIFIED, "0"),
            rules.part("digits: c", rules.SUPPORTED, "2")]
    out = study.gate_rows(rows, {"2D": (False, "model 0.09 does not beat Gaussian fit 0.03"), "digits": (True, "ok")})
    assert [r["verdict"] for r in out] == [rules.INADEQUATE, rules.VERIFIED, rules.SUPPORTED]
    assert "does not beat Gaussian fit 0.03" in out[0]["effect"]


def _mixture_setup():
    from diffusion_study.data.toy2d import gaussian_ring

    mix = gaussian_ring()
    g = torch.Generator().manual_seed(0)
    x, y = mix.sample_with_labels(6000, g)
    held = [x[y == c][:300] for c in range(3)]
    fresh_x, fresh_y = mix.sample_with_labels(3000, g)
    radius = study.coverage_radius(held, [fresh_x[fresh_y == c][:100] for c in range(3)])
    return mix, held, radius, g


def test_coverage_of_true_class_samples_is_about_a_half_and_leaving_the_support_never_raises_it():
    mix, held, radius, g = _mixture_setup()
    x, y = mix.sample_with_labels(3000, g)
    samples = torch.stack([torch.cat([x[y == c][:100] for c in range(3)])])  # [1, 300, 2]
    labels = study.class_blocks(100, 3, 1)
    keep = torch.ones(1, 300, dtype=torch.bool)
    cov = study.coverage(samples, labels, held, radius, keep)
    assert 0.35 < cov[0] < 0.65
    far = samples * 50  # the same samples blown far off the data, all outside the support
    level = study.support_level(mix.log_prob, mix.sample(5000, g), 0.001)
    assert study.out_of_support(mix.log_prob, far, level)[0] == 1.0
    assert study.out_of_support(mix.log_prob, samples, level)[0] < 0.02
    assert study.coverage(far, labels, held, radius, torch.zeros(1, 300, dtype=torch.bool))[0] == 0.0


def test_scales_are_judged_up_to_where_the_exact_sampler_leaves_the_support():
    out = lambda *v: np.array([[x] * 3 for x in v])  # noqa: E731  [scales, G]
    measures = {"exact": {"out": out(0.0, 0.01, 0.04, 0.2, 0.01)}, "classifier": {"out": out(0.5, 0.5, 0.5, 0.5, 0.5)}}
    assert study.largest_in_support_scale(measures, [0, 1, 2, 4, 8], 0.05) == 2  # stops at the first scale beyond
    assert study.largest_in_support_scale({"exact": {"out": out(0.0, 0.3)}}, [0, 1], 0.05) == 0


def _measures(p0, pk, c0, ck):
    return {"precision": np.array([p0, pk]), "coverage": np.array([c0, ck]), "out": np.zeros((2, 3))}


def test_guidance_raising_precision_and_lowering_coverage_supports_l6_parts():
    m = {"exact": _measures([0.80, 0.82, 0.81], [0.95, 0.96, 0.95], [0.5, 0.5, 0.5], [0.3, 0.31, 0.29])}
    rows = study.l6_rows(m, 1, 2.0, THRESHOLDS, np.array([0.1, 0.12, 0.11]))
    assert [r["verdict"] for r in rows] == [rules.SUPPORTED] * 3


def test_precision_at_its_ceiling_is_not_testable_and_a_noisy_coverage_is_inconclusive():
    m = {"exact": _measures([0.99, 1.0, 0.995], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.2, 0.7, 0.5])}
    rows = study.l6_rows(m, 1, 2.0, THRESHOLDS, np.array([0.5, 0.6, 0.55]))
    assert rows[0]["verdict"] == rules.NOT_TESTABLE and "ceiling" in rows[0]["effect"]
    assert rows[1]["verdict"] == rules.INCONCLUSIVE
    assert rows[2]["verdict"] == rules.CONTRADICTED  # the difference misses the gradient by about half


def test_no_scale_in_support_leaves_the_guidance_parts_not_testable():
    m = {"exact": _measures([0.8, 0.8, 0.8], [0.9, 0.9, 0.9], [0.5] * 3, [0.4] * 3)}
    rows = study.l6_rows(m, 0, 0.0, THRESHOLDS, np.array([0.1, 0.1, 0.1]))
    assert [r["verdict"] for r in rows[:2]] == [rules.NOT_TESTABLE] * 2


def test_the_exact_denoisers_difference_is_the_class_posterior_gradient_by_bayes_rule():
    from diffusion_study.data.toy2d import class_score, conditional_denoiser, gaussian_ring

    mix = gaussian_ring()
    proc = GaussianForward(discrete_schedule("logsnr_cosine", 1000, logsnr_max=8.0, logsnr_min=-10.0))
    g = torch.Generator().manual_seed(0)
    points = mix.sample(50, g).repeat(3, 1)
    labels = torch.arange(3).repeat_interleave(50)
    exact = lambda z, y, a, s: class_score(mix, z, y, a, s)  # noqa: E731
    err = study.bayes_identity_error(conditional_denoiser(mix, proc), exact, points, labels, proc, 0.3, g)
    assert err < 1e-3
    wrong = lambda z, y, a, s: 1.1 * class_score(mix, z, y, a, s)  # noqa: E731  a 10% error is found
    assert study.bayes_identity_error(conditional_denoiser(mix, proc), wrong, points, labels, proc, 0.3, g) > 1e-2
