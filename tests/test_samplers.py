"""DDPM and DDIM: the right step variances, determinism, and the mixture reproduced from its exact denoiser."""

import pytest
import torch

from diffusion_study.data import two_gaussians
from diffusion_study.metrics import energy_distance, mode_fractions
from diffusion_study.processes import GaussianForward
from diffusion_study.samplers import ddim_sample, ddpm_sample, get_sampler, time_grid
from diffusion_study.schedules import discrete_schedule


def test_ddim_eta_one_step_is_the_ddpm_posterior():
    """eta = 1: variance beta~_t and mean mu~_t(x0_hat, x_t) of Ho et al. (2020), eq. 7."""
    sched = discrete_schedule("linear", 1000)
    proc = GaussianForward(sched)
    x0_hat, z = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([2, 10, 100, 500, 900, 1000])
    mean, var = proc.posterior(x0_hat, z, t, t - 1, eta=1.0)
    torch.testing.assert_close(var.flatten(), sched.posterior_variance[t])
    beta, abar, abar_prev = sched.beta[t, None], sched.alpha_bar[t, None], sched.alpha_bar[t - 1, None]
    mu = abar_prev.sqrt() * beta / (1 - abar) * x0_hat + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar) * z
    torch.testing.assert_close(mean, mu)


def test_ddim_eta_zero_is_deterministic_and_ddpm_is_not():
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 100))
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    runs = [ddim_sample(mix.denoiser(proc), proc, x_T, steps=20, eta=0.0, generator=torch.Generator().manual_seed(s))
            for s in (1, 2)]
    assert torch.equal(runs[0], runs[1])
    runs = [ddpm_sample(mix.denoiser(proc), proc, x_T, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.allclose(runs[0], runs[1])


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddim", 100)])
def test_exact_denoiser_reproduces_the_mixture(sampler, steps):
    """Both modes with the right weights, and an energy distance to fresh data within 3x the two-sample noise floor."""
    mix = two_gaussians(weights=(0.3, 0.7))
    proc = GaussianForward(discrete_schedule("cosine", 1000))
    g = torch.Generator().manual_seed(0)
    n = 3000
    samples = get_sampler(sampler)(mix.denoiser(proc), proc, torch.randn(n, 2, generator=g), steps=steps, generator=g)
    reference, reference2 = mix.sample(n, g), mix.sample(n, g)
    floor = energy_distance(reference, reference2)
    assert energy_distance(samples, reference) < max(3 * floor, 0.01)
    torch.testing.assert_close(mode_fractions(mix, samples), mix.weights, atol=0.03, rtol=0)


def test_time_grid_and_bad_steps():
    sched = discrete_schedule("cosine", 1000)
    grid = time_grid(sched, 10)
    assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == 11 and (torch.diff(grid) < 0).all()
    for bad in (0, -3, 1001, 2.5):
        with pytest.raises(ValueError):
            time_grid(sched, bad)
    with pytest.raises(ValueError, match="'ddpm', 'ddim'"):
        get_sampler("euler")
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(lambda z, t: z, GaussianForward(sched), torch.zeros(1, 2), steps=5, eta=1.5)
