"""Checks that chapter 1 shows and the tests assert: one function each, so both run the same code.

- `forward_chain_check`: the closed-form marginal q(z_t | x) against the iterated one-step chain,
  exactly (moments propagated in float64) and by simulation (z-scores of simulated moments).
- `posterior_grid_check`: the closed-form posterior q(z_s | z_t, x) against Bayes' rule on a
  1-D grid (the normalised product q(z_t | z_s) q(z_s | x)).
- `elbo_gap_sweep`: bound minus exact NLL for data with an exact density, over step counts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from diffusion_study.core.objectives import GaussianDecoder, vlb_terms
from diffusion_study.core.processes import GaussianForward


class ChainCheck(NamedTuple):
    """exact_error: largest |difference| of the propagated moments from the closed form (all t);
    z_scores: [T, 2] largest |z| over the coordinates of the simulated mean and variance at each t."""

    exact_error: float
    z_scores: np.ndarray


def forward_chain_check(schedule, x0: Tensor, n_chains: int, generator=None) -> ChainCheck:
    """Iterate z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) eps for t = 1..T from x0: [1, D] (float64)
    and compare, at every t, with q(z_t | x0) = N(alpha_t x0, sigma_t^2 I) (chapter 1, eq. forward marginal)."""
    process = GaussianForward(schedule)
    mean, var = x0.clone(), torch.zeros((), dtype=torch.float64)
    x = x0.expand(n_chains, x0.shape[1]).clone()
    exact_err, z_scores = 0.0, []
    for t in range(1, schedule.T + 1):
        beta = schedule.beta[t]
        mean, var = (1 - beta).sqrt() * mean, (1 - beta) * var + beta
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        closed_mean, closed_std = process.marginal(x0, torch.tensor([t]))
        std = closed_std.item()
        exact_err = max(exact_err, (mean - closed_mean).abs().max().item(), abs(var.item() - std**2))
        se_mean, se_var = std / math.sqrt(n_chains), std**2 * math.sqrt(2 / (n_chains - 1))
        z_scores.append([((x.mean(0) - closed_mean[0]) / se_mean).abs().max().item(),
                         ((x.var(0) - std**2) / se_var).abs().max().item()])
    return ChainCheck(exact_err, np.array(z_scores))


class GridCheck(NamedTuple):
    """Closed-form posterior moments and Bayes-on-a-grid moments for one (x0, z_t, t, s)."""

    mean: float
    var: float
    grid_mean: float
    grid_var: float


def posterior_grid_check(schedule, x0: float, z_t: float, t: int, s: int | None = None,
                         points: int = 400_001, width: float = 12.0) -> GridCheck:
    """q(z_s | z_t, x0) (default s = t - 1, steps of a discrete schedule) in closed form and as the
    normalised product q(z_t | z_s) q(z_s | x0) on `points` grid points spanning +-`width` posterior
    standard deviations around the closed-form mean (1-D, float64; chapter 1)."""
    s = t - 1 if s is None else s
    process = GaussianForward(schedule)
    m, v = process.posterior(torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[z_t]], dtype=torch.float64),
                             torch.tensor([t]), torch.tensor([s]))
    c = process.step_coefficients(torch.tensor(s), torch.tensor(t))
    a_ts, var_ts = (c.alpha_t / c.alpha_s).item(), c.transition_var.item()
    a_s, var_s = c.alpha_s.item(), (1 - c.alpha_s**2).item()
    mean, var = m.item(), v.item()
    grid = torch.linspace(mean - width * math.sqrt(var), mean + width * math.sqrt(var), points, dtype=torch.float64)
    log_w = -0.5 * (z_t - a_ts * grid) ** 2 / var_ts - 0.5 * (grid - a_s * x0) ** 2 / var_s
    w = torch.softmax(log_w, 0)
    grid_mean = (w * grid).sum().item()
    return GridCheck(mean, var, grid_mean, (w * (grid - grid_mean) ** 2).sum().item())


def elbo_gap_sweep(data, x: Tensor, schedules: dict, steps: list[int], generator=None) -> dict[str, np.ndarray]:
    """Bound minus exact NLL, in nats per example, with the exact denoiser E[x0 | z_t] of `data`
    (a GaussianMixture) on its samples x: [N, D]. schedules: name -> builder(T) returning a
    schedule or None (a T the schedule cannot take). Returns name -> [len(steps), 2] of
    (mean, standard error); NaN where the builder gave None."""
    nll = -data.log_prob(x)
    out = {}
    for name, build in schedules.items():
        rows = []
        for T in steps:
            schedule = build(T)
            if schedule is None:
                rows.append((math.nan, math.nan))
                continue
            process = GaussianForward(schedule)
            gap = vlb_terms(data.denoiser(process), x, decoder=GaussianDecoder(), generator=generator).total - nll
            rows.append((gap.mean().item(), gap.std().item() / math.sqrt(len(x))))
        out[name] = np.array(rows)
    return out
