"""Likelihood in bits/dim: the discrete variational bound over a data set, with its error bar.

    from diffusion_study.likelihood import bits_per_dim
    result = bits_per_dim(denoiser, process, test_images, decoder=DiscretizedGaussianDecoder(256))
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

from . import rng
from .objectives import VLBTerms, decoder_nll_at, nats_to_bits_per_dim, reverse_mean, reverse_variance, vlb_terms
from .schedules import coefficient
from .validation import positive_int


@dataclass(frozen=True)
class BitsPerDim:
    """Mean and standard error of the bound in bits/dim over `n` examples, with the mean of each term."""

    mean: float
    stderr: float
    n: int
    terms: dict[str, float]
    per_example: Tensor  # [n] bits/dim

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.terms.items())
        return f"{self.mean:.3f} +- {self.stderr:.3f} bits/dim (n={self.n}; {parts})"


@torch.no_grad()
def bits_per_dim(denoiser, process, data: Tensor, *, decoder, batch_size: int = 256, n_timesteps: int | None = None,
                 variance: str = "posterior", generator=None, progress: bool = False) -> BitsPerDim:
    """Negative ELBO of `data` [N, ...] in bits/dim: mean, standard error and per-term means.

    `denoiser(z, t) -> x0_hat` (a `Denoiser` or an exact oracle); `decoder` a
    `GaussianDecoder` (continuous data) or `DiscretizedGaussianDecoder(levels)`.
    n_timesteps=None evaluates every KL term; an int K samples K steps per example.
    """
    batch_size = positive_int("batch_size", batch_size)
    dims = math.prod(data.shape[1:])
    chunks = []
    batches = data.split(batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="bits/dim")
    for x in batches:
        terms = vlb_terms(denoiser, process, x, decoder=decoder, variance=variance, n_timesteps=n_timesteps,
                          generator=generator)
        chunks.append(torch.stack([nats_to_bits_per_dim(v, dims) for v in terms], dim=1))
    per_term = torch.cat(chunks).double()  # [N, 3]
    total = per_term.sum(1)
    n = total.numel()
    stderr = float(total.std() / math.sqrt(n)) if n > 1 else float("nan")
    means = per_term.mean(0)
    return BitsPerDim(float(total.mean()), stderr, n, dict(zip(VLBTerms._fields, means.tolist())), total)


@torch.no_grad()
def elbo_monte_carlo(denoiser, process, x: Tensor, *, decoder, variance: str = "posterior",
                     generator=None) -> Tensor:
    """Direct estimate of -[log p(x, z_{1:T}) - log q(z_{1:T} | x)] along one forward chain; [B] nats.

    z_1..z_T are drawn by iterating the one-step chain q(z_t|z_{t-1}) (Gaussian forward
    process only), then every log-density is evaluated: log N(z_T; 0, I)
    + sum_{t>=2} log p(z_{t-1}|z_t) + log p(x|z_1) - sum_t log q(z_t|z_{t-1}).
    Its mean equals `vlb_terms(...).total`'s; its variance is much larger (chapter 1).
    """
    sched = process.schedule
    T, B = sched.T, x.shape[0]
    event = tuple(range(1, x.ndim))
    log_normal = lambda v, mean, var: (-0.5 * ((v - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(event)  # noqa: E731
    zs, log_q = [x], torch.zeros(B, dtype=x.dtype)
    for t in range(1, T + 1):
        beta = coefficient(sched.beta[t].reshape(1), x)
        mean = (1 - beta).sqrt() * zs[-1]
        z = mean + beta.sqrt() * rng.randn(x.shape, x, generator)
        log_q = log_q + log_normal(z, mean, beta)
        zs.append(z)
    log_p = log_normal(zs[T], torch.zeros_like(x), torch.ones_like(x))
    for t in range(2, T + 1):
        tt = torch.full((B,), t)
        mean_p = reverse_mean(denoiser, process, zs[t], tt)
        log_p = log_p + log_normal(zs[t - 1], mean_p, reverse_variance(process, tt, x, variance))
    log_p = log_p - decoder_nll_at(denoiser, process, x, zs[1], decoder, x.ndim - 1)
    return -(log_p - log_q)

