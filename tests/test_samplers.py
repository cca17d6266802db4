"""DDPM and DDIM: the right step variances, determinism, and the mixture reproduced from its exact denoiser."""

import pytest
import torch
from diffusion_study.core.denoiser import Denoiser, Oracle
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import (
    ddim_sample,
    ddpm_sample,
    get_sampler,
    time_grid,
)
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import two_gaussians
from diffusion_study.eval.metrics import energy_distance, mode_fractions


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
    runs = [ddim_sample(mix.denoiser(proc), x_T, proc.schedule.grid(20), eta=0.0,
                        generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert torch.equal(runs[0], runs[1])
    runs = [ddpm_sample(mix.denoiser(proc), x_T, proc.schedule.grid(), generator=torch.Generator().manual_seed(s))
            for s in (1, 2)]
    assert not torch.allclose(runs[0], runs[1])


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddim", 100)])
def test_exact_denoiser_reproduces_the_mixture(sampler, steps):
    """Both modes with the right weights, and an energy distance to fresh data within 3x the two-sample noise floor."""
    mix = two_gaussians(weights=(0.3, 0.7))
    proc = GaussianForward(discrete_schedule("cosine", 1000))
    g = torch.Generator().manual_seed(0)
    n = 3000
    samples = get_sampler(sampler)(mix.denoiser(proc), torch.randn(n, 2, generator=g), proc.schedule.grid(steps),
                                   generator=g)
    reference, reference2 = mix.sample(n, g), mix.sample(n, g)
    floor = energy_distance(reference, reference2)
    assert energy_distance(samples, reference) < max(3 * floor, 0.01)
    torch.testing.assert_close(mode_fractions(mix, samples), mix.weights, atol=0.03, rtol=0)


def test_time_grid_and_bad_steps():
    sched = discrete_schedule("cosine", 1000)
    grid = time_grid(sched, 10)
    assert grid[0] == 1 and grid[-1] == 0 and len(grid) == 11 and (torch.diff(grid) < 0).all()
    torch.testing.assert_close(sched.step_index(grid), torch.arange(1000, -1, -100))
    for bad in (0, -3, 1001, 2.5):
        with pytest.raises(ValueError):
            time_grid(sched, bad)
    with pytest.raises(ValueError, match="'ddpm', 'ddim'"):
        get_sampler("euler")
    identity = Oracle(lambda z, t: z, GaussianForward(sched))
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(identity, torch.zeros(1, 2), sched.grid(5), eta=1.5)
    with pytest.raises(ValueError, match="descending"):
        ddim_sample(identity, torch.zeros(1, 2), sched.grid(5).flip(0))
    with pytest.raises(ValueError, match="grid"):
        ddim_sample(identity, torch.zeros(1, 2), torch.tensor([1.0, 0.0005, 0.0]))


def test_an_ensemble_samples_in_one_call_as_its_members_do_alone():
    """[G, B, D] through an EnsembleMLP denoiser equals G separate samplings of its members (same start, same noise)."""
    from diffusion_study.nets.models import EnsembleMLP

    G, B = 4, 32
    proc = GaussianForward(discrete_schedule("cosine", 50))
    torch.manual_seed(0)
    ens = EnsembleMLP(G, 2, hidden=16, depth=2, time_dim=8)
    x_T = torch.randn(G, B, 2, generator=torch.Generator().manual_seed(1))
    for sampler in (ddim_sample, ddpm_sample):
        joint = sampler(Denoiser(ens, proc, clip=(-3, 3)), x_T, proc.schedule.grid(10),
                        generator=torch.Generator().manual_seed(2))
        noise = torch.randn(10, G, B, 2, generator=torch.Generator().manual_seed(2))  # the joint call's draws
        for g in range(G):
            member = Denoiser(ens.member(g), proc, clip=(-3, 3))
            draws = iter(noise[:, g])  # member g's slice of the joint run's noise
            alone = _sample_with_noise(sampler, member, x_T[g], proc.schedule.grid(10), draws)
            torch.testing.assert_close(joint[g], alone, rtol=1e-5, atol=1e-5)


def _sample_with_noise(sampler, model, x, times, draws):
    """Run `sampler` with its Gaussian draws taken from the iterator `draws` (DDIM eta=0 draws none)."""
    import diffusion_study.base.rng as rng

    original = rng.randn
    rng.randn = lambda shape, like, generator=None: next(draws).to(like)
    try:
        return sampler(model, x, times)
    finally:
        rng.randn = original


def test_mixture_oracle_and_metrics_take_leading_batch_dims():
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 100))
    z = torch.randn(3, 5, 2, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    joint = mix.denoiser(proc)(z, t)
    for g in range(3):
        torch.testing.assert_close(joint[g], mix.denoiser(proc)(z[g], t))
    reference = mix.sample(200, torch.Generator().manual_seed(0))
    samples = mix.sample(600, torch.Generator().manual_seed(1)).reshape(3, 200, 2)
    assert energy_distance(samples, reference).shape == (3,)
    assert energy_distance(samples[1], reference) == pytest.approx(energy_distance(samples, reference)[1].item())
    torch.testing.assert_close(mode_fractions(mix, samples)[2], mode_fractions(mix, samples[2]))


def test_a_network_is_declared_for_one_target():
    """Trained as eps, sampled as x0: refused at wrapping time, and a checkpoint does not load into another target."""
    from diffusion_study.nets.models import TimeMLP

    proc = GaussianForward(discrete_schedule("cosine", 10))
    net = TimeMLP(2, hidden=8, depth=1, time_dim=4)
    eps_model = Denoiser(net, proc, prediction="eps")
    with pytest.raises(ValueError, match="declared to predict 'eps'"):
        Denoiser(net, proc, prediction="x0")
    other = Denoiser(TimeMLP(2, hidden=8, depth=1, time_dim=4), proc, prediction="x0")
    with pytest.raises(ValueError, match="'eps'-predicting model"):
        other.load_state_dict(eps_model.state_dict())


def test_prev_target_samples_with_the_posterior_of_its_own_step():
    """A 'prev' (z_{t-1}) network that outputs the exact posterior mean is read back as the exact x0,
    so on its own grid with eta = 1 each step's mean is the network's output itself."""
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 20))
    oracle = mix.denoiser(proc)

    def prev_net(z, time):  # mu~(E[x0|z], z) for the step t -> t - 1/T
        t = time.double()
        return proc.posterior(oracle(z, t), z, t, t - 1 / 20)[0].to(z)

    model = Denoiser(prev_net, proc, prediction="prev")
    z = torch.randn(64, 2, dtype=torch.float64)
    t = torch.full((64,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(model(z, t), oracle(z, t))
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = ddpm_sample(model, x_T, proc.schedule.grid(), generator=torch.Generator().manual_seed(1))
    b = ddpm_sample(oracle, x_T, proc.schedule.grid(), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_noise_free_process_samples_by_shrinking_back():
    """z_t = alpha_t x (sigma = 0): an x0 network's sampler is z_s = alpha_s x0_hat; eps/score are refused."""
    from diffusion_study.core.processes import NoiseFreeForward

    proc = NoiseFreeForward(discrete_schedule("cosine", 20))
    x = torch.randn(10, 2, dtype=torch.float64)
    z_T = proc.sample(x, 1.0, torch.randn(10, 2, dtype=torch.float64))
    torch.testing.assert_close(z_T, proc.alpha(torch.tensor(1.0))[None, None] * x)
    exact = Oracle(lambda z, t: z / proc.alpha(t).reshape(-1, 1).to(z), proc)  # invertible: x = z / alpha
    for sampler in (ddim_sample, ddpm_sample):
        torch.testing.assert_close(sampler(exact, z_T, proc.schedule.grid(5)), x)
    with pytest.raises(ValueError, match="no noise"):
        Denoiser(lambda z, t: z, proc, prediction="eps")


def test_sampler_callback_sees_every_step():
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("cosine", 100))
    seen = []
    ddim_sample(mix.denoiser(proc), torch.randn(8, 2), proc.schedule.grid(7), callback=seen.append)
    assert [d["i"] for d in seen] == list(range(7)) and seen[-1]["t"] == 0
