"""Closed forms used as oracles for the bound, and the exact reverse step of a mixture (chapter 1).

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

from diffusion_study.base.args import choose
from diffusion_study.core.objectives import REVERSE_VARIANCES, checked_grid


class GaussianBound(NamedTuple):
    """Expected terms of the negative ELBO in nats for Gaussian data and the exact denoiser.

    diffusion_terms: [K - 1] expected KL of each pair, in order of increasing time."""

    prior: float
    diffusion: float
    decoder: float
    entropy: float
    diffusion_terms: Tensor

    total = property(lambda self: self.prior + self.diffusion + self.decoder, doc="prior + diffusion + decoder")

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


class StepKL(NamedTuple):
    """E over z_t ~ q(z_t) of KL(q(z_s | z_t) || Gaussian), nats, each (mean, standard error):
    shape: against the moment-matched Gaussian (full covariance): the cost of non-Gaussianity alone;
    fixed: against N(exact mean, var_q I), DDPM's reverse step with the exact mean and beta~;
    optimal: against N(exact mean, v* I), v* the optimal isotropic variance (Bao et al. 2022)."""

    shape: tuple[float, float]
    fixed: tuple[float, float]
    optimal: tuple[float, float]


def _log_normal(z: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(z; mean, cov) over the last dim, broadcasting; cov [..., D, D]."""
    chol = torch.linalg.cholesky(cov)
    diff = (z - mean).unsqueeze(-1)
    sol = torch.linalg.solve_triangular(chol.expand(diff.shape[:-2] + chol.shape[-2:]), diff, upper=False)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * ((sol**2).sum((-2, -1)) + logdet + z.shape[-1] * math.log(2 * math.pi))


def reverse_step_kl(mixture, process, s, t, n: int = 2000, m: int = 32, generator=None) -> StepKL:
    """How far the exact reverse step q(z_s | z_t) of a Gaussian-mixture data law is from Gaussian.

    q(z_s | z_t) = sum_k r_k(z_t) N(x_coef m_k(z_t) + noise z_t, x_coef^2 P_k + var_q I), with r_k, m_k, P_k
    the component responsibilities, posterior means and covariances of x given z_t: an exact Gaussian
    mixture. Each KL is E_{z_s ~ q}[log q(z_s|z_t) - log N(z_s; ...)] by Monte Carlo (n values of z_t,
    m of z_s each): the log-ratio estimator, whose noise vanishes as q becomes Gaussian.
    """
    s, t = (torch.as_tensor(v, dtype=torch.float64) for v in (s, t))
    c = process.step_coefficients(s, t)
    a, sg = process.alpha(t), process.sigma(t)
    x = mixture.sample(n, generator).double()
    z_t = a * x + sg * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    D, eye = mixture.dim, torch.eye(mixture.dim, dtype=torch.float64)
    C = a**2 * mixture.covs + sg**2 * eye  # [K, D, D]
    gain = a * mixture.covs @ torch.linalg.inv(C)  # S_k C_k^{-1} alpha: [K, D, D]
    m_k = mixture.means + ((z_t[:, None, :] - a * mixture.means)[..., None, :] @ gain.transpose(-1, -2))[..., 0, :]
    P_k = mixture.covs - a * gain @ mixture.covs  # [K, D, D]
    r = mixture.responsibilities(z_t, a, sg)  # [n, K]
    means = c.x_coef * m_k + c.noise * z_t[:, None, :]  # [n, K, D]
    covs = c.x_coef**2 * P_k + c.posterior_var * eye  # [K, D, D]
    mu = (r[..., None] * means).sum(1)  # [n, D], the exact E[z_s | z_t]
    second = (r[..., None, None] * (covs + means[..., :, None] * means[..., None, :])).sum(1)
    sigma = second - mu[..., :, None] * mu[..., None, :]  # [n, D, D]
    # z_s ~ q(z_s | z_t): m draws per z_t
    k = torch.multinomial(r, m, replacement=True, generator=generator)  # [n, m]
    eps = torch.randn(n, m, D, 1, generator=generator, dtype=torch.float64)
    z_s = torch.gather(means, 1, k[..., None].expand(n, m, D)) + (torch.linalg.cholesky(covs)[k] @ eps)[..., 0]
    log_q = torch.logsumexp(torch.log(r)[:, None, :] + _log_normal(z_s[:, :, None, :], means[:, None], covs), -1)
    v_opt = torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1).mean() / D
    refs = {"shape": (mu, sigma), "fixed": (mu, c.posterior_var * eye), "optimal": (mu, v_opt * eye)}
    out = {}
    for name, (mean, cov) in refs.items():
        per_z = (log_q - _log_normal(z_s, mean[:, None, :], cov if cov.ndim == 2 else cov[:, None])).mean(1)
        out[name] = (per_z.mean().item(), per_z.std().item() / math.sqrt(n))
    return StepKL(**out)
