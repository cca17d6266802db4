"""The continuous-time coefficients of any forward process q(z_t | x) = N(alpha_t F(x, t), sigma_t^2 I) (chapter 4).

One place for what the continuous bound (`continuous_time.continuous_bound_terms`) and the probability-flow
ODE (`ode`) share: alpha_t, sigma_t, their time derivatives and g^2(t) (`sde_coefficients`), F with its time
derivative dF/dt (`transform_with_velocity`: (x, 0) for F = identity, forward-mode AD otherwise), the mean
m_t = alpha_t F and its velocity m'_t (`mean_and_velocity`), and the reverse drift's difference
(`drift_difference`). Schedule constants are float64 and cast once where they meet the data.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import jvp

from diffusion_study.core.schedules import coefficient


class SDECoefficients(NamedTuple):
    """alpha_t, sigma_t, their time derivatives and g^2(t) = -sigma_t^2 lambda'(t): float64, shape of t.

    For a variance-preserving schedule alpha^2 = sigmoid(lambda): alpha' = alpha sigma^2 lambda' / 2,
    sigma' = -sigma alpha^2 lambda' / 2.
    """

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor
    g2: Tensor

    @property
    def drift_scale(self) -> Tensor:
        """a_t + g^2 / sigma_t^2, the factor of (z - m_t(x)) in the reverse drift f."""
        return self.d_sigma / self.sigma + self.g2 / (2 * self.sigma**2)

    @property
    def flow_scale(self) -> Tensor:
        """a_t + g^2 / (2 sigma_t^2) = sigma'_t / sigma_t, the factor of (z - m_t(x_hat)) in the flow."""
        return self.d_sigma / self.sigma


def sde_coefficients(schedule, t) -> SDECoefficients:
    """The coefficients of the continuous-time process at times t (a continuous schedule)."""
    if schedule.T is not None:
        raise ValueError("the continuous-time NDM needs a continuous schedule (continuous_schedule)")
    t = schedule.to_time(t)
    lam, d_lam = schedule.log_snr(t), schedule.d_log_snr(t)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    alpha, sigma = a2.sqrt(), s2.sqrt()
    return SDECoefficients(alpha, sigma, alpha * s2 * d_lam / 2, -sigma * a2 * d_lam / 2, -s2 * d_lam)


def _stack(pairs: list[tuple[Tensor, Tensor]], batch_dims: int) -> tuple[Tensor, Tensor, int, int]:
    """The pairs (x, t) stacked on the last batch dim: xs, float64 times ts of xs's batch shape."""
    x0 = pairs[0][0]
    dim = batch_dims - 1
    batch = x0.shape[:batch_dims]
    xs = torch.cat([x for x, _ in pairs], dim=dim)
    ts = torch.cat([torch.as_tensor(t, dtype=torch.float64, device=x0.device).expand(batch) for _, t in pairs], dim=dim)
    return xs, ts, dim, x0.shape[dim]


def transform_with_velocity(process, pairs: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
    """[(F(x, t), dF/dt(x, t)) for (x, t) in pairs] in one call of F, by forward-mode AD (torch.func.jvp).

    x: [*batch, *event]; t float64, of the batch shape or 0-dim. GaussianForward: (x, 0) without a
    call; StraightForward: (c_t x, c'_t x) by autograd of the scale. Differentiable in F's parameters.
    """
    if process.is_identity:
        return [(x, torch.zeros_like(x)) for x, _ in pairs]
    if hasattr(process, "transform_velocity"):  # closed-form transforms: no network to batch
        return [process.transform_velocity(x, t) for x, t in pairs]
    x0 = pairs[0][0]
    batch_dims = x0.ndim - getattr(getattr(process, "net", None), "event_dims", x0.ndim - 1)
    xs, ts, dim, size = _stack(pairs, batch_dims)
    f, df = jvp(lambda tau: process.transform(xs, tau), (ts,), (torch.ones_like(ts),))
    return list(zip(f.split(size, dim=dim), df.split(size, dim=dim)))


def mean_and_velocity(sde: SDECoefficients, f: Tensor, df: Tensor) -> tuple[Tensor, Tensor]:
    """m_t = alpha_t F and m'_t = alpha'_t F + alpha_t dF/dt, shaped like f."""
    alpha, d_alpha = coefficient(sde.alpha, f), coefficient(sde.d_alpha, f)
    return alpha * f, d_alpha * f + alpha * df


def drift_difference(sde: SDECoefficients, m: Tensor, dm: Tensor, m_hat: Tensor, dm_hat: Tensor) -> Tensor:
    """f(z, t, x) - f(z, t, x_hat) = -(a_t + g^2/sigma_t^2)(m - m_hat) + (m' - m'_hat): z cancels."""
    return coefficient(sde.drift_scale, m) * (m_hat - m) + (dm - dm_hat)
