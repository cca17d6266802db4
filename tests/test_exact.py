"""The closed-form expected bound for Gaussian data against Monte Carlo of the library's bound."""

import math

import pytest
import torch
from diffusion_study.core.exact import gaussian_bound
from diffusion_study.core.objectives import GaussianDecoder, vlb_terms
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.data.toy2d import GaussianMixture


def diagonal_gaussian(mean, var) -> GaussianMixture:
    mean, var = torch.tensor(mean, dtype=torch.float64), torch.tensor(var, dtype=torch.float64)
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], torch.diag(var)[None])


@pytest.mark.parametrize("schedule,times,variance", [
    (discrete_schedule("cosine", 16), None, "posterior"),
    (discrete_schedule("linear", 64), None, "beta"),
    (continuous_schedule("logsnr_cosine"), continuous_schedule("logsnr_cosine").grid(12), "posterior"),
])
def test_closed_form_gap_matches_monte_carlo(schedule, times, variance):
    data = diagonal_gaussian([0.5, -0.5], [4.25, 0.25])  # anisotropic: the two-Gaussian mixture's covariance
    proc = GaussianForward(schedule)
    g = torch.Generator().manual_seed(0)
    x = data.sample(20_000, g).double()
    mc = vlb_terms(data.denoiser(proc), x, decoder=GaussianDecoder(), times=times, variance=variance, generator=g)
    exact = gaussian_bound(proc, [0.5, -0.5], [4.25, 0.25], times, variance)
    for term in ("prior", "diffusion", "decoder"):
        values = getattr(mc, term)
        se = values.std().item() / math.sqrt(len(x))
        assert abs(values.mean().item() - getattr(exact, term)) < 4 * se + 1e-9, term
    gap = mc.total + data.log_prob(x)
    assert abs(gap.mean().item() - exact.gap) < 4 * gap.std().item() / math.sqrt(len(x))


def test_gap_is_nonnegative_and_each_term_of_the_sum_is_a_kl():
    proc = GaussianForward(discrete_schedule("cosine", 200))
    exact = gaussian_bound(proc, [0.0], [0.3])
    assert exact.gap > 0 and (exact.diffusion_terms >= 0).all() and len(exact.diffusion_terms) == 199


def test_importance_weighted_nll_falls_to_the_models_own_likelihood():
    """For Gaussian data the exact-denoiser model is linear-Gaussian, so -log p_theta(x) is known in closed
    form: the ELBO (k = 1) lies above it, and the importance-weighted bound falls towards it as k grows."""
    from diffusion_study.core.exact import gaussian_model_nll
    from diffusion_study.core.likelihood import importance_weighted_nll

    data = diagonal_gaussian([0.5, -0.5], [4.25, 0.25])
    proc = GaussianForward(discrete_schedule("cosine", 8))
    g = torch.Generator().manual_seed(0)
    x = data.sample(400, g).double()
    exact = gaussian_model_nll(proc, [0.5, -0.5], [4.25, 0.25], x)
    assert (exact >= -data.log_prob(x) - 10).all()  # same order as the data NLL
    gaps = []
    for k in (1, 16, 256):
        iw = importance_weighted_nll(data.denoiser(proc), x, decoder=GaussianDecoder(), k=k, generator=g)
        diff = iw - exact
        gaps.append((diff.mean().item(), diff.std().item() / math.sqrt(len(x))))
    assert gaps[0][0] > 3 * gaps[0][1]  # the bound sits above the model's NLL
    for (m1, s1), (m2, s2) in zip(gaps, gaps[1:]):
        assert m2 < m1 - 3 * math.hypot(s1, s2)
    assert abs(gaps[-1][0]) < max(0.1 * gaps[0][0], 4 * gaps[-1][1])
