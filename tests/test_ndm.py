"""Neural Diffusion Models (chapter 4): the continuous bound against VDM's, the discrete bound
against DDPM's, both against the exact NLL of Gaussian data, the T -> infinity limit, the
posterior's marginals, the probability-flow ODE against closed forms, and the cost per step."""

import math

import pytest
import torch
from diffusion_study.core import continuous_time
from diffusion_study.core.denoiser import Denoiser, Oracle
from diffusion_study.core.objectives import (
    GaussianDecoder,
    VLBTerms,
    decoder_nll_at,
    prior_kl,
    vlb_terms,
)
from diffusion_study.core.processes import GaussianForward, NeuralForward
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.data.toy2d import gaussian, two_gaussians
from diffusion_study.nets import transforms
from diffusion_study.nets.models import EnsembleMLP, TimeMLP
from diffusion_study.studies import ndm_2d

SCHEDULE = dict(logsnr_max=8.0, logsnr_min=-8.0)


def schedule():
    return continuous_schedule("logsnr_cosine", **SCHEDULE)


def random_forward(seed=0, scale=1.0) -> NeuralForward:
    """A non-trivial F (float64): F(x, t) = x + t net(x, t) with a random, non-zero last layer."""
    torch.manual_seed(seed)
    net = TimeMLP(2, hidden=16, depth=2, time_dim=8, activation="silu").double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return NeuralForward(schedule(), net)


def se(v: torch.Tensor) -> float:
    return v.std().item() / math.sqrt(v.numel())


def test_mlp_forward_starts_at_the_identity_and_keeps_F_x_0_equal_to_x():
    proc = transforms.mlp_forward(schedule(), hidden=8, depth=1, time_dim=4)
    x = torch.randn(5, 2)
    torch.testing.assert_close(proc.transform(x, torch.rand(5).double()), x)
    proc = random_forward()
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(proc.transform(x, torch.zeros(5, dtype=torch.float64)), x)
    assert (proc.transform(x, torch.full((5,), 0.5, dtype=torch.float64)) - x).abs().max() > 1e-3


def test_identity_F_discrete_ndm_bound_is_ddpm_bound_term_by_term():
    """With F = identity (the zero-initialised MLP), vlb_terms of NDM equals DDPM's, term by term."""
    sched = continuous_schedule("logsnr_cosine", **SCHEDULE)
    ddpm, ndm_proc = GaussianForward(sched), transforms.mlp_forward(sched, hidden=8, depth=1, time_dim=4).double()
    data = two_gaussians()
    x = data.sample(64, torch.Generator().manual_seed(0)).double()
    oracle = data.denoiser(ddpm)
    a = vlb_terms(oracle, x, decoder=GaussianDecoder(), times=sched.grid(20), generator=torch.Generator().manual_seed(1))
    b = vlb_terms(Oracle(oracle.fn, ndm_proc), x, decoder=GaussianDecoder(), times=sched.grid(20),
                  generator=torch.Generator().manual_seed(1))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)


def vdm_continuous_terms(denoiser, x, *, decoder, t_min=0.0, generator=None):
    """The oracle: VDM's continuous bound (Kingma et al. 2021) for F = identity, written out independently.

    diffusion = -1/2 (1 - t_min) SNR'(t) ||x - x_hat(z_t, t)||^2 with one t ~ U(t_min, 1), z_t ~ q(z_t | x);
    prior KL(q(z_1|x) || N(0, I)); decoder -log p(x | z_{t_min}) with std sigma(t_min). Draws in the order
    of the library's bound (t, eps, eps at t_min)."""
    sched, process = denoiser.process.schedule, denoiser.process
    t = t_min + (1 - t_min) * torch.rand(x.shape[:1], generator=generator, dtype=torch.float64)
    z = process.sample(x, t, torch.randn(x.shape, generator=generator, dtype=x.dtype))
    d_snr = sched.d_log_snr(t) * sched.log_snr(t).exp()
    diffusion = -0.5 * (1 - t_min) * d_snr * ((x - denoiser(z, t)) ** 2).sum(-1)
    t0 = torch.tensor(float(t_min), dtype=torch.float64)
    z_min = process.sample(x, t0, torch.randn(x.shape, generator=generator, dtype=x.dtype))
    return VLBTerms(prior_kl(process, x, 1, 1.0), diffusion, decoder_nll_at(denoiser, x, z_min, t0, decoder, 1))


@pytest.mark.parametrize("forward", ["gaussian", "neural-identity"])
def test_identity_F_continuous_bound_is_vdm_bound(forward):
    """F = identity: the one continuous bound (NDM's drift matching) equals VDM's -1/2 E int SNR'(t) ||x - x_hat||^2 dt
    + prior + decoder (the oracle above) on the same draws (the F' = 0 path and the jvp path alike)."""
    sched = schedule()
    data = two_gaussians()
    x = data.sample(256, torch.Generator().manual_seed(0)).double()
    oracle = data.denoiser(GaussianForward(sched))
    proc = GaussianForward(sched) if forward == "gaussian" else transforms.mlp_forward(sched, hidden=8, depth=1).double()
    vdm = vdm_continuous_terms(oracle, x, decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(3))
    ours = continuous_time.continuous_bound_terms(Oracle(oracle.fn, proc), x, decoder=GaussianDecoder(),
                                      generator=torch.Generator().manual_seed(3))
    for name, u, v in zip(vdm._fields, vdm, ours):
        torch.testing.assert_close(v, u, rtol=1e-9, atol=1e-9, msg=name)


def test_sde_coefficients_match_the_schedule_by_autograd():
    sched = schedule()
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64, requires_grad=True)
    c = continuous_time.sde_coefficients(sched, t.detach())
    (da,) = torch.autograd.grad(sched.alpha(t).sum(), t)
    (ds,) = torch.autograd.grad(sched.sigma(t).sum(), t)
    torch.testing.assert_close(c.d_alpha, da)
    torch.testing.assert_close(c.d_sigma, ds)
    # variance of the forward SDE dz = [m' + a (z - m)] dt + g dw grows as 2 sigma sigma'
    a = (c.sigma * c.d_sigma - c.g2 / 2) / c.sigma**2
    torch.testing.assert_close(2 * a * c.sigma**2 + c.g2, 2 * c.sigma * c.d_sigma)


def test_transform_velocity_is_the_time_derivative_of_F():
    proc = random_forward()
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.8 + 0.1
    ((f, df), (f1, _)) = continuous_time.transform_with_velocity(proc, [(x, t), (x, torch.tensor(1.0, dtype=torch.float64))])
    h = 1e-4
    fd = (proc.transform(x, t + h) - proc.transform(x, t - h)) / (2 * h)
    torch.testing.assert_close(f, proc.transform(x, t))
    torch.testing.assert_close(f1, proc.transform(x, torch.ones(6, dtype=torch.float64)))
    # the time embedding runs in float32 (time_embedding casts): compare at its precision
    torch.testing.assert_close(df, fd, rtol=2e-2, atol=2e-2)
    straight = continuous_time.StraightForward(schedule())
    ((g, dg),) = continuous_time.transform_with_velocity(straight, [(x, t)])
    fd = (straight.transform(x, t + 1e-6) - straight.transform(x, t - 1e-6)) / 2e-6
    torch.testing.assert_close(dg, fd, rtol=1e-6, atol=1e-7)


def test_ensemble_F_posterior_keeps_the_marginals():
    """[G, B, D] through an EnsembleMLP F: z_t ~ q(z_t|x), z_s ~ q(z_s|z_t, x) has the moments of q(z_s|x), per member."""
    G, n = 3, 100_000
    torch.manual_seed(0)
    net = EnsembleMLP(G, 2, hidden=8, depth=1, time_dim=4, activation="silu").double()
    proc = NeuralForward(schedule(), net)
    g = torch.Generator().manual_seed(1)
    x = torch.tensor([0.8, -0.4], dtype=torch.float64).expand(G, n, 2)
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    z_t = proc.sample(x, t, torch.randn(G, n, 2, generator=g, dtype=torch.float64))
    mean, var = proc.posterior(x, z_t, t, s)
    z_s = mean + var.sqrt() * torch.randn(G, n, 2, generator=g, dtype=torch.float64)
    m_s, std_s = proc.marginal(x[:, :1], s)  # [G, 1, 2]
    assert (proc.transform(x[:, :1], s) - x[:, :1]).abs().max() > 1e-2  # F is not the identity
    assert ((z_s.mean(1) - m_s[:, 0]).abs() < 5 * std_s.item() / math.sqrt(n)).all()
    assert ((z_s.var(1) / std_s.item() ** 2 - 1).abs() < 5 * math.sqrt(2 / n)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_upper_bound_the_exact_nll_of_gaussian_data_for_any_F(seed):
    """E_data[bound] >= E_data[-log p_data] (cross-entropy >= entropy) for random F, discrete and continuous;
    the DDPM-optimal denoiser with F = identity comes close (the check is not vacuous)."""
    sched = schedule()
    data = gaussian([0.5, -0.3], 0.6)
    g = torch.Generator().manual_seed(seed)
    x = data.sample(4000, g).double()
    nll = -data.log_prob(x)
    oracle = data.denoiser(GaussianForward(sched))
    gaps = {}
    for name, proc in [("identity", GaussianForward(sched)), ("random F", random_forward(seed, scale=2.0))]:
        den = Oracle(oracle.fn, proc)
        cont = continuous_time.continuous_bound(den, x, decoder=GaussianDecoder(), n_t=16, generator=g).total - nll
        disc = vlb_terms(den, x, decoder=GaussianDecoder(), times=sched.grid(32), generator=g).total - nll
        for kind, gap in (("continuous", cont), ("discrete", disc)):
            assert gap.mean() > -3 * se(gap), (name, kind, gap.mean().item(), se(gap))
            gaps[name, kind] = (gap.mean().item(), se(gap))
    (tight, err), (loose, _) = gaps["identity", "continuous"], gaps["random F", "continuous"]
    assert tight < 0.05 + 3 * err and loose > tight + 1


class SmoothF(torch.nn.Module):
    """net(x, t) = tanh(W x + t b): an F smooth in t (TimeMLP's time features oscillate at up to 1000 t)."""

    event_dims = 1

    def __init__(self):
        super().__init__()
        self.w = torch.tensor([[0.8, -0.6], [0.5, 0.9]], dtype=torch.float64)
        self.b = torch.tensor([1.0, -2.0], dtype=torch.float64)

    def forward(self, x, t):
        return torch.tanh(x @ self.w + t[..., None].to(x) * self.b)


def test_discrete_kl_of_a_short_step_is_the_continuous_integrand():
    """Pointwise, same z_t: KL(q(z_s|z_t,x) || p(z_s|z_t)) / (t - s) -> 1/2 ||f(z,t,x) - f(z,t,x_hat)||^2 / g^2."""
    from diffusion_study.core.objectives import diffusion_kl
    from diffusion_study.core.schedules import coefficient

    sched = schedule()
    proc = NeuralForward(sched, SmoothF())
    data = two_gaussians()
    x = data.sample(8, torch.Generator().manual_seed(0)).double()
    den = Oracle(data.denoiser(GaussianForward(sched)).fn, proc)
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for tv in (0.05, 0.4, 0.8):
        t = torch.full((8,), tv, dtype=torch.float64)
        sde = continuous_time.sde_coefficients(sched, t)
        ((f, df),) = continuous_time.transform_with_velocity(proc, [(x, t)])
        m, dm = continuous_time.mean_and_velocity(sde, f, df)
        x_hat = den(m + coefficient(sde.sigma, x) * noise, t)
        ((g, dg),) = continuous_time.transform_with_velocity(proc, [(x_hat, t)])
        integrand = 0.5 * (continuous_time.drift_difference(sde, m, dm, *continuous_time.mean_and_velocity(sde, g, dg)) ** 2).sum(-1) / sde.g2
        kl = diffusion_kl(den, x, t - 1e-5, t, noise) / 1e-5  # O(h) error; below 1e-6 float64 cancels
        torch.testing.assert_close(kl, integrand, rtol=2e-3, atol=1e-9)


@pytest.mark.slow
@pytest.mark.slow  # > 5 s: make test-slow
def test_continuous_bound_is_the_limit_of_the_discrete_bound_for_a_nontrivial_F():
    """Same F, same x_hat: vlb_terms on the grid i / T tends to the continuous bound as T grows
    (not monotonically for a non-trivial F, unlike DDPM's: at T = 8 it is below its value at T = 32)."""
    sched = schedule()
    proc = NeuralForward(sched, SmoothF())
    data = two_gaussians()
    g = torch.Generator().manual_seed(0)
    x = data.sample(400, g).double()
    den = Oracle(data.denoiser(GaussianForward(sched)).fn, proc)
    with torch.no_grad():
        limit = continuous_time.continuous_bound(den, x, decoder=GaussianDecoder(), n_t=1024, generator=g).total
        bounds = [vlb_terms(den, x, decoder=GaussianDecoder(), times=sched.grid(T), generator=g).total
                  for T in (32, 256, 2048)]
    gaps = [(b - limit).mean().item() for b in bounds]
    errs = [se(b - limit) for b in bounds]
    assert gaps[0] > 5 * errs[0] and abs(gaps[1]) < gaps[0] / 2, (gaps, errs)
    assert abs(gaps[-1]) < 3 * errs[-1] + 0.02 and abs(gaps[-1]) < abs(gaps[1]), (gaps, errs)


def test_restricted_reverse_with_matching_F_has_no_model_mismatch_and_ddpm_does():
    """With the straight reverse process, F = c_t x on the forward side makes f(z,t,x) = f_R(z,t,x):
    with x_hat = x the diffusion term is 0; DDPM's F = identity cannot match it."""
    sched = schedule()
    straight = continuous_time.StraightForward(sched)
    x = torch.randn(200, 2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for proc, zero in [(straight, True), (GaussianForward(sched), False)]:
        terms = continuous_time.continuous_bound_terms(_PerfectDenoiser(x, proc), x, decoder=GaussianDecoder(),
                                           reverse=straight, generator=g)
        assert (terms.diffusion.abs().max() < 1e-8) == zero


class _PerfectDenoiser(torch.nn.Module):
    """x_hat = the true x of each row (the stacked call holds x twice: at z_t and at z_{t_min})."""

    def __init__(self, x, process):
        super().__init__()
        self.x, self.process = x, process

    def forward(self, z, t, y=None):
        return self.x.repeat(z.shape[0] // self.x.shape[0], 1)


def test_straight_transform_gives_straight_conditional_paths_and_ddpm_gives_arcs():
    sched = schedule()
    straight, ddpm = continuous_time.StraightForward(sched), GaussianForward(sched)
    ts = torch.linspace(0, 1, 101, dtype=torch.float64)
    x = torch.randn(50, 2, dtype=torch.float64)
    eps = torch.randn(50, 2, dtype=torch.float64)
    paths = {name: torch.stack([proc.sample(x, t, eps) for t in ts]) for name, proc in
             [("straight", straight), ("ddpm", ddpm)]}
    torch.testing.assert_close(straight.transform(x, torch.tensor(0.0, dtype=torch.float64)), x)
    assert ndm_2d.path_curvature(paths["straight"]).max() < 1e-9
    assert ndm_2d.path_curvature(paths["ddpm"]).mean() > 0.1


def test_path_curvature_of_a_half_circle():
    """Mean height of a half circle per unit arc length, 2 r / pi, over its diameter 2 r: whatever the spacing."""
    for u in (torch.linspace(0, math.pi, 2001, dtype=torch.float64),
              math.pi * torch.linspace(0, 1, 2001, dtype=torch.float64) ** 3):  # crowded at one end
        path = torch.stack([torch.cos(u), torch.sin(u)], -1)[:, None]  # [K + 1, 1, 2]
        assert ndm_2d.path_curvature(path).item() == pytest.approx(1 / math.pi, rel=1e-3)


def test_ode_nll_of_gaussian_data_with_the_exact_denoiser_is_the_exact_density():
    """The flow of the exact DDPM score on Gaussian data N(mu, s^2): p(x) = N(alpha_0 x; alpha_0 mu,
    alpha_0^2 s^2 + sigma_0^2) alpha_0^d, in closed form (up to the prior's mismatch at t = 1)."""
    sched = continuous_schedule("logsnr_cosine", logsnr_max=8.0, logsnr_min=-20.0)  # p_1 = N(0, I) to 1e-8
    mu, s = torch.tensor([0.5, -0.3], dtype=torch.float64), 0.6
    data = gaussian(mu.tolist(), s)
    proc = GaussianForward(sched)
    x = data.sample(200, torch.Generator().manual_seed(0)).double()
    nll = continuous_time.ode_nll(data.denoiser(proc), x, steps=64)
    t0 = torch.tensor(0.0, dtype=torch.float64)
    a0, s0 = sched.alpha(t0), sched.sigma(t0)
    var = a0**2 * s**2 + s0**2
    exact = 0.5 * ((a0 * x - a0 * mu) ** 2 / var).sum(1) + torch.log(2 * math.pi * var) - 2 * torch.log(a0)
    torch.testing.assert_close(nll, exact, rtol=0, atol=2e-3)


def test_ode_nll_sees_a_nontrivial_F_through_the_exact_divergence():
    """Same identity-F model written as NeuralForward with a zero net: the jvp + autograd path gives the
    closed-form path's numbers (F' = 0, dF/dx = I)."""
    sched = schedule()
    data = two_gaussians()
    x = data.sample(64, torch.Generator().manual_seed(1)).double()
    oracle = data.denoiser(GaussianForward(sched))
    a = continuous_time.ode_nll(oracle, x, steps=16)
    b = continuous_time.ode_nll(Oracle(oracle.fn, transforms.mlp_forward(sched, hidden=8, depth=1).double()), x, steps=16)
    torch.testing.assert_close(a, b)


def test_ode_sample_of_gaussian_data_has_the_data_moments():
    sched = schedule()
    data = gaussian([1.0, -0.5], 0.4)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    out = continuous_time.ode_sample(data.denoiser(GaussianForward(sched)), z, sched.grid(32))
    a0 = sched.alpha(torch.tensor(0.0, dtype=torch.float64)).item()
    x = out / a0
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -0.5], dtype=torch.float64), atol=0.02, rtol=0)
    assert abs(x.std(0).mean().item() - math.sqrt(0.16 + (1 - a0**2) / a0**2)) < 0.01


def test_noise_prediction_loss_is_zero_for_a_collapsed_F_whose_bound_is_large():
    """F(x, t) = 0 for t > 0 (net = -x / t) forgets the data: the noise loss is 0 for any denoiser."""

    class Collapse(torch.nn.Module):
        event_dims = 1

        def forward(self, x, t):
            return -x / t.clamp_min(1e-6)[..., None]

    sched = schedule()
    proc = NeuralForward(sched, Collapse())
    den = Denoiser(TimeMLP(2, hidden=8, depth=1).double(), proc, prediction="x0")
    x = torch.randn(64, 2, dtype=torch.float64)
    assert continuous_time.noise_prediction_loss(den, x).abs().max() < 1e-12
    bound = continuous_time.continuous_bound(den, x, decoder=GaussianDecoder(), n_t=4).total
    assert bound.mean() > 3  # nats for 2D data: the bound sees the lost information
    norm, spread = ndm_2d.transform_norm_ratio(proc, x[None], 0.5)
    assert norm.item() == 0 and spread.item() == 0


@pytest.mark.parametrize("members", [None, 3])
def test_bound_costs_a_constant_number_of_network_calls(members):
    """Simulation-free: two calls of F and one of x_hat per bound evaluation, whatever the batch or time."""
    sched = schedule()
    proc = transforms.mlp_forward(sched, hidden=8, depth=1, members=members)
    net = TimeMLP(2, hidden=8, depth=1) if members is None else EnsembleMLP(members, 2, hidden=8, depth=1)
    den = Denoiser(net, proc, prediction="x0")
    for n in (4, 32):
        x = torch.randn((n, 2) if members is None else (members, n, 2))
        with ndm_2d.CallCounter(f=proc.net, x_hat=net) as c:
            continuous_time.continuous_bound_terms(den, x, decoder=GaussianDecoder()).total.sum().backward()
        assert c.counts == {"f": 2, "x_hat": 1}
        with ndm_2d.CallCounter(f=proc.net, x_hat=net) as c:
            continuous_time.continuous_bound_terms(den, x, decoder=GaussianDecoder(), reverse=continuous_time.StraightForward(sched))
        assert c.counts == {"f": 1, "x_hat": 1}


def test_bound_is_differentiable_in_both_networks():
    sched = schedule()
    torch.manual_seed(0)
    proc = NeuralForward(sched, TimeMLP(2, hidden=8, depth=1))
    den = Denoiser(TimeMLP(2, hidden=8, depth=1), proc, prediction="x0")
    continuous_time.continuous_bound_terms(den, torch.randn(16, 2), decoder=GaussianDecoder()).total.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in den.parameters())


def test_log_snr_time_density_is_normalised_and_unbiased():
    """Importance sampling t uniform in lambda gives the same expected bound as uniform t."""
    sched = schedule()
    data = two_gaussians()
    x = data.sample(1, torch.Generator().manual_seed(0)).double().expand(20_000, 2)
    den = data.denoiser(GaussianForward(sched))
    g = torch.Generator().manual_seed(1)
    u = continuous_time.continuous_bound_terms(den, x, decoder=GaussianDecoder(), generator=g).diffusion
    v = continuous_time.continuous_bound_terms(den, x, decoder=GaussianDecoder(), t_density="log_snr", generator=g).diffusion
    assert abs(u.mean() - v.mean()) < 3 * math.hypot(se(u), se(v))
    t, p = continuous_time.sample_times(sched, "log_snr", (50_000,), x, g)
    assert 0 <= t.min() and t.max() <= 1
    assert (1 / p).mean().item() == pytest.approx(1.0, abs=0.02)  # E_p[1/p] = length of [0, 1]


def test_steps_needed_picks_the_first_step_count_within_tolerance():
    errors = torch.tensor([[0.5, 0.9], [0.2, 0.8], [0.05, 0.7]])
    out = ndm_2d.steps_needed(errors, [1, 2, 4], 0.1)
    assert out[0].item() == 4 and math.isinf(out[1].item())


def test_the_noise_prediction_loss_is_simple_loss_with_the_eps_target():
    """One noise-prediction loss: NDM's is objectives.simple_loss(target='eps') (eps_hat through F) on the same
    draws, and for F = identity and an eps-predicting denoiser it is DDPM's L_simple itself."""
    from diffusion_study.core.objectives import simple_loss

    torch.manual_seed(0)
    x = torch.randn(32, 2, dtype=torch.float64)
    ndm = Denoiser(TimeMLP(2, hidden=8, depth=1).double(), random_forward(), prediction="x0")
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ours = continuous_time.noise_prediction_loss(ndm, x, gen())
    torch.testing.assert_close(ours, simple_loss(ndm, x, generator=gen(), target="eps"), rtol=0, atol=0)
    assert (ours - simple_loss(ndm, x, generator=gen())).abs().max() > 1e-3  # the x0 target is another loss
    ddpm = Denoiser(TimeMLP(2, hidden=8, depth=1).double(), GaussianForward(schedule()), prediction="eps")
    torch.testing.assert_close(continuous_time.noise_prediction_loss(ddpm, x, gen()), simple_loss(ddpm, x, generator=gen()))
