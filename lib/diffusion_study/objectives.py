"""Training objectives: the simple noise loss and the full variational bound (chapter 1).

    -log p(x) <= L_prior + L_diffusion + L_decoder
    L_prior     = KL(q(z_T|x) || N(0, I))
    L_diffusion = sum_{t=2}^T E_q KL(q(z_{t-1}|z_t, x) || p(z_{t-1}|z_t))
    L_decoder   = -E_q log p(x | z_1)
with p(z_{t-1}|z_t) = q(z_{t-1}|z_t, x = x0_hat(z_t, t)) (the posterior with the denoiser's
guess, which is DDPM's eps-parameterised mean and NDM's reverse process alike) and a
reverse variance that is either the posterior's s~^2 ('posterior', DDPM's beta~_t) or
sigma_{t|t-1}^2 ('beta', DDPM's beta_t). All terms are in nats per example, shape [B];
convert with `nats_to_bits_per_dim`, or estimate a data set's
bits/dim with `diffusion_study.likelihood.bits_per_dim`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from . import rng
from .predictions import target
from .schedules import DiscreteSchedule, coefficient
from .validation import choose, positive_int

REVERSE_VARIANCES = ("posterior", "beta")


def _sum_event(x: Tensor, event_dims: int) -> Tensor:
    return x.sum(dim=tuple(range(x.ndim - event_dims, x.ndim))) if event_dims else x


def _event_dims(x: Tensor, event_dims: int | None) -> int:
    return x.ndim - 1 if event_dims is None else event_dims


def sample_time(schedule, shape, like: Tensor, generator=None) -> Tensor:
    """t ~ U{1..T} for a discrete schedule, U(0, 1] for a continuous one; shape `shape`, on `like`'s device."""
    if isinstance(schedule, DiscreteSchedule):
        return rng.randint(1, schedule.T + 1, shape, like, generator)
    return 1 - rng.rand(shape, like, generator)


def simple_loss(net, process, x: Tensor, *, prediction: str = "eps", generator=None,
                event_dims: int | None = None) -> Tensor:
    """L_simple (Ho et al. 2020, eq. 14) for any prediction: mean over dims of ||net(z_t, t) - target||^2.

    x: [B, ...] data (or [G, B, D] for an ensemble with event_dims=1); returns [B] (or [G, B]).
    t ~ U{1..T}, eps ~ N(0, I), z_t = alpha_t x + sigma_t eps.
    """
    event_dims = _event_dims(x, event_dims)
    batch_shape = x.shape[: x.ndim - event_dims]
    sched = process.schedule
    t = sample_time(sched, batch_shape, x, generator)
    eps = rng.randn(x.shape, x, generator)
    z = process.sample(x, t, eps)
    alpha, sigma = coefficient(sched.alpha(t), x), coefficient(sched.sigma(t), x)
    out = net(z, sched.time(t))
    err = (out - target(prediction, x, eps, alpha, sigma)) ** 2
    return _sum_event(err, event_dims) / math.prod(x.shape[x.ndim - event_dims:])


# ---------------------------------------------------------------------------------------
# The variational bound
# ---------------------------------------------------------------------------------------


def gaussian_kl(mean_q: Tensor, var_q: Tensor, mean_p: Tensor, var_p: Tensor) -> Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) elementwise (diagonal Gaussians), broadcasting.

    = 1/2 [log(var_p / var_q) + (var_q + (mean_q - mean_p)^2) / var_p - 1].
    """
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1)


def standard_normal_log_cdf_interval(lo: Tensor, hi: Tensor) -> Tensor:
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails (lo = -inf, hi = +inf allowed)."""
    flip = lo > 0  # use Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi) to stay in the lower tail
    lo, hi = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


class GaussianDecoder:
    """p(x | z_1) = N(x; mean, std^2) for continuous data: a density, in nats."""

    def nll(self, x: Tensor, mean: Tensor, std: Tensor, event_dims: int) -> Tensor:
        """-log N(x; mean, std^2) summed over the event dims; [B]."""
        nll = 0.5 * ((x - mean) / std) ** 2 + torch.log(std) + 0.5 * math.log(2 * math.pi)
        return _sum_event(nll.expand_as(x), event_dims)


class DiscretizedGaussianDecoder:
    """p(x | z_1) for data on `levels` equally spaced values in [-1, 1] (Ho et al. 2020, eq. 13).

    Each value owns a bin of width 2 / (levels - 1); the edge bins extend to +-inf.
    8-bit images use levels=256, scikit-learn digits (values 0..16) levels=17.
    """

    def __init__(self, levels: int):
        self.levels = positive_int("levels", levels)
        if levels < 2:
            raise ValueError("levels must be at least 2")
        self.half_width = 1.0 / (levels - 1)

    def nll(self, x: Tensor, mean: Tensor, std: Tensor, event_dims: int) -> Tensor:
        """-log P(x) summed over the event dims; x must lie on the grid. [B]."""
        lo = torch.where(x <= -1 + 1e-6, -math.inf, (x - self.half_width - mean) / std)
        hi = torch.where(x >= 1 - 1e-6, math.inf, (x + self.half_width - mean) / std)
        return _sum_event(-standard_normal_log_cdf_interval(lo, hi), event_dims)


class VLBTerms(NamedTuple):
    """Per-example terms of the negative ELBO in nats, each [B]."""

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor

    @property
    def total(self) -> Tensor:
        return self.prior + self.diffusion + self.decoder


def prior_kl(process, x: Tensor, event_dims: int | None = None) -> Tensor:
    """KL(q(z_T | x) || N(0, I)) summed over the event dims; [B]."""
    event_dims = _event_dims(x, event_dims)
    T = torch.full(x.shape[: x.ndim - event_dims], process.schedule.T, device=x.device)
    mean, std = process.marginal(x, T)
    kl = gaussian_kl(mean, (std**2).expand_as(x), torch.zeros_like(x), torch.ones_like(x))
    return _sum_event(kl, event_dims)


def reverse_variance(process, t: Tensor, like: Tensor, kind: str) -> Tensor:
    """Variance of p(z_{t-1}|z_t): 'posterior' beta~_t or 'beta' beta_t, shaped to broadcast on `like`."""
    choose("reverse variance", kind, REVERSE_VARIANCES)
    sched = process.schedule
    table = sched.posterior_variance if kind == "posterior" else sched.beta
    return coefficient(table[t.long().cpu()], like)  # coefficient moves it to like's device


def diffusion_kl(denoiser, process, x: Tensor, t: Tensor, noise: Tensor, *,
                 variance: str = "posterior", event_dims: int | None = None) -> Tensor:
    """KL(q(z_{t-1}|z_t, x) || p(z_{t-1}|z_t)) at z_t = sample(x, t, noise), t >= 2; [B]."""
    event_dims = _event_dims(x, event_dims)
    z_t = process.sample(x, t, noise)
    mean_q, var_q = process.posterior(x, z_t, t, t - 1)
    mean_p = reverse_mean(denoiser, process, z_t, t)
    var_p = reverse_variance(process, t, x, variance)
    return _sum_event(gaussian_kl(mean_q, var_q.expand_as(x), mean_p, var_p.expand_as(x)), event_dims)


def decoder_nll(denoiser, process, x: Tensor, decoder, noise: Tensor, event_dims: int | None = None) -> Tensor:
    """-log p(x | z_1), z_1 = sample(x, 1, noise); decoder mean x0_hat(z_1, 1), std sqrt(beta_1). [B]."""
    event_dims = _event_dims(x, event_dims)
    one = torch.ones(x.shape[: x.ndim - event_dims], dtype=torch.long, device=x.device)
    return decoder_nll_at(denoiser, process, x, process.sample(x, one, noise), decoder, event_dims)


def reverse_mean(denoiser, process, z_t: Tensor, t: Tensor) -> Tensor:
    """Mean of p(z_{t-1} | z_t) = q(z_{t-1} | z_t, x = x0_hat(z_t, t)); shaped like z_t."""
    return process.posterior(denoiser(z_t, t), z_t, t, t - 1)[0]


def decoder_nll_at(denoiser, process, x: Tensor, z_1: Tensor, decoder, event_dims: int) -> Tensor:
    """-log p(x | z_1) for a given z_1: decoder mean x0_hat(z_1, 1) (F(x0_hat, 0)), std sqrt(beta_1); [B]."""
    one = torch.ones(x.shape[: x.ndim - event_dims], dtype=torch.long, device=x.device)
    std = coefficient(process.schedule.beta[1].sqrt().reshape(1), x)
    return decoder.nll(x, reverse_mean(denoiser, process, z_1, one), std, event_dims)


def vlb_terms(denoiser, process, x: Tensor, *, decoder, variance: str = "posterior", n_timesteps: int | None = None,
              generator=None, event_dims: int | None = None) -> VLBTerms:
    """The three terms of the negative ELBO for x: [B, ...], each [B] nats (discrete schedules).

    n_timesteps=None sums the KL over every t = 2..T (one z_t per t); an int K draws K steps
    uniformly from 2..T per example and rescales by (T - 1) / K (unbiased, cheaper).
    """
    event_dims = _event_dims(x, event_dims)
    T = process.schedule.T
    batch_shape = x.shape[: x.ndim - event_dims]
    noise = lambda: rng.randn(x.shape, x, generator)  # noqa: E731
    diffusion = torch.zeros(batch_shape, dtype=x.dtype, device=x.device)
    if T >= 2:
        if n_timesteps is None:
            steps, scale = [torch.full(batch_shape, t, device=x.device) for t in range(2, T + 1)], 1.0
        else:
            k = positive_int("n_timesteps", n_timesteps)
            steps = [rng.randint(2, T + 1, batch_shape, x, generator) for _ in range(k)]
            scale = (T - 1) / k
        for t in steps:
            diffusion = diffusion + diffusion_kl(denoiser, process, x, t, noise(), variance=variance,
                                                 event_dims=event_dims)
        diffusion = diffusion * scale
    return VLBTerms(
        prior=prior_kl(process, x, event_dims),
        diffusion=diffusion,
        decoder=decoder_nll(denoiser, process, x, decoder, noise(), event_dims),
    )


def nats_to_bits_per_dim(nats: Tensor, dims: int) -> Tensor:
    """Convert nats per example to bits per dimension: nats / (D ln 2)."""
    return nats / (dims * math.log(2))


def eps_kl_weights(schedule: DiscreteSchedule, variance: str = "posterior") -> Tensor:
    """w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), so KL_t = w_t ||eps - eps_hat||^2; [T + 1] float64.

    L_simple weights every t equally: it is the bound reweighted by 1 / w_t (chapter 1).
    Entries t < 2 (decoder and data) are 0.
    """
    choose("reverse variance", variance, REVERSE_VARIANCES)
    sigma2 = schedule.posterior_variance if variance == "posterior" else schedule.beta
    w = torch.zeros(schedule.T + 1, dtype=torch.float64)
    t = slice(2, None)
    w[t] = schedule.beta[t] ** 2 / (2 * sigma2[t] * schedule.alphas[t] * schedule.one_minus_alpha_bar[t])
    return w
