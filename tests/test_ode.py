"""The probability-flow ODE (chapter 3): with a mixture's exact score its log-density is the mixture's own,
its divergences are right, it samples the mixture, and bad configurations are refused with one message each."""

import math

import pytest
import torch
from diffusion_study.core.ode import (
    ProbabilityFlow,
    dequantization_bits,
    dequantize_uniform,
    draw_probe,
    exact_divergence,
    hutchinson_divergence,
    ode_bits_per_dim,
    ode_log_likelihood,
    ode_sample,
    ode_solve,
)
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.data.toy2d import gaussian, gaussian_ring, two_gaussians
from diffusion_study.eval.metrics import energy_distance

ENDS = {"logsnr_max": 8.0, "logsnr_min": -10.0}


def _process():
    return GaussianForward(continuous_schedule("logsnr_cosine", **ENDS))


def _ends(proc):
    t0, t1 = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    return proc.alpha(t0), proc.sigma(t0), proc.alpha(t1), proc.sigma(t1)


def test_ode_log_density_with_the_exact_score_is_the_mixtures():
    """Tolerance 1e-4 nats (dopri5, rtol = atol = 1e-7), 1e-6 nats (RK4, 200 steps): the ODE transports q_0 to
    q_1 exactly, so log q_0(x) = log q_1(x_1) + int div; both sides are exact up to the solver."""
    mix = gaussian_ring()
    proc = _process()
    a0, s0, a1, s1 = _ends(proc)
    x = mix.sample(64, torch.Generator().manual_seed(0)).double()
    truth = mix.log_prob(x, a0, s0)
    prior = lambda z: mix.log_prob(z, a1, s1)  # noqa: E731
    adaptive = ode_log_likelihood(mix.denoiser(proc), x, rtol=1e-7, atol=1e-7, prior=prior)
    assert (adaptive.log_prob - truth).abs().max() < 1e-4
    fixed = ode_log_likelihood(mix.denoiser(proc), x, method="rk4", steps=200, prior=prior)
    assert (fixed.log_prob - truth).abs().max() < 1e-6
    # the standard normal prior differs from q_1 by the signal left at lambda = -10: below 1e-3 nats here
    standard = ode_log_likelihood(mix.denoiser(proc), x, rtol=1e-7, atol=1e-7)
    assert (standard.log_prob - truth).abs().max() < 1e-3
    torch.testing.assert_close(adaptive.prior + adaptive.divergence, adaptive.log_prob)


def test_ode_log_density_of_a_gaussian_and_a_wrong_score_fails_the_check():
    """Gaussian data pass the same check; a negative control, another distribution's score, misses by far more
    than the tolerance (so the check can fail)."""
    data = gaussian([0.5, -1.0], 0.7)
    proc = _process()
    a0, s0, a1, s1 = _ends(proc)
    x = data.sample(32, torch.Generator().manual_seed(1)).double()
    prior = lambda z: data.log_prob(z, a1, s1)  # noqa: E731
    tight = ode_log_likelihood(data.denoiser(proc), x, rtol=1e-7, atol=1e-7, prior=prior)
    assert (tight.log_prob - data.log_prob(x, a0, s0)).abs().max() < 1e-4
    wrong = ode_log_likelihood(gaussian_ring().denoiser(proc), x, rtol=1e-7, atol=1e-7, prior=prior)
    assert (wrong.log_prob - data.log_prob(x, a0, s0)).abs().max() > 1e-2


def test_hutchinson_is_unbiased_and_exact_divergence_is_the_trace():
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    f = z @ A.T  # [5, 3], Jacobian A for every example
    torch.testing.assert_close(exact_divergence(f, z, 1), torch.full((5,), A.trace().item(), dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    for kind in ("rademacher", "gaussian"):
        estimates = torch.stack([hutchinson_divergence(z @ A.T, z, draw_probe(kind, z, g), 1) for _ in range(4000)])
        mean, se = estimates.mean(), estimates.std() / math.sqrt(estimates.numel())
        assert abs(mean - A.trace()) < 4 * se
    probe = draw_probe("rademacher", z, g)
    assert set(probe.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="probe"):
        draw_probe("uniform", z)


def test_hutchinson_likelihood_matches_the_exact_one_on_average():
    mix = gaussian_ring()
    proc = _process()
    x = mix.sample(16, torch.Generator().manual_seed(2)).double()
    exact = ode_log_likelihood(mix.denoiser(proc), x, method="rk4", steps=20)
    hutch = ode_log_likelihood(mix.denoiser(proc), x, method="rk4", steps=20, divergence="hutchinson", n_probes=16,
                               generator=torch.Generator().manual_seed(3))
    assert hutch.per_probe.shape == (16, 16)
    assert (hutch.per_probe.std(0) > 0).all()  # the ring's classes make the Jacobian non-diagonal: probes differ
    se = hutch.per_probe.std(0) / 4
    assert ((hutch.log_prob - exact.log_prob).abs() < 4 * se + 1e-6).all()


def test_ode_sampler_reproduces_the_mixture_and_is_deterministic():
    mix = two_gaussians(weights=(0.3, 0.7))
    proc = _process()
    g = torch.Generator().manual_seed(4)
    x_T = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    times = torch.tensor([1.0, 0.0], dtype=torch.float64)
    first = ode_solve(mix.denoiser(proc), x_T, times, rtol=1e-5, atol=1e-5)
    again = ode_sample(mix.denoiser(proc), x_T, times, rtol=1e-5, atol=1e-5)
    assert torch.equal(first.z, again) and first.nfe > 0
    reference, reference2 = mix.sample(2000, g), mix.sample(2000, g)
    assert energy_distance(first.z, reference) < max(3 * energy_distance(reference2, reference), 0.01)
    fixed = ode_sample(mix.denoiser(proc), x_T, proc.schedule.grid(20), method="rk4")
    assert energy_distance(fixed, reference) < max(3 * energy_distance(reference2, reference), 0.01)


def test_ode_works_on_an_ensemble_batch():
    from diffusion_study.core.denoiser import Denoiser
    from diffusion_study.nets.models import EnsembleMLP

    proc = _process()
    torch.manual_seed(0)
    net = EnsembleMLP(3, 2, hidden=8, depth=1, time_dim=4)
    model = Denoiser(net, proc, clip=(-3, 3))
    x = torch.randn(3, 5, 2)
    joint = ode_log_likelihood(model, x, method="rk4", steps=4)
    for g in range(3):
        alone = ode_log_likelihood(Denoiser(net.member(g), proc, clip=(-3, 3)), x[g], method="rk4", steps=4)
        torch.testing.assert_close(joint.log_prob[g], alone.log_prob, rtol=1e-4, atol=1e-4)


def test_bad_configurations_get_one_message_each():
    mix = two_gaussians()
    with pytest.raises(ValueError, match="continuous schedule"):
        ProbabilityFlow(mix.denoiser(GaussianForward(discrete_schedule("cosine", 100))))
    cosine = GaussianForward(continuous_schedule("cosine"))
    with pytest.raises(ValueError, match="not finite"):
        ode_solve(mix.denoiser(cosine), torch.zeros(2, 2), torch.tensor([1.0, 0.0]))
    proc = _process()
    with pytest.raises(ValueError, match="unknown ODE solver"):
        ode_solve(mix.denoiser(proc), torch.zeros(2, 2), torch.tensor([1.0, 0.0]), method="heun")
    with pytest.raises(ValueError, match="rtol"):
        ode_solve(mix.denoiser(proc), torch.zeros(2, 2), torch.tensor([1.0, 0.0]), rtol=float("nan"))
    with pytest.raises(ValueError, match="needs steps"):
        ode_log_likelihood(mix.denoiser(proc), torch.zeros(2, 2), method="rk4")
    with pytest.raises(ValueError, match="unknown divergence"):
        ode_log_likelihood(mix.denoiser(proc), torch.zeros(2, 2), divergence="trace")
    with pytest.raises(ValueError, match="monotone"):
        ode_solve(mix.denoiser(proc), torch.zeros(2, 2), torch.tensor([1.0, 0.0, 0.5]))


def test_dequantised_bits_per_dim_adds_the_bin_term():
    """bits/dim = E[-log2 p(x + u)] / D - log2 w, with the density of a Gaussian computed exactly."""
    assert dequantization_bits(0.125) == pytest.approx(3.0)
    x = torch.tensor([[-1.0, 0.0], [0.125, 1.0]], dtype=torch.float64)
    u = dequantize_uniform(x.expand(1000, 2, 2), 0.125, torch.Generator().manual_seed(0)) - x
    assert u.abs().max() <= 0.0625 and u.abs().max() > 0.06
    data = gaussian([0.0, 0.0], 0.8)
    proc = _process()
    a0, s0, a1, s1 = _ends(proc)
    result, per_probe = ode_bits_per_dim(data.denoiser(proc), x, bin_width=0.125, generator=torch.Generator().manual_seed(5),
                                         rtol=1e-7, atol=1e-7, prior=lambda z: data.log_prob(z, a1, s1))
    deq = dequantize_uniform(x, 0.125, torch.Generator().manual_seed(5))
    expected = -data.log_prob(deq, a0, s0) / (2 * math.log(2)) + 3.0
    torch.testing.assert_close(result.per_example, expected, atol=1e-4, rtol=0)
    assert per_probe.shape == (1, 2) and result.terms["dequantization"] == pytest.approx(3.0)


def test_the_ndm_ode_with_F_identity_is_ddpms_ode():
    """One velocity for every forward process, sigma'/sigma (z - alpha F(x_hat, t)) + d/dt[alpha F](x_hat, t): with
    F = identity (GaussianForward's (x, 0), or a NeuralForward whose zero net goes through jvp) it is Song et al.'s
    probability-flow ODE of the VP process, lambda'(t) / 2 alpha_t (x_hat - alpha_t z), written out here."""
    from diffusion_study.core.denoiser import Oracle
    from diffusion_study.nets import transforms

    proc = _process()
    sched = proc.schedule
    mix = two_gaussians()
    oracle = mix.denoiser(proc)
    identity_net = transforms.mlp_forward(sched, hidden=8, depth=1).double()
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for tv in (0.05, 0.5, 0.95):
        t = torch.tensor(tv, dtype=torch.float64)
        alpha = sched.alpha(t)
        song = sched.d_log_snr(t) / 2 * alpha * (oracle(z, t) - alpha * z)
        for forward in (proc, identity_net):
            torch.testing.assert_close(ProbabilityFlow(Oracle(oracle.fn, forward))(t, z), song, rtol=1e-12, atol=1e-12)
    x = mix.sample(16, torch.Generator().manual_seed(1)).double()
    ddpm = ode_log_likelihood(oracle, x, method="rk4", steps=8)
    ndm = ode_log_likelihood(Oracle(oracle.fn, identity_net), x, method="rk4", steps=8)
    torch.testing.assert_close(ndm.log_prob, ddpm.log_prob, rtol=1e-10, atol=1e-10)


def test_chapter_4s_fixed_grid_sampler_is_the_one_solver_with_a_reverse_process():
    """continuous_time.ode_sample (NDM's name) is ode_solve with rk4 on the grid, for any reverse process (here the
    straight-path one); its callback sees every step of the grid."""
    from diffusion_study.core import continuous_time

    proc = _process()
    straight = continuous_time.StraightForward(proc.schedule)
    model = two_gaussians().denoiser(proc)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = continuous_time.log_snr_grid(proc.schedule, 6)
    steps = []
    ours = continuous_time.ode_sample(model, z, grid, reverse=straight, callback=steps.append)
    one = ode_solve(model, z, grid, method="rk4", reverse=straight)
    assert torch.equal(ours, one.z) and one.nfe == 4 * 6
    assert [s["i"] for s in steps] == list(range(6)) and torch.equal(steps[-1]["z"], ours)
    assert (ours - ode_solve(model, z, grid, method="rk4").z).abs().max() > 1e-3  # the reverse process matters


def test_a_discrete_schedule_runs_the_ode_on_the_curve_through_its_grid():
    """A discrete schedule is a grid on a continuous log-SNR curve (`DiscreteSchedule.curve`): a model wrapped on
    it has the ODE, and with the exact score its log-density at the first grid time is the mixture's there."""
    disc = discrete_schedule("cosine", 50)
    with pytest.raises(ValueError, match=r"schedule.curve\(\)"):
        ProbabilityFlow(gaussian_ring().denoiser(GaussianForward(disc)))
    proc = GaussianForward(disc.curve())
    mix = gaussian_ring()
    t0, t1 = torch.tensor(1 / 50, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    z = mix.sample(32, torch.Generator().manual_seed(0)).double()
    prior = lambda v: mix.log_prob(v, disc.alpha(t1), disc.sigma(t1))  # noqa: E731
    result = ode_log_likelihood(mix.denoiser(proc), z, t0=1 / 50, rtol=1e-7, atol=1e-7, prior=prior)
    assert (result.log_prob - mix.log_prob(z, disc.alpha(t0), disc.sigma(t0))).abs().max() < 1e-3
