"""Schedules match their formulas and stay finite in float64 at both ends."""

import math

import pytest
import torch
from diffusion_study.core.schedules import (
    CONTINUOUS_SCHEDULES,
    DISCRETE_SCHEDULES,
    continuous_schedule,
    cosine_schedule,
    discrete_schedule,
    linear_schedule,
)


def test_linear_schedule_is_ddpm_betas_at_T_1000():
    s = linear_schedule(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(s.beta[1:], betas, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(s.alpha_bar[1:], torch.cumprod(1 - betas, 0), rtol=1e-12, atol=0)


def test_cosine_schedule_is_f_t_over_f_0_before_clipping():
    T, s_off = 1000, 0.008
    s = cosine_schedule(T)
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2
    expected = f / f[0]
    # betas are clipped at 0.999 only at the very end; elsewhere alpha_bar is exactly f/f(0).
    torch.testing.assert_close(s.alpha_bar[:-1], expected[:-1], rtol=1e-10, atol=1e-15)
    assert s.beta[1:].max() == pytest.approx(0.999)


@pytest.mark.parametrize("name", DISCRETE_SCHEDULES)
@pytest.mark.parametrize("T", [1, 10, 1000, 4000])
def test_alpha_bar_strictly_decreasing_and_finite(name, T):
    if name == "ddpm_linear" and T == 10:  # beta_end * 1000 / T = 2
        with pytest.raises(ValueError, match="beta >= 1"):
            discrete_schedule(name, T)
        return
    s = discrete_schedule(name, T)
    assert (torch.diff(s.alpha_bar) < 0).all()
    assert s.alpha_bar[0] == 1 and s.alpha_bar[-1] > 0
    t = torch.arange(T + 1)
    for values in (s.alpha(t), s.sigma(t), s.beta, s.posterior_variance, s.one_minus_alpha_bar):
        assert torch.isfinite(values).all()
    assert torch.isfinite(s.log_snr(t[1:])).all() and s.log_snr(t[:1]) == math.inf
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones(T + 1, dtype=torch.float64))


@pytest.mark.parametrize("name", CONTINUOUS_SCHEDULES)
def test_continuous_schedules_are_finite_and_monotone_on_the_open_interval(name):
    c = continuous_schedule(name)
    t = torch.linspace(1e-9, 1, 10001, dtype=torch.float64)
    lam = c.log_snr(t)
    assert torch.isfinite(lam).all() and (torch.diff(lam) < 0).all()
    torch.testing.assert_close(c.alpha(t) ** 2 + c.sigma(t) ** 2, torch.ones_like(t))
    assert (c.d_log_snr(t[1:-1]) < 0).all()


def test_discrete_schedules_sample_their_continuous_versions():
    T = 1000
    t = torch.arange(1, T, dtype=torch.float64) / T
    # cosine and logsnr_cosine: exact (away from the clipped last step)
    for name in ("cosine", "logsnr_cosine"):
        d, c = discrete_schedule(name, T), continuous_schedule(name)
        torch.testing.assert_close(d.log_snr(torch.arange(1, T)), c.log_snr(t), rtol=1e-9, atol=1e-9)
    # DDPM's linear betas approximate the VP-SDE with beta(t) = 0.1 + 19.9 t
    d, c = discrete_schedule("ddpm_linear", T), continuous_schedule("vp_linear")
    torch.testing.assert_close(d.alpha(torch.arange(1, T)), c.alpha(t), rtol=0, atol=2e-3)


def test_log_snr_near_zero_has_no_cancellation():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    u, s_off = mpmath.mpf("1e-12"), mpmath.mpf("0.008")
    f = lambda v: mpmath.cos((v + s_off) / (1 + s_off) * mpmath.pi / 2) ** 2  # noqa: E731
    abar = f(u) / f(0)
    exact = float(mpmath.log(abar / (1 - abar)))
    lam = continuous_schedule("cosine").log_snr(torch.tensor([1e-12], dtype=torch.float64))
    assert lam.item() == pytest.approx(exact, rel=1e-9)
    d = discrete_schedule("cosine", 100000)
    assert d.one_minus_alpha_bar[1] > 0 and torch.isfinite(d.log_snr(torch.tensor([1])))


def test_logsnr_cosine_hits_its_end_points():
    c = continuous_schedule("logsnr_cosine", logsnr_max=5.0, logsnr_min=-10.0)
    ends = c.log_snr(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([5.0, -10.0], dtype=torch.float64))


def test_a_lookup_at_one_time_reads_no_value_back_to_the_host():
    """Indexing a table with a 0-dim tensor would call .item() (a GPU sync); on meta tensors that raises."""
    s = discrete_schedule("cosine", 10).to("meta")
    out = s.alpha_sigma(torch.tensor(0.5, dtype=torch.float64, device="meta"))
    assert out.shape == (2,) and out.device.type == "meta"


def test_the_two_linear_curves_have_names_that_say_which():
    """DDPM's linear betas are the discrete 'ddpm_linear' ('linear' stays its alias); the VP-SDE's beta(t) linear
    in t is the continuous 'vp_linear'; the continuous 'linear' is refused, naming both."""
    assert discrete_schedule("ddpm_linear", 1000).name == "ddpm_linear"
    torch.testing.assert_close(discrete_schedule("linear", 1000).log_alpha_bar, linear_schedule(1000).log_alpha_bar,
                               rtol=0, atol=0)
    assert continuous_schedule("vp_linear").name == "vp_linear"
    with pytest.raises(ValueError, match="vp_linear.*ddpm_linear"):
        continuous_schedule("linear")
    with pytest.raises(ValueError, match="unknown schedule 'vp_linear'"):
        discrete_schedule("vp_linear", 1000)


@pytest.mark.parametrize("name", DISCRETE_SCHEDULES)
def test_a_discrete_schedule_is_a_grid_on_its_curve(name):
    """DiscreteSchedule.curve(): a continuous schedule whose alpha, sigma, lambda at every i / T are the tables',
    decreasing in between, with a finite negative lambda'(t) between the grid points (the ODE's coefficient)."""
    d = discrete_schedule(name, 100)
    c = d.curve()
    grid = torch.arange(101, dtype=torch.float64) / 100
    torch.testing.assert_close(c.alpha(grid), d.alpha(grid), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(c.sigma(grid), d.sigma(grid), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(c.log_snr(grid[1:]), d.log_snr(grid[1:]), rtol=1e-12, atol=1e-12)
    t = torch.linspace(0.001, 0.999, 997, dtype=torch.float64)
    assert (torch.diff(c.log_snr(t)) < 0).all()
    d_lam = c.d_log_snr(t)
    assert torch.isfinite(d_lam).all() and (d_lam < 0).all()
