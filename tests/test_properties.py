"""Property tests over schedules, bounds and samplers: no NaN, no negative variance, the right shapes,
across extreme step counts (T = 1, 2, 10^5), every eta in [0, 1], any number of sampling steps, and
float32 as well as float64."""

import math

import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import GaussianDecoder, vlb_terms
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample
from diffusion_study.core.schedules import (
    DISCRETE_SCHEDULES,
    continuous_schedule,
    discrete_schedule,
)
from diffusion_study.data.toy2d import two_gaussians
from hypothesis import given, settings
from hypothesis import strategies as st

NAMES = st.sampled_from([n for n in DISCRETE_SCHEDULES if n != "ddpm_linear"])  # DDPM's linear betas need T > 20
STEPS = st.sampled_from([1, 2, 3, 10, 100, 100_000])
DTYPES = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=30, deadline=None)
@given(name=NAMES, T=STEPS)
def test_discrete_schedules_are_finite_and_variance_preserving_at_any_T(name, T):
    s = discrete_schedule(name, T)
    t = s.grid()
    a, sg = s.alpha(t), s.sigma(t)
    assert torch.isfinite(a).all() and torch.isfinite(sg).all()
    assert ((a >= 0) & (a <= 1) & (sg >= 0) & (sg <= 1)).all()
    torch.testing.assert_close(a**2 + sg**2, torch.ones_like(a))
    assert (s.beta[1:] > 0).all() and (s.beta <= 1).all() and (s.posterior_variance >= 0).all()


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(DISCRETE_SCHEDULES), T=STEPS, eta=st.floats(0, 1), steps=st.integers(1, 50))
def test_step_coefficients_have_no_nan_or_negative_variance(name, T, eta, steps):
    continuous = {"ddpm_linear": "vp_linear"}.get(name, name)  # the continuous curve DDPM's betas approximate
    sched = continuous_schedule(continuous) if T == 100_000 else discrete_schedule(name, max(T, 21) if name == "ddpm_linear" else T)
    proc = GaussianForward(sched)
    grid = sched.grid(min(steps, sched.T) if sched.T else steps)
    c = proc.step_coefficients(grid[1:], grid[:-1], eta)
    for name_, value in c._asdict().items():
        assert torch.isfinite(value).all(), name_
    assert (c.var >= 0).all() and (c.posterior_var >= 0).all() and (c.transition_var >= 0).all()
    assert (c.var <= c.posterior_var + 1e-15).all()  # eta <= 1


@settings(max_examples=15, deadline=None)
@given(T=st.sampled_from([1, 2, 5, 30]), dtype=DTYPES, batch=st.sampled_from([(3,), (2, 4)]))
def test_bound_terms_are_finite_with_the_batch_shape(T, dtype, batch):
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", T))
    x = mix.sample(math.prod(batch), torch.Generator().manual_seed(0)).to(dtype).reshape(*batch, 2)
    terms = vlb_terms(mix.denoiser(proc), x, decoder=GaussianDecoder(), event_dims=1,
                      generator=torch.Generator().manual_seed(1))
    for v in terms:
        assert v.shape == batch and v.dtype == dtype and torch.isfinite(v).all()
    assert (terms.prior >= 0).all() and (terms.diffusion >= -1e-6).all()


@settings(max_examples=20, deadline=None)
@given(eta=st.floats(0, 1), steps=st.integers(1, 40), dtype=DTYPES, T=st.sampled_from([1, 2, 40]))
def test_samplers_return_finite_samples_of_the_input_shape(eta, steps, dtype, T):
    proc = GaussianForward(discrete_schedule("logsnr_cosine", T))
    model = Denoiser(lambda z, t: 0.5 * z, proc, prediction="eps", clip=(-3, 3))
    x = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = ddim_sample(model, x, proc.schedule.grid(min(steps, T)), eta=eta, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
