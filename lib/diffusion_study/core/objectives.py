"""Training objectives: the simple loss and the variational bound on any grid of times (chapter 1).

For a descending grid 1 = t_K > ... > t_1 > t_0 = 0 (every step i / T of a discrete
schedule, or any grid on a continuous one):
    -log p(x) <= L_prior + L_diffusion + L_decoder
    L_prior     = KL(q(z_1|x) || N(0, I))
    L_diffusion = sum_{i=2}^K E_q KL(q(z_{t_{i-1}}|z_{t_i}, x) || p(z_{t_{i-1}}|z_{t_i}))
    L_decoder   = -E_q log p(x | z_{t_1})
with p(z_s|z_t) = q(z_s|z_t, x = x0_hat(z_t, t)) (the posterior with the denoiser's guess:
DDPM's eps-parameterised mean and NDM's reverse process alike) and a reverse variance that is
either the posterior's s~^2 ('posterior', DDPM's beta~_t) or sigma_{t|s}^2 ('beta', beta_t).
As the grid refines, the sum tends to the continuous bound (`continuous_time.continuous_bound_terms`).
All terms are in nats per example, shape [*batch]; convert with `nats_to_bits_per_dim`, or
estimate a data set's bits/dim with `diffusion_study.core.likelihood.bits_per_dim`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from diffusion_study.base import rng
from diffusion_study.base.args import choose, positive_int
from diffusion_study.base.tensors import check_model_input
from diffusion_study.core import predictions
from diffusion_study.core.events import event_dims_of, sum_event
from diffusion_study.core.schedules import coefficient

REVERSE_VARIANCES = ("posterior", "beta")


def sample_time(schedule, shape, like: Tensor, generator=None) -> Tensor:
    """Training times of `shape` on `like`'s device, float64: t = i / T with i ~ U{1..T} for a
    discrete schedule, t ~ U(0, 1] for a continuous one."""
    if schedule.T is not None:
        return rng.randint(1, schedule.T + 1, shape, like, generator).double() / schedule.T
    return 1 - rng.rand(shape, like, generator)


LOSS_TARGETS = ("eps",)


def simple_loss(denoiser, x: Tensor, *, y: Tensor | None = None, generator=None, p_uncond: float = 0.0,
                target: str | None = None) -> Tensor:
    """The one noise-prediction loss: L_simple (Ho et al. 2020, eq. 14), mean over the event dims of a
    squared error at t ~ `sample_time` (the grid i / T of a discrete schedule, U(0, 1] of a continuous
    one), eps ~ N(0, I), z_t ~ q(z_t | x).

    target None: the denoiser's raw output(z_t, t) against the target it declares (`predictions.target`:
    eps, x0, v, ...). target 'eps': eps against eps_hat(z_t, t) = (z_t - alpha_t F(x0_hat, t)) / sigma_t
    (`Denoiser.eps`) through any forward process F, NDM's plain noise loss (chapter 4, claim N6: any F
    that forgets x makes it zero); for F = identity and an unclipped eps-predicting denoiser the two
    are the same number. x: [*batch, *event] ([B, D], [G, B, D] for an ensemble, [B, C, H, W]);
    returns [*batch]. With labels y and p_uncond > 0 each label is replaced by the null label with
    probability p_uncond (classifier-free guidance training).
    """
    check_model_input(denoiser, x, where="simple_loss: ", y=y)
    if target is not None:
        choose("loss target", target, LOSS_TARGETS)
    process = denoiser.process
    batch = denoiser.batch_shape(x)
    event_dims = x.ndim - len(batch)
    t = sample_time(process.schedule, batch, x, generator)
    eps = rng.randn(x.shape, x, generator)
    z = process.sample(x, t, eps)
    if y is not None and p_uncond > 0:
        drop = rng.rand(batch, x, generator) < p_uncond
        y = torch.where(drop, torch.full_like(y, denoiser.null_label), y)
    if target == "eps":
        err = (eps - denoiser.eps(z, t, y)) ** 2
    else:
        out = denoiser.output(z, t, y)
        alpha, sigma, step = denoiser.scales(t, x)
        err = (out - predictions.target(denoiser.prediction, x, eps, alpha, sigma, step)) ** 2
    return sum_event(err, event_dims) / math.prod(x.shape[len(batch):])


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


def _describe(x: Tensor) -> str:
    """A one-line picture of data: shape, range, number of distinct values."""
    finite = x[torch.isfinite(x)]
    span = f"values in [{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "no finite values"
    distinct = torch.unique(finite[:100_000]).numel()
    return f"data {tuple(x.shape)} {x.dtype}: {span}, {distinct} distinct values"


def check_finite(x: Tensor) -> None:
    """Raise ValueError, describing the data, unless x is non-empty and finite (one host sync)."""
    if x.numel() == 0:
        raise ValueError(f"data is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"data holds {bad} NaN or infinite values ({_describe(x)})")


class GaussianDecoder:
    """p(x | z_1) = N(x; mean, std^2) for continuous data: a density, in nats."""

    def check(self, x: Tensor) -> None:
        """Data for a density: non-empty and finite."""
        check_finite(x)

    def nll(self, x: Tensor, mean: Tensor, std: Tensor, event_dims: int) -> Tensor:
        """-log N(x; mean, std^2) summed over the event dims; [B]."""
        nll = 0.5 * ((x - mean) / std) ** 2 + torch.log(std) + 0.5 * math.log(2 * math.pi)
        return sum_event(nll.expand_as(x), event_dims)


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

    def check(self, x: Tensor) -> None:
        """Data must be finite and lie on the decoder's grid -1 + 2k / (levels - 1), k = 0..levels-1;
        otherwise raise ValueError saying what the data look like and what is expected."""
        check_finite(x)
        k = (x.double() + 1) * (self.levels - 1) / 2
        off_grid = (k - k.round()).abs() > 1e-3
        if x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6 or off_grid.any():
            hint = ""
            if x.min() >= 0 and x.max() <= 1:
                hint = "; they look scaled to [0, 1]: map them with 2 x - 1"
            elif x.min() >= 0 and torch.equal(x, x.round()):
                hint = f"; they look like raw integer levels: map them with images.from_uint(x, {int(x.max()) + 1})"
            else:
                for levels in (2, 17, 256):
                    kk = (x.double() + 1) * (levels - 1) / 2
                    if levels != self.levels and x.min() >= -1 and x.max() <= 1 and ((kk - kk.round()).abs() <= 1e-3).all():
                        hint = f"; they lie on a {levels}-level grid: use DiscretizedGaussianDecoder({levels})"
                        break
            raise ValueError(f"DiscretizedGaussianDecoder({self.levels}) expects data on the {self.levels} values "
                             f"-1 + 2k/{self.levels - 1} in [-1, 1]; got {_describe(x)}"
                             f"{f', {int(off_grid.sum())} off the grid' if off_grid.any() else ''}{hint}")

    def nll(self, x: Tensor, mean: Tensor, std: Tensor, event_dims: int) -> Tensor:
        """-log P(x) summed over the event dims; x must lie on the grid (see `check`). [B]."""
        lo = torch.where(x <= -1 + 1e-6, -math.inf, (x - self.half_width - mean) / std)
        hi = torch.where(x >= 1 - 1e-6, math.inf, (x + self.half_width - mean) / std)
        return sum_event(-standard_normal_log_cdf_interval(lo, hi), event_dims)


class VLBTerms(NamedTuple):
    """Per-example terms of the negative ELBO in nats, each [*batch]."""

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor

    @property
    def total(self) -> Tensor:
        return self.prior + self.diffusion + self.decoder


def refuse_noise_free(process) -> None:
    """ValueError for a forward process without noise (sigma = 0): every bound is infinite there."""
    if getattr(process, "noise_free", False):
        raise ValueError(f"the variational bound is infinite for {type(process).__name__} (sigma = 0: "
                         "a KL between point masses); use a noisy forward process")


def checked_grid(process, times) -> Tensor:
    """A descending grid of times from `times` (default: every step of a discrete schedule), checked once."""
    grid = process.schedule.grid() if times is None else process.schedule.check_times(times)
    if grid.ndim != 1 or len(grid) < 2 or not (torch.diff(grid) < 0).all() or grid[-1] != 0:
        raise ValueError("times must be a descending 1-D grid ending at 0, e.g. schedule.grid(steps)")
    return grid


def prior_kl(process, x: Tensor, event_dims: int | None = None, t=1.0) -> Tensor:
    """KL(q(z_t | x) || N(0, I)) at the last time t (default 1), summed over the event dims; [*batch]."""
    event_dims = event_dims_of(x, event_dims)
    mean, std = process.marginal(x, torch.as_tensor(t, dtype=torch.float64))
    kl = gaussian_kl(mean, (std**2).expand_as(x), torch.zeros_like(x), torch.ones_like(x))
    return sum_event(kl, event_dims)


def reverse_variance(process, s, t, kind: str = "posterior") -> Tensor:
    """Variance of p(z_s | z_t): 'posterior' s~^2 (DDPM's beta~_t) or 'beta' sigma_{t|s}^2 (beta_t); float64."""
    choose("reverse variance", kind, REVERSE_VARIANCES)
    c = process.step_coefficients(s, t)
    return c.posterior_var if kind == "posterior" else c.transition_var


def diffusion_kl(denoiser, x: Tensor, s, t, noise: Tensor, *, variance: str = "posterior",
                 event_dims: int | None = None, y: Tensor | None = None) -> Tensor:
    """KL(q(z_s | z_t, x) || p(z_s | z_t)) at z_t = sample(x, t, noise), s < t; [*batch] nats.

    p(z_s | z_t) = q(z_s | z_t, x = x0_hat(z_t, t)) with variance `variance`. F is called
    twice: once for (x, t) and (x, s) stacked, once for (x0_hat, t) and (x0_hat, s) (x0_hat
    depends on z_t, which depends on F(x, t), so no fewer calls are possible).
    """
    event_dims = event_dims_of(x, event_dims, denoiser)
    process = denoiser.process
    c = process.step_coefficients(s, t)
    f_t, f_s = process.transform_pairs([(x, t), (x, s)])
    z_t = coefficient(c.alpha_t, x) * f_t + coefficient(c.sigma_t, x) * noise
    x0_hat = denoiser(z_t, t, y)
    g_t, g_s = process.transform_pairs([(x0_hat, t), (x0_hat, s)])
    mean_q = process.mean_from_transforms(c, f_s, f_t, z_t)
    mean_p = process.mean_from_transforms(c, g_s, g_t, z_t)
    var_q = coefficient(c.posterior_var, x).expand_as(x)
    var_p = var_q if variance == "posterior" else coefficient(reverse_variance(process, s, t, variance), x).expand_as(x)
    return sum_event(gaussian_kl(mean_q, var_q, mean_p, var_p), event_dims)


def decoder_nll_at(denoiser, x: Tensor, z: Tensor, t, decoder, event_dims: int, y: Tensor | None = None) -> Tensor:
    """-log p(x | z_t) for a given z_t: mean F(x0_hat(z_t, t), 0) = x0_hat, std sigma_{t|0} = sigma_t; [*batch]."""
    std = coefficient(denoiser.process.sigma(t), x)
    return decoder.nll(x, denoiser(z, t, y), std, event_dims)


def vlb_terms(denoiser, x: Tensor, *, decoder, times=None, variance: str = "posterior",
              n_timesteps: int | None = None, generator=None, event_dims: int | None = None,
              y: Tensor | None = None) -> VLBTerms:
    """The three terms of the negative ELBO on a grid of times, each [*batch] nats (chapter 1).

    times: descending grid 1 = t_K > ... > t_1 > t_0 = 0 (default: every step of a discrete
    schedule; `schedule.grid(K)` for a continuous one). prior = KL(q(z_1|x) || N(0, I));
    diffusion = sum over the pairs (t_{i-1}, t_i), i = 2..K, of `diffusion_kl` (one z per
    pair); decoder = -log p(x | z_{t_1}). n_timesteps=None sums every pair; an int M draws M
    pairs uniformly per example and rescales by (K - 1) / M (unbiased, cheaper).
    """
    check_model_input(denoiser, x, where="vlb_terms: ", y=y)
    event_dims = event_dims_of(x, event_dims, denoiser)
    process = denoiser.process
    refuse_noise_free(process)
    choose("reverse variance", variance, REVERSE_VARIANCES)
    grid = checked_grid(process, times).to(x.device)
    K, batch = len(grid) - 1, x.shape[: x.ndim - event_dims]
    noise = lambda: rng.randn(x.shape, x, generator)  # noqa: E731
    diffusion = torch.zeros(batch, dtype=x.dtype, device=x.device)
    if K >= 2:
        # pair i = (t_{i-1}, t_i) = (grid[K - i + 1], grid[K - i]), in order of increasing time
        if n_timesteps is None:
            pairs, scale = [(grid[K - i + 1], grid[K - i]) for i in range(2, K + 1)], 1.0
        else:
            m = positive_int("n_timesteps", n_timesteps)
            index = [rng.randint(2, K + 1, batch, x, generator) for _ in range(m)]
            pairs, scale = [(grid[K - i + 1], grid[K - i]) for i in index], (K - 1) / m
        for s, t in pairs:
            diffusion = diffusion + diffusion_kl(denoiser, x, s, t, noise(), variance=variance,
                                                 event_dims=event_dims, y=y)
        diffusion = diffusion * scale
    t_1 = grid[-2]
    return VLBTerms(
        prior=prior_kl(process, x, event_dims, grid[0]),
        diffusion=diffusion,
        decoder=decoder_nll_at(denoiser, x, process.sample(x, t_1, noise()), t_1, decoder, event_dims, y),
    )


def nats_to_bits_per_dim(nats: Tensor, dims: int) -> Tensor:
    """Convert nats per example to bits per dimension: nats / (D ln 2)."""
    return nats / (dims * math.log(2))


def eps_kl_weights(schedule, variance: str = "posterior") -> Tensor:
    """w_i = beta_i^2 / (2 sigma_i^2 alpha_i (1 - alpha_bar_i)), so KL_i = w_i ||eps - eps_hat||^2; [T + 1] float64.

    For a discrete schedule (DDPM's tables, indexed by step). L_simple weights every step
    equally: it is the bound reweighted by 1 / w_i (chapter 1). Entries i < 2 (decoder, data) are 0.
    """
    choose("reverse variance", variance, REVERSE_VARIANCES)
    if schedule.T is None:
        raise ValueError("eps_kl_weights needs a discrete schedule")
    sigma2 = schedule.posterior_variance if variance == "posterior" else schedule.beta
    w = torch.zeros(schedule.T + 1, dtype=torch.float64)
    i = slice(2, None)
    w[i] = schedule.beta[i] ** 2 / (2 * sigma2[i] * schedule.alphas[i] * schedule.one_minus_alpha_bar[i])
    return w
