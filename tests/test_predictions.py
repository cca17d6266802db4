"""eps / x0 / v / score / prev predictions are one quantity in five coordinates."""

import pytest
import torch
from diffusion_study.core.predictions import PREDICTIONS, target, to_x0_eps
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from(PREDICTIONS), log_snr=st.floats(-8, 8), seed=st.integers(0, 2**16))
def test_conversions_invert_each_other(kind, log_snr, seed):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    lam = torch.tensor(log_snr, dtype=torch.float64)
    alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    z = alpha * x0 + sigma * eps
    step = (torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64))  # 'prev': (x_coef, noise)
    x0_back, eps_back = to_x0_eps(kind, target(kind, x0, eps, alpha, sigma, step), z, alpha, sigma, step)
    torch.testing.assert_close(x0_back, x0, rtol=1e-9, atol=1e-9 / min(alpha.item(), sigma.item()))
    torch.testing.assert_close(eps_back, eps, rtol=1e-9, atol=1e-9 / min(alpha.item(), sigma.item()))


def test_score_target_is_the_gradient_of_the_conditional_log_density():
    alpha, sigma = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    x0 = torch.randn(4, 2, dtype=torch.float64)
    z = (alpha * x0 + sigma * torch.randn(4, 2, dtype=torch.float64)).requires_grad_(True)
    log_q = (-0.5 * (z - alpha * x0) ** 2 / sigma**2).sum()
    (grad,) = torch.autograd.grad(log_q, z)
    eps = (z.detach() - alpha * x0) / sigma
    torch.testing.assert_close(target("score", x0, eps, alpha, sigma), grad)


def test_unknown_prediction_names_the_choices():
    with pytest.raises(ValueError, match="'eps', 'x0', 'v', 'score', 'prev'"):
        target("noise", torch.zeros(1), torch.zeros(1), 1.0, 1.0)
