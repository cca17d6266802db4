"""A few hundred steps of L_simple on the two-Gaussian mixture: the loss falls and samples land on both modes."""

import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import simple_loss
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import two_gaussians
from diffusion_study.eval.metrics import mode_fractions
from diffusion_study.nets.models import TimeMLP
from diffusion_study.training.loop import train


def test_short_training_lowers_the_loss_and_covers_both_modes():
    torch.manual_seed(0)
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 1000))
    data = mix.sample(10_000, torch.Generator().manual_seed(0))
    # alpha_T ~ 5e-5 at the last cosine step: clip x0_hat to a box around the data, or eps errors explode.
    model = Denoiser(TimeMLP(2, hidden=64, depth=2), proc, prediction="eps", clip=(-4, 4))
    result = train(model, lambda m, x, g: simple_loss(m, x, generator=g), data, steps=400, batch_size=256,
                   lr=3e-3, ema_decay=None, seed=0, progress=False)
    assert result.losses[-50:].mean() < 0.8 * result.losses[:50].mean()

    g = torch.Generator().manual_seed(1)
    samples = ddim_sample(result.model, torch.randn(2000, 2, generator=g), proc.schedule.grid(100))
    fractions = mode_fractions(mix, samples)
    assert (fractions > 0.35).all(), fractions  # both modes, near their weights 0.5 / 0.5
    # "near": within 3 standard deviations (0.5 each) of a mode centre
    distance = torch.cdist(samples.double(), mix.means).min(1).values
    assert (distance < 1.5).double().mean() > 0.9
