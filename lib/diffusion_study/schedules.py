"""Noise schedules: how much signal alpha and noise sigma a latent carries at each time.

All schedules here are variance preserving: alpha^2 + sigma^2 = 1, so one number per time,
the log signal-to-noise ratio lambda = log(alpha^2 / sigma^2), defines everything:
alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda). Constants are computed in float64
and cast once at the boundary (`coefficient`). Derived in chapter 1 (the forward process).

Two views of the same object:
- `DiscreteSchedule`: T steps, indexed t = 0..T, t = 0 being the data (alpha_bar_0 = 1).
  This is DDPM's notation: beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s.
- `ContinuousSchedule`: t in [0, 1], given by its log-SNR function.
Both answer `alpha(t)`, `sigma(t)`, `log_snr(t)` and `time(t)` (continuous time in [0, 1]),
so the forward processes work with either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .validation import choose, positive_int

SCHEDULES = ("linear", "cosine", "logsnr_cosine")
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal's cosine schedule
COSINE_MAX_BETA = 0.999


def _f64(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# Discrete time (DDPM)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscreteSchedule:
    """A T-step variance-preserving schedule. `log_alpha_bar`: float64 [T + 1], entry 0 = 0.

    Indexing follows the papers: `beta[t]` is beta_t for t = 1..T (entry 0 is 0).
    """

    name: str
    log_alpha_bar: Tensor  # [T + 1], float64, log_alpha_bar[0] = 0, strictly decreasing

    def __post_init__(self):
        lab = self.log_alpha_bar
        assert lab.dtype == torch.float64 and lab.ndim == 1 and lab[0] == 0, "bad log_alpha_bar"

    @property
    def T(self) -> int:
        return self.log_alpha_bar.numel() - 1

    # Tables over t = 0..T ------------------------------------------------------------
    @property
    def alpha_bar(self) -> Tensor:
        """alpha_bar_t = prod_{s<=t} (1 - beta_s), [T + 1]."""
        return self.log_alpha_bar.exp()

    @property
    def one_minus_alpha_bar(self) -> Tensor:
        """1 - alpha_bar_t without cancellation near t = 0, [T + 1]."""
        return -torch.expm1(self.log_alpha_bar)

    @property
    def beta(self) -> Tensor:
        """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}; entry 0 is 0. [T + 1]."""
        step = torch.diff(self.log_alpha_bar, prepend=_f64([0.0]))
        return -torch.expm1(step)

    @property
    def alphas(self) -> Tensor:
        """alpha_t = 1 - beta_t (DDPM's per-step alpha, not the signal scale), [T + 1]."""
        return 1 - self.beta

    @property
    def posterior_variance(self) -> Tensor:
        """beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t for t >= 1; entry 0 is 0."""
        omab = self.one_minus_alpha_bar
        out = torch.zeros_like(omab)
        out[1:] = omab[:-1] / omab[1:] * self.beta[1:]
        return out

    # Per-index lookups (t: integer tensor of any shape) -------------------------------
    def _at(self, table: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point:
            raise TypeError("DiscreteSchedule is indexed by integer steps t in 0..T")
        if (t < 0).any() or (t > self.T).any():
            raise ValueError(f"step index out of range 0..{self.T}")
        return table[t.long().cpu()].to(t.device)

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale sqrt(alpha_bar_t), float64, shape of t."""
        return self._at((0.5 * self.log_alpha_bar).exp(), t)

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale sqrt(1 - alpha_bar_t), float64, shape of t."""
        return self._at(self.one_minus_alpha_bar.sqrt(), t)

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda_t = log alpha_bar_t - log(1 - alpha_bar_t); +inf at t = 0."""
        return self._at(self.log_alpha_bar - self.one_minus_alpha_bar.log(), t)

    def time(self, t: Tensor) -> Tensor:
        """Continuous time t / T in [0, 1] (float32, for network conditioning)."""
        return torch.as_tensor(t).float() / self.T


def linear_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
    """DDPM's linear betas (Ho et al. 2020): beta_t from beta_start to beta_end at T = 1000.

    For other T the end points are scaled by 1000 / T (Nichol & Dhariwal 2021), so the
    schedule approximates the same continuous process whatever T is.
    """
    T = positive_int("T", T)
    scale = 1000.0 / T
    betas = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    if (betas >= 1).any():
        raise ValueError(f"linear schedule with T={T} gives beta >= 1; use T >= {math.ceil(1000 * beta_end)}")
    return DiscreteSchedule("linear", torch.cat([_f64([0.0]), torch.cumsum(torch.log1p(-betas), 0)]))


def cosine_schedule(T: int, s: float = COSINE_OFFSET, max_beta: float = COSINE_MAX_BETA) -> DiscreteSchedule:
    """Nichol & Dhariwal's cosine schedule: alpha_bar_t = f(t/T) / f(0), f(u) = cos^2((u+s)/(1+s) pi/2).

    betas are clipped at `max_beta` (0.999) and alpha_bar is recomputed from the clipped betas.
    """
    T = positive_int("T", T)
    lab = cosine_log_alpha_bar(torch.arange(T + 1, dtype=torch.float64) / T, s)
    betas = (-torch.expm1(torch.diff(lab))).clamp(max=max_beta)
    return DiscreteSchedule("cosine", torch.cat([_f64([0.0]), torch.cumsum(torch.log1p(-betas), 0)]))


def logsnr_cosine_schedule(T: int, logsnr_max: float = 5.0, logsnr_min: float = -10.0) -> DiscreteSchedule:
    """The continuous `logsnr_cosine` schedule sampled at t = i / T, i = 1..T (t = 0 is the data)."""
    T = positive_int("T", T)
    cont = continuous_schedule("logsnr_cosine", logsnr_max=logsnr_max, logsnr_min=logsnr_min)
    lam = cont.log_snr(torch.arange(1, T + 1, dtype=torch.float64) / T)
    return DiscreteSchedule("logsnr_cosine", torch.cat([_f64([0.0]), torch.nn.functional.logsigmoid(lam)]))


def discrete_schedule(name: str, T: int = 1000, **kwargs) -> DiscreteSchedule:
    """Build a T-step schedule by name: 'linear', 'cosine' or 'logsnr_cosine'."""
    choose("schedule", name, SCHEDULES)
    builder = {"linear": linear_schedule, "cosine": cosine_schedule, "logsnr_cosine": logsnr_cosine_schedule}[name]
    return builder(T, **kwargs)


# ---------------------------------------------------------------------------------------
# Continuous time
# ---------------------------------------------------------------------------------------


def cosine_log_alpha_bar(u: Tensor, s: float = COSINE_OFFSET) -> Tensor:
    """log f(u)/f(0) for the cosine schedule, u in [0, 1], float64."""
    a = (u + s) / (1 + s) * (math.pi / 2)
    a0 = s / (1 + s) * (math.pi / 2)
    return 2 * (torch.cos(a).log() - math.log(math.cos(a0)))


def _cosine_log_snr(u: Tensor, s: float = COSINE_OFFSET) -> Tensor:
    # 1 - f(u)/f(0) = (cos^2 a0 - cos^2 a) / cos^2 a0 = sin(a - a0) sin(a + a0) / cos^2 a0:
    # no cancellation as u -> 0, where lambda -> +inf.
    a = (u + s) / (1 + s) * (math.pi / 2)
    a0 = s / (1 + s) * (math.pi / 2)
    log_abar = 2 * (torch.cos(a).log() - math.log(math.cos(a0)))
    a_minus_a0 = u / (1 + s) * (math.pi / 2)  # not a - a0, which cancels
    log_one_minus = torch.log(torch.sin(a_minus_a0)) + torch.log(torch.sin(a + a0)) - 2 * math.log(math.cos(a0))
    return log_abar - log_one_minus


def _linear_log_snr(u: Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    # VP-SDE with beta(u) = beta_min + u (beta_max - beta_min): alpha_bar = exp(-int_0^u beta),
    # lambda = -log(expm1(int_0^u beta)). The T = 1000 DDPM linear betas approximate it.
    integral = beta_min * u + 0.5 * (beta_max - beta_min) * u**2
    return -torch.log(torch.expm1(integral))


def _logsnr_cosine(u: Tensor, logsnr_max: float = 5.0, logsnr_min: float = -10.0) -> Tensor:
    # lambda(u) = -2 log tan(a + u (b - a)), a and b chosen so lambda(0) = max, lambda(1) = min.
    a = math.atan(math.exp(-0.5 * logsnr_max))
    b = math.atan(math.exp(-0.5 * logsnr_min))
    return -2 * torch.log(torch.tan(a + u * (b - a)))


@dataclass(frozen=True)
class ContinuousSchedule:
    """A variance-preserving schedule on t in [0, 1] defined by its log-SNR lambda(t)."""

    name: str
    log_snr_fn: Callable[[Tensor], Tensor]

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t), float64, shape of t."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if (t < 0).any() or (t > 1).any():
            raise ValueError("continuous time must lie in [0, 1]")
        return self.log_snr_fn(t)

    def alpha(self, t: Tensor) -> Tensor:
        """alpha(t) = sqrt(sigmoid(lambda)), float64."""
        return torch.sigmoid(self.log_snr(t)).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """sigma(t) = sqrt(sigmoid(-lambda)), float64."""
        return torch.sigmoid(-self.log_snr(t)).sqrt()

    def d_log_snr(self, t: Tensor) -> Tensor:
        """d lambda / dt by autograd in float64, shape of t."""
        t = torch.as_tensor(t, dtype=torch.float64).detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.log_snr(t).sum(), t)
        return grad

    def time(self, t: Tensor) -> Tensor:
        """Continuous time itself (float32, for network conditioning)."""
        return torch.as_tensor(t).float()


def continuous_schedule(name: str, **kwargs) -> ContinuousSchedule:
    """Continuous-time schedule by name: 'linear' (VP-SDE), 'cosine', 'logsnr_cosine'."""
    choose("schedule", name, SCHEDULES)
    fn = {"linear": _linear_log_snr, "cosine": _cosine_log_snr, "logsnr_cosine": _logsnr_cosine}[name]
    return ContinuousSchedule(name, lambda t: fn(t, **kwargs))


def coefficient(value: Tensor, like: Tensor) -> Tensor:
    """Cast a float64 schedule constant [B] to `like`'s dtype/device, shaped to broadcast on it."""
    value = value.to(device=like.device, dtype=like.dtype)
    return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))
