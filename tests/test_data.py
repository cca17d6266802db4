"""The mixture oracles: exact noised density, score and denoiser agree with each other and with sampling."""

import math

import torch
from diffusion_study.data.toy2d import GaussianMixture, two_gaussians


def skewed_mixture() -> GaussianMixture:
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]]], dtype=torch.float64)
    means = torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.35, 0.65], dtype=torch.float64), means, covs)


def test_score_is_the_gradient_of_the_noised_log_density():
    mix, alpha, sigma = skewed_mixture(), 0.8, 0.6
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(z, alpha, sigma).sum(), z)
    torch.testing.assert_close(mix.score(z.detach(), alpha, sigma), grad)


def test_denoiser_obeys_tweedie_and_eps_is_minus_sigma_score():
    """E[x | z] = (z + sigma^2 grad log q(z)) / alpha, and E[eps | z] = -sigma grad log q(z)."""
    mix, alpha, sigma = skewed_mixture(), 0.7, math.sqrt(1 - 0.49)
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    score = mix.score(z, alpha, sigma)
    torch.testing.assert_close(mix.posterior_mean(z, alpha, sigma), (z + sigma**2 * score) / alpha)
    torch.testing.assert_close(mix.optimal_eps(z, alpha, sigma), -sigma * score)


def test_noised_mixture_is_the_law_of_the_noised_samples():
    mix, alpha, sigma = two_gaussians(weights=(0.3, 0.7)), 0.6, 0.8
    noised = mix.noised(alpha, sigma)
    z = torch.randn(20, 2, dtype=torch.float64)
    torch.testing.assert_close(noised.log_prob(z), mix.log_prob(z, alpha, sigma))
    g = torch.Generator().manual_seed(2)
    x = mix.sample(200_000, g).double()
    zs = alpha * x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    mean = (noised.weights[:, None] * noised.means).sum(0)
    assert (zs.mean(0) - mean).abs().max() < 5 * zs.std(0).max() / math.sqrt(len(zs))


def test_log_prob_integrates_to_one_on_a_grid():
    mix = skewed_mixture()
    axis = torch.linspace(-6, 6, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    mass = mix.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1) < 1e-6


def test_sampling_matches_the_weights_and_component_moments():
    mix = skewed_mixture()
    x, labels = mix.sample_with_labels(100_000, torch.Generator().manual_seed(3))
    frac = torch.bincount(labels, minlength=2).double() / len(labels)
    assert (frac - mix.weights).abs().max() < 0.01
    for k in range(2):
        xk = x[labels == k].double()
        torch.testing.assert_close(torch.cov(xk.T), mix.covs[k], atol=0.02, rtol=0)
