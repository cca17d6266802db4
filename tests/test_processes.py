"""The forward process: closed forms against the chain, the posterior against Bayes' rule."""

import math

import pytest
import torch
from diffusion_study.core.processes import GaussianForward, NeuralForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.studies.elbo import forward_chain_check, posterior_grid_check
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_closed_form_marginal_equals_iterated_chain(name):
    """q(x_t|x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) equals t one-step updates x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) eps:
    exactly (moments propagated in float64) and by simulation (20k chains, every |z| of 2 x 2T moments < 5)."""
    check = forward_chain_check(discrete_schedule(name, 200), torch.tensor([[1.5, -0.5]], dtype=torch.float64),
                                20_000, torch.Generator().manual_seed(0))
    assert check.exact_error < 1e-12
    assert check.z_scores.shape == (200, 2) and check.z_scores.max() < 5


def test_chain_check_detects_a_wrong_closed_form(monkeypatch):
    """The same check fails when the closed form is off (here sigma_t inflated by 5%)."""
    sched = discrete_schedule("linear", 50)
    sigma = type(sched).sigma
    monkeypatch.setattr(type(sched), "sigma", lambda self, t: 1.05 * sigma(self, t))
    check = forward_chain_check(sched, torch.tensor([[1.5, -0.5]], dtype=torch.float64), 20_000,
                                torch.Generator().manual_seed(0))
    assert check.exact_error > 1e-4 and check.z_scores.max() > 5


@settings(max_examples=25, deadline=None)
@given(t=st.integers(2, 100), x0=st.floats(-2, 2), xt=st.floats(-3, 3))
def test_posterior_equals_bayes_rule_on_a_grid(t, x0, xt):
    """q(x_{t-1}|x_t,x_0) propto q(x_t|x_{t-1}) q(x_{t-1}|x_0): moments of the normalised product on a 1-D grid."""
    sched = discrete_schedule("cosine", 100)
    check = posterior_grid_check(sched, x0, xt, t, points=200_001)
    assert check.grid_mean == pytest.approx(check.mean, abs=1e-7 * (1 + abs(check.mean)))
    assert check.grid_var == pytest.approx(check.var, rel=1e-5)
    # ... and DDPM's textbook formulas (Ho et al. 2020, eq. 6-7)
    beta, abar_prev, omab = sched.beta[t].item(), sched.alpha_bar[t - 1].item(), sched.one_minus_alpha_bar
    mu_tilde = (math.sqrt(abar_prev) * beta / omab[t] * x0 + math.sqrt(1 - beta) * omab[t - 1] / omab[t] * xt)
    assert check.mean == pytest.approx(mu_tilde.item(), rel=1e-10, abs=1e-12)
    assert check.var == pytest.approx(sched.posterior_variance[t].item(), rel=1e-10)


@pytest.mark.parametrize("schedule", [discrete_schedule("linear", 1000), continuous_schedule("cosine")])
def test_posterior_keeps_the_marginals(schedule):
    """If z_t ~ q(z_t|x) and z_s ~ q(z_s|z_t,x) then z_s ~ q(z_s|x): checked on exact moments."""
    proc = GaussianForward(schedule)
    x = torch.tensor([[0.7]], dtype=torch.float64)
    is_discrete = schedule.T is not None
    t, s = (torch.tensor([600]), torch.tensor([250])) if is_discrete else (torch.tensor([0.6]), torch.tensor([0.25]))
    # z_s = mean(z_t) + sqrt(var) n, mean affine in z_t: mean = a + b z_t.
    a, var = proc.posterior(x, torch.zeros_like(x), t, s)
    b = proc.posterior(x, torch.ones_like(x), t, s)[0] - a
    m_t, std_t = proc.marginal(x, t)
    m_s, std_s = proc.marginal(x, s)
    torch.testing.assert_close(a + b * m_t, m_s)
    torch.testing.assert_close(b**2 * std_t**2 + var, std_s**2)


def test_ddpm_is_ndm_with_identity_transform():
    """NeuralForward with F(x,t) = x gives exactly GaussianForward's marginals and posteriors."""

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    sched = discrete_schedule("cosine", 100)
    ddpm, ndm = GaussianForward(sched), NeuralForward(sched, Zero())
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    t = torch.randint(2, 101, (8,), generator=g)
    s = (t * torch.rand(8, generator=g)).long()
    for a, b in zip(ddpm.posterior(x, z, t, s), ndm.posterior(x, z, t, s)):
        torch.testing.assert_close(a, b)
    for a, b in zip(ddpm.marginal(x, t), ndm.marginal(x, t)):
        torch.testing.assert_close(a, b)


def test_neural_forward_is_the_identity_at_time_zero():
    sched = continuous_schedule("cosine")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x, t):
            return self.lin(torch.cat([x, t[:, None]], 1))

    proc = NeuralForward(sched, Net())
    x = torch.randn(5, 3)
    torch.testing.assert_close(proc.transform(x, torch.zeros(5)), x)
    assert not torch.allclose(proc.transform(x, torch.full((5,), 0.5)), x)


def test_posterior_at_s_zero_returns_the_data():
    proc = GaussianForward(discrete_schedule("cosine", 50))
    x, z = torch.randn(4, 2), torch.randn(4, 2)
    mean, var = proc.posterior(x, z, torch.full((4,), 17), torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mean, x)
    assert (var == 0).all()


def test_mutual_information_of_a_gaussian_matches_its_closed_form():
    """For x ~ N(0, s^2 I_D): I(x; alpha x + sigma eps) = D/2 log(1 + alpha^2 s^2 / sigma^2)."""
    from diffusion_study.data.toy2d import GaussianMixture

    s2 = 0.3
    gauss = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                            s2 * torch.eye(2, dtype=torch.float64)[None])
    for alpha, sigma in [(0.99, math.sqrt(1 - 0.99**2)), (0.5, math.sqrt(0.75))]:
        mi, se = gauss.mutual_information(alpha, sigma, n=50_000, generator=torch.Generator().manual_seed(0))
        exact = math.log(1 + alpha**2 * s2 / sigma**2)
        assert abs(mi - exact) < 4 * se + 1e-9
