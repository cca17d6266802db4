"""Closed forms used as oracles for the bound (chapter 1).

For data x ~ N(m, diag(s^2)) and the exact denoiser x0_hat(z_t) = E[x | z_t], every term of the
discrete bound has an expectation in closed form. Per dimension j, the posterior variance of x
given z_t = alpha_t x + sigma_t eps is
    v_t,j = s_j^2 sigma_t^2 / (alpha_t^2 s_j^2 + sigma_t^2),
the reverse mean misses the true posterior mean by x_coef (x - x0_hat) (`StepCoefficients`), so
    E KL_(s,t)  = sum_j x_coef^2 v_t,j / (2 var_p) + D/2 [log(var_p / var_q) + var_q / var_p - 1]
    E prior     = 1/2 sum_j [alpha_1^2 (m_j^2 + s_j^2) + sigma_1^2 - 1 - log sigma_1^2]
    E decoder   = D/2 log(2 pi sigma_t1^2) + sum_j v_t1,j / (2 sigma_t1^2)
and the data's entropy is sum_j 1/2 log(2 pi e s_j^2): the expected gap (bound - NLL) is exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .objectives import REVERSE_VARIANCES, checked_grid
from .validation import choose


class GaussianBound(NamedTuple):
    """Expected terms of the negative ELBO in nats for Gaussian data and the exact denoiser.

    diffusion_terms: [K - 1] expected KL of each pair, in order of increasing time."""

    prior: float
    diffusion: float
    decoder: float
    entropy: float
    diffusion_terms: Tensor

    @property
    def total(self) -> float:
        return self.prior + self.diffusion + self.decoder

    @property
    def gap(self) -> float:
        """Expected bound minus expected NLL (the data's entropy): >= 0."""
        return self.total - self.entropy


def gaussian_bound(process, mean, var, times=None, variance: str = "posterior") -> GaussianBound:
    """The expected bound of x ~ N(mean, diag(var)) (mean, var: [D]) under the exact denoiser, on the
    grid `times` (default: every step of the process's discrete schedule), in closed form."""
    choose("reverse variance", variance, REVERSE_VARIANCES)
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    var = torch.as_tensor(var, dtype=torch.float64).reshape(-1).expand_as(mean)
    d = mean.numel()
    grid = checked_grid(process, times).flip(0)  # ascending: 0 = t_0 < t_1 < ... < t_K
    t, s = grid[2:], grid[1:-1]  # the pairs (t_{i-1}, t_i), i = 2..K

    def posterior_var(time: Tensor) -> Tensor:  # v_t,j: [*time, D]
        a2, s2 = process.alpha(time)[..., None] ** 2, process.sigma(time)[..., None] ** 2
        return var * s2 / (a2 * var + s2)

    c = process.step_coefficients(s, t)
    var_q = c.posterior_var
    var_p = var_q if variance == "posterior" else c.transition_var
    terms = (c.x_coef**2 * posterior_var(t).sum(-1) / (2 * var_p)
             + d / 2 * (torch.log(var_p / var_q) + var_q / var_p - 1))
    one = grid[-1]
    a1, s1 = process.alpha(one), process.sigma(one)
    prior = 0.5 * (a1**2 * (mean**2 + var) + s1**2 - 1 - torch.log(s1**2)).sum()
    t1 = grid[1]
    sigma2 = process.sigma(t1) ** 2
    decoder = d / 2 * torch.log(2 * math.pi * sigma2) + posterior_var(t1).sum() / (2 * sigma2)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * var).sum()
    return GaussianBound(float(prior), float(terms.sum()), float(decoder), float(entropy), terms)


def gaussian_model_nll(process, mean, var, x: Tensor, times=None, variance: str = "posterior") -> Tensor:
    """The model's own -log p_theta(x) in closed form, for the exact denoiser of x ~ N(mean, diag(var)).

    That denoiser is linear, x0_hat(z_t) = m + g_t (z_t - alpha_t m) with g_t = alpha_t s^2 / (alpha_t^2 s^2
    + sigma_t^2), so the reverse chain z_1 ~ N(0, I), z_s = x_coef x0_hat(z_t) + noise z_t + N(0, var_p),
    x ~ N(x0_hat(z_t1), sigma_t1^2) is linear-Gaussian and p_theta(x) = N(mu, P) per dimension, with
    mu and P propagated step by step. x: [B, D] -> [B] nats.
    """
    choose("reverse variance", variance, REVERSE_VARIANCES)
    m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    v = torch.as_tensor(var, dtype=torch.float64).reshape(-1).expand_as(m)
    grid = checked_grid(process, times)  # descending: 1 = t_K > ... > t_1 > 0

    def gain(t: Tensor) -> Tensor:
        a, s = process.alpha(t), process.sigma(t)
        return a * v / (a**2 * v + s**2)

    mu, P = torch.zeros_like(m), torch.ones_like(m)  # z at t_K = 1: N(0, I)
    for i in range(len(grid) - 2):
        t, s = grid[i], grid[i + 1]
        c = process.step_coefficients(s, t)
        g, a = gain(t), process.alpha(t)
        slope = c.x_coef * g + c.noise  # z_s = slope z_t + offset + noise
        offset = c.x_coef * (m - g * a * m)
        var_p = c.posterior_var if variance == "posterior" else c.transition_var
        mu, P = slope * mu + offset, slope**2 * P + var_p
    t1 = grid[-2]
    g, a = gain(t1), process.alpha(t1)
    mu_x, P_x = m + g * (mu - a * m), g**2 * P + process.sigma(t1) ** 2
    x = x.double()
    return 0.5 * ((x - mu_x) ** 2 / P_x + torch.log(2 * math.pi * P_x)).sum(-1)
