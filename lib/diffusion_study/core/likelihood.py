"""Likelihood in bits/dim: the discrete variational bound over a data set, with its error bar.

    from diffusion_study.core.likelihood import bits_per_dim
    result = bits_per_dim(denoiser, test_images, decoder=DiscretizedGaussianDecoder(256))
    print(f"{result.mean:.3f} +- {result.stderr:.3f} bits/dim", result.terms)

The estimate is an upper bound on -log2 p(x) / D in expectation; its standard error covers
both the spread over examples and the Monte-Carlo noise of z_t (and of t, when sampled).
Validated in tests against the exact density of Gaussian data (chapter 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusion_study.base import rng
from diffusion_study.base.args import positive_int
from diffusion_study.base.tensors import check_model_input
from diffusion_study.core.events import event_dims_of
from diffusion_study.core.objectives import (
    VLBTerms,
    check_finite,
    checked_grid,
    decoder_nll_at,
    nats_to_bits_per_dim,
    reverse_variance,
    vlb_terms,
)
from diffusion_study.core.schedules import coefficient


@dataclass(frozen=True)
class BitsPerDim:
    """The bound in bits/dim over `n` examples: mean and standard error (floats for one model,
    tensors [*models] for an ensemble), the mean of each term, and the per-example values."""

    mean: float | Tensor
    stderr: float | Tensor
    n: int
    terms: dict[str, float | Tensor]
    per_example: Tensor  # [*models, n] bits/dim

    def __str__(self) -> str:
        if isinstance(self.mean, Tensor):
            return f"{self.mean.tolist()} +- {self.stderr.tolist()} bits/dim (n={self.n} per model)"
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.terms.items())
        return f"{self.mean:.3f} +- {self.stderr:.3f} bits/dim (n={self.n}; {parts})"


def _scalar_or_tensor(v: Tensor):
    return float(v) if v.ndim == 0 else v


@torch.no_grad()
def bits_per_dim(denoiser, data: Tensor, *, decoder, batch_size: int = 256, times=None,
                 n_timesteps: int | None = None, variance: str = "posterior", generator=None,
                 progress: bool = False, event_dims: int | None = None) -> BitsPerDim:
    """Negative ELBO of `data` in bits/dim: mean, standard error and per-term means.

    data: [N, *event] for one model, or [*models, N, *event] for an ensemble denoiser
    (e.g. [G, N, D] for an `EnsembleMLP`; event_dims from the network). `denoiser(z, t) ->
    x0_hat` is a `Denoiser` or an `Oracle`; `decoder` a `GaussianDecoder` (continuous data) or
    `DiscretizedGaussianDecoder(levels)`. times / n_timesteps as in `vlb_terms`.
    """
    batch_size = positive_int("batch_size", batch_size)
    check_model_input(denoiser, data, name="data", where="bits_per_dim: ")
    getattr(decoder, "check", check_finite)(data)  # range, grid, finiteness: once per call, before any work
    event_dims = event_dims_of(data, event_dims, denoiser)
    axis = data.ndim - event_dims - 1  # the examples' axis
    dims = math.prod(data.shape[axis + 1:])
    chunks = []
    batches = data.split(batch_size, dim=axis)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="bits/dim")
    for x in batches:
        terms = vlb_terms(denoiser, x, decoder=decoder, times=times, variance=variance, n_timesteps=n_timesteps,
                          generator=generator, event_dims=event_dims)
        chunks.append(torch.stack([nats_to_bits_per_dim(v, dims) for v in terms], dim=-1))
    per_term = torch.cat(chunks, dim=-2).double()  # [*models, N, 3]
    total = per_term.sum(-1)
    n = total.shape[-1]
    stderr = total.std(-1) / math.sqrt(n) if n > 1 else torch.full(total.shape[:-1], math.nan)
    means = per_term.mean(-2)
    terms = {k: _scalar_or_tensor(means[..., i]) for i, k in enumerate(VLBTerms._fields)}
    return BitsPerDim(_scalar_or_tensor(total.mean(-1)), _scalar_or_tensor(stderr), n, terms, total)


@torch.no_grad()
def elbo_monte_carlo(denoiser, x: Tensor, *, decoder, times=None, variance: str = "posterior",
                     generator=None) -> Tensor:
    """Direct estimate of -[log p(x, z_{1:K}) - log q(z_{1:K} | x)] along one forward chain; [B] nats.

    z_{t_1}, ..., z_{t_K} are drawn by iterating the one-step transitions
    q(z_t | z_s) = N(alpha_t / alpha_s z_s, sigma_{t|s}^2 I) over the grid (Gaussian forward
    process only), then every log-density is evaluated: log N(z_1; 0, I)
    + sum_{i>=2} log p(z_{t_{i-1}} | z_{t_i}) + log p(x | z_{t_1}) - sum_i log q(z_{t_i} | z_{t_{i-1}}).
    Its mean equals `vlb_terms(...).total`'s; its variance is larger (chapter 1).
    """
    return -chain_log_weights(denoiser, x, decoder=decoder, times=times, variance=variance, generator=generator)


def chain_log_weights(denoiser, x: Tensor, *, decoder, times=None, variance: str = "posterior",
                      generator=None) -> Tensor:
    """log w = log p(x, z_{1:K}) - log q(z_{1:K} | x) along one forward chain per example; [B] nats.

    E[w] = p(x) exactly, so log w is the one-sample ELBO and log mean_k w_k the importance-weighted
    bound (Burda et al. 2016) that rises to log p(x) as the number of chains grows (chapter 1).
    """
    process = denoiser.process
    grid = checked_grid(process, times).flip(0).to(x.device)  # ascending: 0 = t_0 < t_1 < ... < t_K = 1
    K, B = len(grid) - 1, x.shape[0]
    event = tuple(range(1, x.ndim))
    log_normal = lambda v, mean, var: (-0.5 * ((v - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(event)  # noqa: E731
    zs, log_q = [x], torch.zeros(B, dtype=x.dtype, device=x.device)
    for i in range(1, K + 1):
        c = process.step_coefficients(grid[i - 1], grid[i])
        mean = coefficient(c.alpha_t / c.alpha_s, x) * zs[-1]
        var = coefficient(c.transition_var, x)
        z = mean + var.sqrt() * rng.randn(x.shape, x, generator)
        log_q = log_q + log_normal(z, mean, var)
        zs.append(z)
    log_p = log_normal(zs[K], torch.zeros_like(x), torch.ones_like(x))
    for i in range(2, K + 1):
        s, t = grid[i - 1], grid[i]
        c = process.step_coefficients(s, t)
        mean_p = process.posterior_mean(c, denoiser(zs[i], t), zs[i], s, t)
        log_p = log_p + log_normal(zs[i - 1], mean_p, coefficient(reverse_variance(process, s, t, variance), x))
    log_p = log_p - decoder_nll_at(denoiser, x, zs[1], grid[1], decoder, x.ndim - 1)
    return log_p - log_q


@torch.no_grad()
def importance_weighted_nll(denoiser, x: Tensor, *, decoder, k: int, times=None, variance: str = "posterior",
                            generator=None, chunk: int = 64) -> Tensor:
    """-log (1/k sum_j w_j) with k forward chains per example: an upper bound on the model's own
    -log p_theta(x) that decreases to it as k grows (k = 1 is the ELBO); [B] nats. x: [B, *event];
    the chains run `chunk` at a time (memory k B is not needed at once)."""
    k, chunk = positive_int("k", k), positive_int("chunk", chunk)
    parts = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        rep = x.repeat((n,) + (1,) * (x.ndim - 1))  # [n B, *event], chain j of example b at j B + b
        parts.append(chain_log_weights(denoiser, rep, decoder=decoder, times=times, variance=variance,
                                       generator=generator).reshape(n, len(x)))
    log_w = torch.cat(parts)  # [k, B]
    return -(torch.logsumexp(log_w, 0) - math.log(k))
