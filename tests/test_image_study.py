"""Chapter 5's library: the sampled bound against vlb_terms, the image measures on images with known answers,
matched compute, the decoder floor, the models' parameter counts and snapshots."""

import math

import pytest
import torch
from diffusion_study.core.objectives import (
    DiscretizedGaussianDecoder,
    decoder_nll_at,
    diffusion_kl,
    prior_kl,
    vlb_terms,
)
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.studies import ndm_images as study

SCHED = continuous_schedule("logsnr_cosine", logsnr_max=5.0, logsnr_min=-10.0)
DEC = DiscretizedGaussianDecoder(17)


def _digits_like(n=6, seed=0):
    """Random images on the 17-level grid of the digits, [n, 1, 8, 8]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 8 - 1


def _perturbed(kind, scale=0.05):
    """A model whose F is not the identity (its zero output layer perturbed), so NDM differs from DDPM."""
    model = study.image_model(kind, SCHED, base=8, data_std=0.6, seed=0)
    with torch.no_grad():
        for p in model.process.parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _bar(width, length=6, size=8, ink=1.0, paper=-1.0, vertical=False):
    x = torch.full((1, size, size), paper)
    r0, c0 = 1, 1
    if vertical:
        x[0, r0:r0 + length, c0:c0 + width] = ink
    else:
        x[0, r0:r0 + width, c0:c0 + length] = ink
    return x


@pytest.mark.parametrize("kind", ["ddpm", "ndm"])
@pytest.mark.parametrize("i", [1, 2, 5, 10])
def test_each_term_of_the_sampled_bound_equals_the_library_term_on_the_same_noise(kind, i):
    model, x = _perturbed(kind), _digits_like()
    times, K = SCHED.grid(10), 10
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
    est = study.sampled_bound(model, x, times, decoder=DEC, index=torch.full((len(x),), i), noise=noise)
    term = (est - prior_kl(model.process, x, 3, 1.0)) / K
    s, t = times[K - i + 1], times[K - i]
    if i == 1:
        ref = decoder_nll_at(model, x, model.process.sample(x, t, noise), t, DEC, 3)
    else:
        ref = diffusion_kl(model, x, s, t, noise)
    torch.testing.assert_close(term, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # > 5 s: make test-slow
def test_the_sampled_bound_is_unbiased_for_the_full_bound():
    model, x = _perturbed("ndm"), _digits_like(4)
    times = SCHED.grid(5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        full = torch.stack([vlb_terms(model, x, decoder=DEC, times=times, generator=g).total for _ in range(100)]).mean(0)
        est = torch.stack([study.sampled_bound(model, x, times, decoder=DEC, generator=g) for _ in range(800)])
    se = est.std(0) / math.sqrt(len(est))
    assert ((est.mean(0) - full).abs() < 4 * se + 0.02 * full.abs()).all(), (est.mean(0), full, se)


def test_the_sampled_bound_trains_both_models_and_its_gradient_is_finite():
    for kind in study.KINDS:
        model = study.image_model(kind, SCHED, base=8, data_std=0.6)
        loss = study.bound_loss(SCHED.grid(10), DEC)(model, _digits_like(), torch.Generator().manual_seed(0))
        assert loss.shape == (6,)
        loss.mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ndm_starts_as_the_ddpm_of_its_seed_with_twice_the_parameters():
    ddpm = study.image_model("ddpm", SCHED, base=8, seed=3)
    ndm_ = study.image_model("ndm", SCHED, base=8, seed=3)
    x = _digits_like()
    t = torch.full((len(x),), 0.4, dtype=torch.float64)
    torch.testing.assert_close(ndm_.process.transform(x, t), x)  # F = x at the start
    z = torch.randn_like(x)
    torch.testing.assert_close(ndm_(z, t), ddpm(z, t))  # the same x_hat weights
    counts, base_counts = study.parameter_counts(ndm_), study.parameter_counts(ddpm)
    assert counts["F"] == counts["x_hat"] == base_counts["total"] and base_counts["F"] == 0


def test_ink_mass_of_images_with_known_ink():
    x = torch.full((1, 8, 8), -1.0)
    assert float(study.ink_mass(x)) == 0.0
    x[0, :2, :] = 1.0  # 16 of 64 pixels fully inked
    assert float(study.ink_mass(x)) == pytest.approx(0.25)
    x[0, 2, :4] = 0.0  # 4 pixels half inked
    assert float(study.ink_mass(x)) == pytest.approx(0.25 + 2 / 64)


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("vertical", [False, True])
def test_stroke_width_of_a_known_bar(width, vertical):
    assert float(study.stroke_width(_bar(width, vertical=vertical))) == pytest.approx(width)


def test_stroke_width_ignores_brightness_and_contrast_but_sees_thickening():
    thin, thick = _bar(1), _bar(3)
    assert float(study.stroke_width(0.3 * thin + 0.2)) == pytest.approx(1.0)
    assert float(study.stroke_width(thick)) > float(study.stroke_width(thin))
    batch = torch.stack([thin, thick])  # [2, 1, 8, 8] -> [2]
    torch.testing.assert_close(study.stroke_width(batch), torch.tensor([1.0, 3.0], dtype=torch.float64))


def test_contrast_scales_with_the_pixel_range():
    x = _bar(2)
    torch.testing.assert_close(study.contrast(2 * x), 2 * study.contrast(x))
    assert float(study.contrast(torch.zeros(1, 4, 4))) == 0.0


def test_transform_measures_are_one_for_ddpm_and_see_a_thickening_f():
    x = torch.stack([_bar(1), _bar(2)])
    ratios = study.transform_measures(study.image_model("ddpm", SCHED, base=8), x, [0.0, 0.5])
    for v in ratios.values():
        torch.testing.assert_close(v, torch.ones(2, dtype=torch.float64))

    class Thicken:  # F(x, t) dilates the ink by one pixel for t > 0
        def transform(self, x, t):
            if float(t) == 0:
                return x
            return torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1)

    fake = type("M", (), {"process": Thicken()})()
    ratios = study.transform_measures(fake, x, [0.0, 0.5])
    assert float(ratios["stroke width"][0]) == pytest.approx(1.0)
    assert float(ratios["stroke width"][1]) > 1.5 and float(ratios["ink mass"][1]) > 1.5


def test_matched_steps():
    assert study.matched_steps(300, 2.5) == 120
    assert study.matched_steps(3, 10.0) == 1
    with pytest.raises(ValueError):
        study.matched_steps(10, 0.0)


def test_decoder_floor_vanishes_for_narrow_noise_and_grows_with_it():
    x = _digits_like(20)
    assert study.decoder_floor(x, 1e-3, 17) < 1e-6
    widths = [study.decoder_floor(x, s, 17) for s in (0.02, 0.05, 0.1, 0.3)]
    assert widths == sorted(widths) and widths[-1] > 1
    # an interior pixel at sigma = half a bin: -log2(2 Phi(1) - 1)
    mid = torch.zeros(1, 1, 1, 1)
    assert study.decoder_floor(mid, 1 / 16, 17) == pytest.approx(-math.log2(math.erf(1 / math.sqrt(2))), rel=1e-6)


def test_fit_keeps_a_snapshot_that_is_the_same_run_stopped_early():
    x = _digits_like(32)
    loss = study.bound_loss(SCHED.grid(10), DEC)
    kw = dict(batch_size=8, lr=1e-3, ema_decay=0.9, seed=0)
    both = study.fit(study.image_model("ddpm", SCHED, base=8), loss, x, 4, snapshots=[2], **kw)
    short = study.fit(study.image_model("ddpm", SCHED, base=8), loss, x, 2, **kw)
    assert sorted(both.models) == [2, 4] and both.steps == 4
    assert both.seconds[2] <= both.seconds[4]
    for a, b in zip(both.models[2].parameters(), short.final.parameters()):
        torch.testing.assert_close(a, b)


def test_fit_matched_in_wall_time_keeps_the_run_at_the_step_its_time_ran_out():
    x = _digits_like(32)
    loss = study.bound_loss(SCHED.grid(10), DEC)
    kw = dict(batch_size=8, lr=1e-3, ema_decay=0.9, seed=0)
    first = study.fit(study.image_model("ndm", SCHED, base=8), loss, x, 3, match_seconds=0.0, **kw)
    assert first.matched == 1 and sorted(first.models) == [1, 3]
    short = study.fit(study.image_model("ndm", SCHED, base=8), loss, x, 1, **kw)
    for a, b in zip(first.models[1].parameters(), short.final.parameters()):
        torch.testing.assert_close(a, b)
    never = study.fit(study.image_model("ddpm", SCHED, base=8), loss, x, 2, match_seconds=1e9, **kw)
    assert never.matched == 2 and sorted(never.models) == [2]
    assert study.fit(study.image_model("ddpm", SCHED, base=8), loss, x, 2, **kw).matched is None


def test_image_baselines_are_bits_per_dim_of_the_same_test_images():
    from diffusion_study.data.images import load_image_dataset

    data = load_image_dataset("digits")
    got = study.image_baselines(data.train, data.test, data.levels, components=3, iterations=20)
    assert set(got) == {"per-pixel histogram", "mixture of 3 categoricals"}
    assert got["mixture of 3 categoricals"] < got["per-pixel histogram"] < math.log2(17)
    assert got["per-pixel histogram"] == pytest.approx(2.437, abs=0.001)  # measured once; the split is fixed


def test_final_sample_lies_on_the_pixel_grid():
    model = study.image_model("ndm", SCHED, base=8)
    out = study.final_sample(model, torch.randn(3, 1, 8, 8), SCHED.grid(4), 17, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 8, 8)
    k = (out + 1) * 8
    torch.testing.assert_close(k, k.round())


def test_gpu_results_absent_and_present(tmp_path):
    assert study.gpu_results(tmp_path / "missing") == []
    (tmp_path / "a.json").write_text('{"metrics": {"ndm": {"bits_per_dim": 1.5}, "steps": 10}}')
    (tmp_path / "broken.json").write_text("{")
    records = study.gpu_results(tmp_path)
    assert [r["path"] for r in records] == ["a.json"]
    assert study.gpu_summary(records[0]) == [("ndm.bits_per_dim", 1.5)]


def test_image_classifier_features_for_mnist_sized_images():
    net = study.ImageClassifier(1, width=8, features=16)
    x = torch.randn(5, 1, 28, 28)
    assert net.features(x).shape == (5, 16) and net(x).shape == (5, 10)


def test_image_model_options_and_training_loss():
    """The options the command line uses (attention, bf16, no clip, F's features unslowed) and the losses by name."""
    from diffusion_study.nets import transforms

    model = study.image_model("ndm", SCHED, base=8, attention=True, bf16=True, clip=None, f_time_scale=None)
    nets = study.unets(model)
    assert len(nets) == 2 and all(isinstance(n, study.AutocastUNet) for n in nets)
    assert model.clip is None and not isinstance(model.process.net, transforms.SlowTime)
    assert sum(p.numel() for p in nets[0].parameters()) > sum(
        p.numel() for p in study.unets(study.image_model("ddpm", SCHED, base=8))[0].parameters())  # attention
    with study.full_precision(model):
        assert not any(n.autocast_enabled for n in nets)
    assert all(n.autocast_enabled for n in nets)
    x, model = _digits_like(4), _perturbed("ndm")
    for objective in study.OBJECTIVES:
        loss = study.training_loss(objective, DEC, SCHED.grid(10))(model, x, torch.Generator().manual_seed(0))
        assert loss.shape == (4,) and torch.isfinite(loss).all()
    same = study.training_loss("vlb", DEC, SCHED.grid(10))(model, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, study.bound_loss(SCHED.grid(10), DEC)(model, x, torch.Generator().manual_seed(1)),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="valid choices"):
        study.training_loss("elbo", DEC)
    with pytest.raises(ValueError, match="needs the grid"):
        study.training_loss("vlb", DEC)
