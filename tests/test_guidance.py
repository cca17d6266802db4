"""Conditioning and guidance: labels travel from the data through training to the sampler, and both
guidance wrappers match their definitions; classifier guidance with the exact classifier recovers
the exact conditional denoiser of a mixture."""

import pytest
import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.guidance import ClassifierFreeGuidance, ClassifierGuidance
from diffusion_study.core.objectives import simple_loss
from diffusion_study.core.predictions import to_eps
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import GaussianMixture, two_gaussians
from diffusion_study.eval.metrics import mode_fractions
from diffusion_study.nets.models import EnsembleMLP, TimeMLP
from diffusion_study.training.loop import train


def test_labels_round_trip_from_data_to_samples():
    """A label-conditional model trained on (x, component) pairs with label dropout samples the
    requested component when asked, and both components when given the null label."""
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 200))
    x, y = mix.sample_with_labels(8000, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = Denoiser(TimeMLP(2, hidden=64, depth=2, num_classes=2), proc, prediction="eps", clip=(-4, 4))
    result = train(model, lambda m, b, g: simple_loss(m, b[0], y=b[1], generator=g, p_uncond=0.2), (x, y),
                   steps=600, batch_size=256, lr=3e-3, ema_decay=None, progress=False)
    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    for label in (0, 1):
        samples = ddim_sample(result.model, x_T, proc.schedule.grid(50),
                              extra_args={"y": torch.full((1000,), label)})
        assert mode_fractions(mix, samples)[label] > 0.95
    unconditional = ddim_sample(result.model, x_T, proc.schedule.grid(50))
    assert (mode_fractions(mix, unconditional) > 0.3).all()


def test_classifier_free_guidance_mixes_outputs_with_the_stated_convention():
    """x0~ = x0(y) + w (x0(y) - x0(null)), in one network call; the same mix holds for eps (affine in the output)."""
    proc = GaussianForward(discrete_schedule("cosine", 100))
    torch.manual_seed(0)
    model = Denoiser(TimeMLP(2, hidden=16, depth=2, num_classes=3), proc, prediction="eps")
    z, t, y = torch.randn(10, 2), torch.tensor(0.3), torch.randint(0, 3, (10,))
    cond, uncond = model(z, t, y), model(z, t)
    for w in (0.0, 0.5, 4.0):
        guided = ClassifierFreeGuidance(model, w)(z, t, y)
        torch.testing.assert_close(guided, cond + w * (cond - uncond))
        alpha, sigma, _ = model.scales(t, z)
        eps = lambda x0: to_eps("x0", x0, z, alpha, sigma)  # noqa: E731
        torch.testing.assert_close(eps(guided), eps(cond) + w * (eps(cond) - eps(uncond)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="conditional model"):
        ClassifierFreeGuidance(Denoiser(TimeMLP(2, hidden=8, depth=1), proc), 1.0)


def test_classifier_free_guidance_on_an_ensemble_stacks_on_the_batch_dim():
    proc = GaussianForward(discrete_schedule("cosine", 100))
    torch.manual_seed(0)
    model = Denoiser(EnsembleMLP(3, 2, hidden=8, depth=1, num_classes=2), proc)
    z, y = torch.randn(3, 7, 2), torch.randint(0, 2, (3, 7))
    t = torch.tensor(0.5)
    cond, uncond = model(z, t, y), model(z, t)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 2.0)(z, t, y), cond + 2.0 * (cond - uncond))


def _component(mix: GaussianMixture, k: int) -> GaussianMixture:
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mix.means[k:k + 1], mix.covs[k:k + 1])


def test_classifier_guidance_with_the_exact_classifier_is_the_exact_conditional_denoiser():
    """score(z_t | y) = score(z_t) + grad log p(y | z_t) exactly, so with the mixture's exact noisy
    classifier (its responsibilities) and w = 1 the guided x0 equals E[x0 | z_t, y]."""
    mix = two_gaussians(weights=(0.3, 0.7))
    proc = GaussianForward(discrete_schedule("cosine", 100))

    def classifier(z, time):  # log p(y | z_t), differentiable in z
        alpha, sigma = proc.alpha(time.double()), proc.sigma(time.double())
        return torch.log(mix.responsibilities(z, alpha, sigma))

    guided = ClassifierGuidance(mix.denoiser(proc), classifier, scale=1.0)
    z = 2 * torch.randn(50, 2, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        tt = torch.tensor(t, dtype=torch.float64)
        y = torch.randint(0, 2, (50,))
        exact = torch.stack([_component(mix, k).denoiser(proc)(z, tt) for k in (0, 1)])  # [2, 50, 2]
        expected = exact.gather(0, y[None, :, None].expand(1, 50, 2))[0]
        torch.testing.assert_close(guided(z, tt, y), expected, rtol=1e-7, atol=1e-7)
    # ... and it runs inside a sampler (which has autograd off): every sample lands in the asked component
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples = ddim_sample(guided, x_T, proc.schedule.grid(50), extra_args={"y": torch.zeros(300, dtype=torch.long)})
    assert mode_fractions(mix, samples)[0] > 0.98


def test_an_ensemble_denoiser_trains_each_member_on_its_own_batches():
    """train() sees the Denoiser's `members` and draws [G, B] batches; the per-member loss falls."""
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 100))
    torch.manual_seed(0)
    model = Denoiser(EnsembleMLP(3, 2, hidden=32, depth=2), proc)
    data = mix.sample(4000, torch.Generator().manual_seed(0))
    result = train(model, lambda m, x, g: simple_loss(m, x, generator=g), data, steps=300, batch_size=128,
                   lr=3e-3, ema_decay=None, progress=False)
    assert result.losses.shape == (300, 3)
    assert (result.losses[-50:].mean(0) < 0.8 * result.losses[:20].mean(0)).all()
