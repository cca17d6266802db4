"""The variational bound: its pieces against oracles, its sum against the exact likelihood."""

import math

import pytest
import torch
from diffusion_study.core.denoiser import Denoiser, Oracle
from diffusion_study.core.likelihood import bits_per_dim, elbo_monte_carlo
from diffusion_study.core.objectives import (
    DiscretizedGaussianDecoder,
    GaussianDecoder,
    diffusion_kl,
    eps_kl_weights,
    gaussian_kl,
    simple_loss,
    vlb_terms,
)
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.data.toy2d import gaussian, two_gaussians


def gaussian_data(dim=2, mean=0.5, std=0.5):
    return gaussian([mean] * dim, std)


def test_gaussian_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mq, vq, mp, vp = (torch.tensor(v, dtype=torch.float64) for v in (0.3, 0.5, -0.4, 1.7))
    x = mq + vq.sqrt() * torch.randn(400_000, generator=g, dtype=torch.float64)
    log_ratio = (-0.5 * (x - mq) ** 2 / vq - 0.5 * vq.log()) - (-0.5 * (x - mp) ** 2 / vp - 0.5 * vp.log())
    se = log_ratio.std() / math.sqrt(x.numel())
    assert abs(log_ratio.mean() - gaussian_kl(mq, vq, mp, vp)) < 4 * se


@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_decoder_is_a_distribution_over_the_levels(levels):
    decoder = DiscretizedGaussianDecoder(levels)
    values = torch.linspace(-1, 1, levels, dtype=torch.float64)
    for mean, std in [(0.0, 0.05), (0.93, 0.01), (-2.0, 0.3), (0.1, 1e-4)]:
        nll = decoder.nll(values[:, None], torch.tensor(mean, dtype=torch.float64),
                          torch.tensor(std, dtype=torch.float64), event_dims=1)
        assert torch.isfinite(nll).all()
        assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-9)


def test_discretized_decoder_far_tail_is_finite():
    decoder = DiscretizedGaussianDecoder(256)
    x = torch.tensor([[0.5]], dtype=torch.float64)
    nll = decoder.nll(x, torch.tensor(-0.5, dtype=torch.float64), torch.tensor(1e-3, dtype=torch.float64), 1)
    assert torch.isfinite(nll).all() and nll.item() > 1e5  # ~ 0.5 * (1000)^2, not inf


def test_kl_term_is_the_eps_weighted_mse():
    """With sigma_t^2 = beta~_t, KL_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) ||eps - eps_hat||^2."""
    sched = discrete_schedule("linear", 1000)
    proc = GaussianForward(sched)
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g, dtype=torch.float64)
    eps_error = 0.1 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    t = torch.randint(2, 1001, (16,), generator=g)
    alpha, sigma = sched.alpha(t)[:, None], sched.sigma(t)[:, None]

    def denoiser(z, tt):  # predicts eps_hat = eps + eps_error, returned as x0_hat
        return (z - sigma * (noise + eps_error)) / alpha

    kl = diffusion_kl(Oracle(denoiser, proc), x, t - 1, t, noise)
    beta, abar = sched.beta[t], sched.alpha_bar[t]
    weight = beta**2 / (2 * sched.posterior_variance[t] * (1 - beta) * (1 - abar))
    torch.testing.assert_close(kl, weight * (eps_error**2).sum(1), rtol=1e-8, atol=1e-12)


def test_elbo_decomposition_equals_direct_monte_carlo():
    """prior + sum of KL terms + decoder = E_q[log q(z_{1:T}|x) - log p(x, z_{1:T})] within standard errors."""
    data = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 20))
    g = torch.Generator().manual_seed(0)
    x = data.sample(20_000, g).double()
    den = data.denoiser(proc)
    analytic = vlb_terms(den, x, decoder=GaussianDecoder(), generator=g).total
    direct = elbo_monte_carlo(den, x, decoder=GaussianDecoder(), generator=g)
    se = math.sqrt(analytic.var() / x.shape[0] + direct.var() / x.shape[0])
    assert abs(analytic.mean() - direct.mean()) < 4 * se


def test_bound_on_gaussian_data_is_an_upper_bound_whose_gap_shrinks_with_T():
    """For Gaussian data and the exact denoiser E[x0|z_t], the bound >= exact NLL and the gap -> 0 as T grows."""
    from diffusion_study.studies.elbo import elbo_gap_sweep

    data = gaussian_data()
    g = torch.Generator().manual_seed(0)
    x = data.sample(4000, g).double()
    build = {"logsnr_cosine": lambda T: discrete_schedule("logsnr_cosine", T, logsnr_max=8.0, logsnr_min=-12.0)}
    gaps = elbo_gap_sweep(data, x, build, [16, 64, 256, 1024], g)["logsnr_cosine"].tolist()
    for mean, se in gaps:
        assert mean > -3 * se  # an upper bound
    for (m1, s1), (m2, s2) in zip(gaps, gaps[1:]):
        assert m2 < m1 - 3 * math.hypot(s1, s2)  # strictly shrinking
    assert gaps[-1][0] < 0.25


def test_bits_per_dim_reports_mean_error_and_terms():
    data = gaussian_data(dim=4)
    proc = GaussianForward(discrete_schedule("logsnr_cosine", 64, logsnr_max=8.0, logsnr_min=-12.0))
    g = torch.Generator().manual_seed(0)
    x = data.sample(1000, g).double()
    full = bits_per_dim(data.denoiser(proc), x, decoder=GaussianDecoder(), batch_size=300, generator=g)
    sampled = bits_per_dim(data.denoiser(proc), x, decoder=GaussianDecoder(), n_timesteps=8, generator=g)
    assert full.n == 1000 and set(full.terms) == {"prior", "diffusion", "decoder"}
    assert full.mean == pytest.approx(sum(full.terms.values()), rel=1e-9)
    assert abs(full.mean - sampled.mean) < 4 * math.hypot(full.stderr, sampled.stderr)
    exact = (-data.log_prob(x)).mean().item() / (4 * math.log(2))
    assert full.mean > exact


def test_simple_loss_of_the_optimal_predictor_is_the_mean_alpha_bar():
    """For x ~ N(0, I), E[eps|z_t] = sigma_t z_t and the minimal noise MSE is alpha_bar_t; L_simple averages it over t."""
    sched = discrete_schedule("cosine", 100)
    proc = GaussianForward(sched)

    def optimal_eps(z, time):
        return sched.sigma(time).to(z.dtype)[:, None] * z

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    loss = simple_loss(Denoiser(optimal_eps, proc, prediction="eps"), x, generator=g)
    expected = sched.alpha_bar[1:].mean().item()
    assert loss.mean().item() == pytest.approx(expected, abs=4 * loss.std().item() / math.sqrt(x.shape[0]))


def test_eps_kl_weights_match_the_kl_of_a_unit_eps_error():
    sched = discrete_schedule("cosine", 50)
    proc = GaussianForward(sched)
    w = eps_kl_weights(sched)
    x, noise = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    for t in (2, 25, 50):
        tt = torch.tensor([t])
        alpha, sigma = sched.alpha(tt), sched.sigma(tt)
        kl = diffusion_kl(Oracle(lambda z, _: (z - sigma * (noise + 1)) / alpha, proc), x, tt - 1, tt, noise)
        assert kl.item() == pytest.approx(w[t].item(), rel=1e-9)


def test_ndm_bound_with_identity_transform_is_the_ddpm_bound():
    """vlb_terms is written once for any forward process: with F(x, t) = x, NDM's bound is DDPM's, term by term."""
    from diffusion_study.core.processes import NeuralForward

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    sched = discrete_schedule("cosine", 30)
    data = two_gaussians()
    ddpm, ndm = GaussianForward(sched), NeuralForward(sched, Zero())
    x = data.sample(64, torch.Generator().manual_seed(0)).double()
    den = data.denoiser(ddpm)
    a = vlb_terms(den, x, decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(1))
    b = vlb_terms(Oracle(den.fn, ndm), x, decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(1))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)


def test_discrete_bound_converges_to_the_continuous_bound_as_the_grid_refines():
    """VDM (Kingma et al. 2021): on the grid i / T of a continuous schedule, the discrete bound
    tends to the continuous one, -1/2 E int SNR'(t) ||x - x0_hat||^2 dt + prior + decoder."""
    from diffusion_study.core.continuous_time import continuous_bound

    mix = two_gaussians()
    proc = GaussianForward(continuous_schedule("logsnr_cosine"))
    g = torch.Generator().manual_seed(0)
    x = mix.sample(2000, g).double()
    den = mix.denoiser(proc)
    limit = continuous_bound(den, x, decoder=GaussianDecoder(), n_t=32, generator=g).total
    bounds = [vlb_terms(den, x, decoder=GaussianDecoder(), times=proc.schedule.grid(T), generator=g).total
              for T in (16, 64, 256)]
    se = lambda v: v.std().item() / math.sqrt(len(v))  # noqa: E731  (paired over the same x)
    for coarse, fine in zip(bounds, bounds[1:]):
        assert (coarse - fine).mean() > 3 * se(coarse - fine)  # each refinement tightens the bound
    gaps = [(b - limit).mean().item() for b in bounds]
    assert 0 < gaps[-1] < 0.2 and gaps[-1] < gaps[-2] / 2, gaps  # and approaches the limit like 1/T


def test_continuous_bound_refuses_what_it_cannot_evaluate():
    from diffusion_study.core.continuous_time import continuous_bound_terms

    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="continuous schedule"):
        continuous_bound_terms(two_gaussians().denoiser(GaussianForward(discrete_schedule("cosine", 10))), x,
                               decoder=GaussianDecoder())
    with pytest.raises(ValueError, match="t_min"):  # the cosine schedule has sigma(0) = 0
        continuous_bound_terms(two_gaussians().denoiser(GaussianForward(continuous_schedule("cosine"))), x,
                               decoder=GaussianDecoder())


class CountingF(torch.nn.Module):
    """A non-trivial F-network that records the batch size of every call."""

    event_dims = 1

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t):
        self.calls.append(x.shape[0])
        return torch.tanh(x) * t[:, None]


def test_ndm_kl_term_calls_F_twice_once_per_side():
    """F(x, t), F(x, s) in one call (they give z_t and the posterior's mean), F(x0_hat, t), F(x0_hat, s)
    in another: four evaluations, none repeated; fewer calls are impossible since x0_hat needs z_t."""
    from diffusion_study.core.processes import NeuralForward

    f = CountingF()
    proc = NeuralForward(discrete_schedule("cosine", 30), f)
    x = torch.randn(8, 2, dtype=torch.float64)
    den = Oracle(lambda z, t: 0.5 * z, proc)
    t = torch.full((8,), 10)
    diffusion_kl(den, x, t - 1, t, torch.randn(8, 2, dtype=torch.float64))
    assert f.calls == [16, 16]
    f.calls.clear()
    vlb_terms(den, x, decoder=GaussianDecoder())
    kl_terms = 30 - 1
    assert f.calls.count(16) == 2 * kl_terms and sum(f.calls) == 4 * 8 * kl_terms + 8 + 8  # + prior + decoder


def test_ndm_posterior_keeps_the_marginals_for_a_nontrivial_F():
    """z_t ~ q(z_t|x), z_s ~ q(z_s|z_t,x) gives z_s ~ N(alpha_s F(x,s), sigma_s^2): checked by sampling."""
    from diffusion_study.core.processes import NeuralForward

    proc = NeuralForward(continuous_schedule("cosine"), CountingF())
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x = torch.full((n, 2), 0.8, dtype=torch.float64)
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    z_t = proc.sample(x, t, torch.randn(n, 2, generator=g, dtype=torch.float64))
    mean, var = proc.posterior(x, z_t, t, s)
    z_s = mean + var.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    m_s, std_s = proc.marginal(x[:1], s)
    se = std_s.item() / math.sqrt(n)
    assert (z_s.mean(0) - m_s[0]).abs().max() < 5 * se
    assert (z_s.var(0) / std_s.item() ** 2 - 1).abs().max() < 5 * math.sqrt(2 / n)


def test_bounds_refuse_the_noise_free_process():
    from diffusion_study.core.processes import NoiseFreeForward

    proc = NoiseFreeForward(discrete_schedule("cosine", 10))
    with pytest.raises(ValueError, match="infinite"):
        vlb_terms(Oracle(lambda z, t: z, proc), torch.zeros(3, 2), decoder=GaussianDecoder())
    from diffusion_study.core.continuous_time import continuous_bound_terms

    proc = NoiseFreeForward(continuous_schedule("logsnr_cosine"))
    with pytest.raises(ValueError, match="infinite"):
        continuous_bound_terms(Oracle(lambda z, t: z, proc), torch.zeros(3, 2), decoder=GaussianDecoder())


def test_bits_per_dim_of_an_ensemble_equals_separate_evaluations():
    """[G, N, D] data through a batched denoiser gives, per member, the numbers of G separate calls."""
    from diffusion_study.nets.models import EnsembleMLP

    G, N = 3, 40
    proc = GaussianForward(discrete_schedule("cosine", 12))
    torch.manual_seed(0)
    ens = EnsembleMLP(G, 2, hidden=8, depth=1, time_dim=4).double()
    data = torch.randn(G, N, 2, dtype=torch.float64)
    joint = bits_per_dim(Denoiser(ens, proc), data, decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(0))
    for g in range(G):
        member = Denoiser(ens.member(g).double(), proc)
        alone = bits_per_dim(member, data[g], decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(0))
        # different noise draws (the joint call draws [G, N, D] at once), so compare with the exact-noise-free
        # part: the prior is deterministic; the totals agree within their standard errors
        assert joint.terms["prior"][g].item() == pytest.approx(alone.terms["prior"], rel=1e-12)
        assert abs(joint.mean[g].item() - alone.mean) < 4 * math.hypot(joint.stderr[g].item(), alone.stderr)


@pytest.mark.parametrize("make,message", [
    (lambda d: (d + 1) / 2, r"scaled to \[0, 1\]: map them with 2 x - 1"),
    (lambda d: torch.round((d + 1) * 8), r"raw integer levels: map them with images.from_uint\(x, 17\)"),
    (lambda d: d.clone().fill_(float("nan")), "NaN or infinite"),
    (lambda d: d[:0], "data is empty"),
])
def test_bits_per_dim_refuses_data_off_the_decoders_grid(make, message):
    """Digits scaled to [0, 1], raw integers, NaN and empty data give an error, not plausible numbers."""
    from diffusion_study.data.images import load_image_dataset

    digits = load_image_dataset("digits").test[:20]
    proc = GaussianForward(discrete_schedule("cosine", 10))
    model = Oracle(lambda z, t: z, proc)
    with pytest.raises(ValueError, match=message):
        bits_per_dim(model, make(digits), decoder=DiscretizedGaussianDecoder(17))
    with pytest.raises(ValueError, match=r"lie on a 17-level grid: use DiscretizedGaussianDecoder\(17\)"):
        bits_per_dim(model, digits, decoder=DiscretizedGaussianDecoder(256))
    bits_per_dim(model, digits, decoder=DiscretizedGaussianDecoder(17))  # on the grid: accepted


def test_chain_log_weights_stay_on_the_inputs_device():
    """Every tensor of the forward chain lives on x's device (here 'meta', which has no data: a tensor made on
    the CPU would not mix with it), so the importance-weighted bound runs on an accelerator without copies."""
    from diffusion_study.core.likelihood import chain_log_weights

    proc = GaussianForward(continuous_schedule("logsnr_cosine"))
    x = torch.zeros(4, 2, device="meta")
    out = chain_log_weights(Oracle(lambda z, t: z, proc), x, decoder=GaussianDecoder(), times=proc.schedule.grid(4))
    assert out.device.type == "meta" and out.shape == (4,)
