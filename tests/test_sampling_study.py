"""Chapter 3's samplers against the papers' formulas, DDIM inversion, the guidance identities of a mixture,
one clear message per bad input, and the chapter's measurement helpers."""

import math

import numpy as np
import pytest
import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.guidance import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    guidance_direction,
    tilt_exponent,
)
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import (
    ancestral_sample,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
    get_sampler,
    REVERSE_SAMPLERS,
    reverse_sampler,
)
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import (
    TiltedDensity,
    class_score,
    conditional_denoiser,
    gaussian_ring,
    guided_score,
    two_gaussians,
)
from diffusion_study.eval.metrics import energy_distance
from diffusion_study.nets.models import TimeMLP
from diffusion_study.studies import sampling as study

T = 1000


def _eps_net(z, time):
    """A fixed smooth eps-'network' in float64 (time: the float32 network time, as a Denoiser passes it)."""
    t = time.double()[:, None]
    return 0.5 * torch.sin(1.3 * z + 2.0 * t) + 0.1 * z * t


def _paper_tables():
    """DDPM's linear schedule written out independently: beta_t, alpha_t, alpha_bar_t for t = 1..T (index t - 1)."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alphas = 1 - betas
    return betas, alphas, torch.cumprod(alphas, 0)


def _network_time(i: int) -> torch.Tensor:
    return torch.tensor(i / T, dtype=torch.float64).float()


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_ddpm_equals_ho_algorithm_2_in_float64(variance):
    """x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, t)) / sqrt(alpha_t) + sigma_t z, z = 0 at t = 1,
    with sigma_t^2 = beta_t or beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (Ho et al. 2020, Algorithm 2)."""
    proc = GaussianForward(discrete_schedule("linear", T))
    model = Denoiser(_eps_net, proc, prediction="eps")
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if variance == "posterior":
        ours = ddpm_sample(model, x_T, proc.schedule.grid(), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours, ancestral_sample(model, x_T, proc.schedule.grid(), variance="posterior",
                                                          generator=torch.Generator().manual_seed(1)), rtol=0, atol=0)
    else:
        ours = ancestral_sample(model, x_T, proc.schedule.grid(), variance="beta", generator=torch.Generator().manual_seed(1))
    betas, alphas, abar = _paper_tables()
    g = torch.Generator().manual_seed(1)  # the same draws, in the same order (one per step)
    x = x_T.clone()
    for t in range(T, 0, -1):
        eps = _eps_net(x, _network_time(t).expand(len(x)))
        mean = (x - betas[t - 1] / torch.sqrt(1 - abar[t - 1]) * eps) / torch.sqrt(alphas[t - 1])
        abar_prev = abar[t - 2] if t > 1 else torch.tensor(1.0, dtype=torch.float64)
        var = betas[t - 1] if variance == "beta" else (1 - abar_prev) / (1 - abar[t - 1]) * betas[t - 1]
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        x = mean + (torch.sqrt(var) * z if t > 1 else 0)
    assert (ours - x).abs().max() < 1e-10


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_equals_song_eq_12_in_float64(eta):
    """x_s = sqrt(abar_s) (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) + sqrt(1 - abar_s - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s), on a 50-step subsequence (Song et al. 2021)."""
    proc = GaussianForward(discrete_schedule("linear", T))
    model = Denoiser(_eps_net, proc, prediction="eps")
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = ddim_sample(model, x_T, proc.schedule.grid(50), eta=eta, generator=torch.Generator().manual_seed(3))
    _, _, abar = _paper_tables()
    abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])  # abar[0] = 1: the data
    tau = list(range(T, -1, -T // 50))  # 1000, 980, ..., 0
    g = torch.Generator().manual_seed(3)
    x = x_T.clone()
    for t, s in zip(tau[:-1], tau[1:]):
        eps = _eps_net(x, _network_time(t).expand(len(x)))
        x0 = (x - torch.sqrt(1 - abar[t]) * eps) / torch.sqrt(abar[t])
        sigma = eta * torch.sqrt((1 - abar[s]) / (1 - abar[t])) * torch.sqrt(1 - abar[t] / abar[s])
        x = torch.sqrt(abar[s]) * x0 + torch.sqrt(1 - abar[s] - sigma**2) * eps
        if eta > 0:  # the library draws one noise per step when eta > 0 (zero-scaled at s = 0)
            x = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert (ours - x).abs().max() < 1e-10


def test_ddim_inversion_error_falls_with_the_steps():
    """Encode with ddim_invert, decode with DDIM (eta = 0): the exact mixture denoiser reconstructs to 2e-3 at 1000 steps."""
    mix = two_gaussians()
    proc = GaussianForward(discrete_schedule("logsnr_cosine", T, logsnr_max=8.0, logsnr_min=-10.0))
    model = mix.denoiser(proc)
    x = mix.sample(200, torch.Generator().manual_seed(4)).double()
    errors = []
    for steps in (10, 100, 1000):
        latent = ddim_invert(model, x, proc.schedule.grid(steps))
        back = ddim_sample(model, latent, proc.schedule.grid(steps))
        errors.append(float((back - x).pow(2).mean().sqrt()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3
    latent = ddim_invert(model, x, proc.schedule.grid(1000))
    assert abs(float(latent.std()) - 1) < 0.15  # the latent looks like the prior


def test_bad_inputs_get_one_clear_message_each():
    proc = GaussianForward(discrete_schedule("cosine", T))
    identity = conditional_denoiser(two_gaussians(), proc)
    with pytest.raises(ValueError, match=r"unknown sampler 'euler'; valid choices: 'ddpm', 'ddim'"):
        get_sampler("euler")
    with pytest.raises(ValueError, match=r"unknown reverse sampler 'heun'; valid names: ddpm-beta, ddpm-beta-tilde"):
        study.run_sampler("heun", identity, torch.zeros(1, 2), 5)
    for steps, message in ((0, "steps must be a positive integer"), (-2, "steps must be a positive integer"),
                           (T + 1, f"steps must be at most T={T}")):
        with pytest.raises(ValueError, match=message):
            ddim_sample(identity, torch.zeros(1, 2), proc.schedule.grid(steps))
    for eta in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
            ddim_sample(identity, torch.zeros(1, 2), proc.schedule.grid(5), eta=eta)
    with pytest.raises(ValueError, match="unknown reverse variance 'large'"):
        ancestral_sample(identity, torch.zeros(1, 2), proc.schedule.grid(5), variance="large")
    classifier = lambda z, t: torch.zeros(z.shape[:-1] + (2,))  # noqa: E731
    for scale in (float("inf"), float("nan"), -1.0, "strong"):
        with pytest.raises(ValueError, match="guidance scale must be a finite number >= 0"):
            ClassifierFreeGuidance(identity, scale)
        with pytest.raises(ValueError, match="guidance scale must be a finite number >= 0"):
            ClassifierGuidance(identity, classifier, scale)


def test_exact_guidance_identities_of_a_mixture():
    """Bayes: the exact conditional-minus-unconditional difference is grad log q_t(y | z); classifier-free guidance
    with exact denoisers is the score grad log q_t + (1 + w) grad log q_t(y | z); class_score is autograd's."""
    mix = gaussian_ring()
    proc = GaussianForward(discrete_schedule("logsnr_cosine", T))
    exact = conditional_denoiser(mix, proc)
    z = torch.randn(40, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.arange(40) % 3
    t = torch.tensor(0.4, dtype=torch.float64)
    alpha, sigma = proc.alpha(t), proc.sigma(t)
    torch.testing.assert_close(guidance_direction(exact, z, t, y), class_score(mix, z, y, alpha, sigma))
    zz = z.clone().requires_grad_(True)
    log_post = torch.log(mix.responsibilities(zz, alpha, sigma)).gather(1, y[:, None]).sum()
    torch.testing.assert_close(class_score(mix, z, y, alpha, sigma), torch.autograd.grad(log_post, zz)[0])
    for w in (0.0, 2.0):
        x0 = ClassifierFreeGuidance(exact, w)(z, t, y)
        expected = (z + sigma**2 * guided_score(mix, z, y, tilt_exponent(w), alpha, sigma)) / alpha
        torch.testing.assert_close(x0, expected)
    torch.testing.assert_close(exact(z, t), mix.denoiser(proc)(z, t))  # null label: the unconditional denoiser
    assert tilt_exponent(2.0) == 3.0 and tilt_exponent(2.0, "classifier") == 2.0


def test_tilted_density_at_gamma_one_is_the_class_conditional_law():
    mix = gaussian_ring()
    density = TiltedDensity(mix, 1, 1.0, n=300)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    component = mix.means[1]
    expected = -0.5 * ((x - component) ** 2).sum(1) / 0.75**2 - math.log(2 * math.pi * 0.75**2)
    torch.testing.assert_close(density.log_density(x), expected, atol=1e-3, rtol=0)
    z = 0.8 * x
    score = density.score(z, 0.8, 0.6)
    exact = guided_score(mix, z, torch.ones(20, dtype=torch.long), 1.0, 0.8, 0.6)
    torch.testing.assert_close(score, exact, atol=1e-3, rtol=0)
    samples = density.sample(4000, torch.Generator().manual_seed(7))
    torch.testing.assert_close(samples.mean(0).double(), component, atol=0.06, rtol=0)


def test_chapter_helpers():
    labels = study.class_blocks(2, 3, 2)
    assert labels.tolist() == [[0, 0, 1, 1, 2, 2]] * 2
    np.testing.assert_allclose(study.precision(torch.tensor([[0, 1, 1, 1, 2, 0]]), labels[:1]), [4 / 6])
    feats = torch.tensor([[[0.0], [2.0], [5.0], [5.0], [1.0], [3.0]]])
    np.testing.assert_allclose(study.within_class_spread(feats, 3), [(1 + 0 + 1) / 3])
    proc = GaussianForward(discrete_schedule("cosine", 100))
    mix = two_gaussians()
    reference = mix.sample(500, torch.Generator().manual_seed(8))
    distance = study.EnergyDistanceTo(reference)
    sweep = study.sampler_sweep(mix.denoiser(proc), torch.randn(2, 50, 2), [5, 10], distance)
    assert sweep.at("ddim", 10).shape == (2,) and sweep.nfe["ddpm-beta"] == [5, 10]
    x = torch.randn(3, 40, 2)
    np.testing.assert_allclose(distance(x), energy_distance(x, reference).numpy(), rtol=1e-10)
    errors = study.inversion_error(mix.denoiser(proc), mix.sample(40, torch.Generator()).reshape(2, 20, 2), [5, 50])
    assert errors.shape == (2, 2) and (errors[1] < errors[0]).all()


def test_classifier_guidance_of_a_conditional_network_uses_its_null_label():
    """ClassifierGuidance calls model(z, t) without y: a conditional network then uses its null label."""
    proc = GaussianForward(discrete_schedule("cosine", 100))
    torch.manual_seed(0)
    model = Denoiser(TimeMLP(2, hidden=8, depth=1, num_classes=3), proc)
    z, t, y = torch.randn(6, 2), torch.tensor(0.5), torch.randint(0, 3, (6,))
    flat = lambda z_, time: 0 * z_[..., :1].expand(z_.shape[:-1] + (3,))  # noqa: E731  uniform: zero gradient
    torch.testing.assert_close(ClassifierGuidance(model, flat, 4.0)(z, t, y), model(z, t, torch.full((6,), 3)))


def test_reverse_sampler_registry_names_state_the_variance_and_match_the_samplers():
    """ddpm-beta-tilde is DDIM at eta = 1, ddpm-beta the ancestral sampler with beta_t, ddim eta = 0; the same
    generator gives the same draw through the registry as through the functions."""
    proc = GaussianForward(discrete_schedule("cosine", 100))
    model = conditional_denoiser(two_gaussians(), proc)
    x, times = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), proc.schedule.grid(10)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    direct = {"ddpm-beta": ancestral_sample(model, x, times, variance="beta", generator=g()),
              "ddpm-beta-tilde": ddim_sample(model, x, times, eta=1.0, generator=g()),
              "ddim-eta0.5": ddim_sample(model, x, times, eta=0.5, generator=g()),
              "ddim": ddim_sample(model, x, times, eta=0.0)}
    assert set(REVERSE_SAMPLERS) == set(direct)
    for name, expected in direct.items():
        assert torch.equal(reverse_sampler(name)(model, x, times, generator=g()), expected), name
    with pytest.raises(ValueError, match="valid names: ddpm-beta, ddpm-beta-tilde, ddim-eta0.5, ddim"):
        reverse_sampler("ddpm")
