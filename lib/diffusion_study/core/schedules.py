"""Noise schedules: how much signal alpha and noise sigma a latent carries at each time.

One time convention for the whole library: time t is a float in [0, 1], t = 0 the data and
t = 1 the prior. All schedules are variance preserving, alpha^2 + sigma^2 = 1, so one
function of time, the log signal-to-noise ratio lambda(t) = log(alpha^2 / sigma^2), defines
everything: alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda) (chapter 1).

- `ContinuousSchedule`: lambda(t) given as a function, defined for every t in [0, 1].
- `DiscreteSchedule`: T steps, defined on the grid t = i / T (i = 0..T, i = 0 the data,
  alpha = 1). DDPM's tables (beta_t, alpha_t = 1 - beta_t, alpha_bar_t, beta~_t) stay
  available, indexed by the step i, and exact: alpha and sigma are read from them. A discrete
  schedule is a grid on a continuous log-SNR curve: `curve()` is that curve (log alpha_bar linear
  in t on each step), what the continuous-time tools (ODE, continuous bound) take.

Both are `nn.Module`s whose tables are float64 buffers, computed once and moved with the
forward process (`process.to(device)`); a lookup is a gather on the device, with no range
check and no host-device synchronisation, so it can sit inside a training or sampling step.
Check times once, outside the step, with `check_times`. An integer tensor given to a
discrete schedule is read as step indices i and converted to time i / T at the boundary.
Constants are float64 and cast once where they meet the data (`coefficient`).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor, nn

from diffusion_study.base.args import choose, positive_int

# 'linear' meant two curves: DDPM's linear betas (discrete, Ho et al. 2020) and the VP-SDE's beta(t) linear in t
# (continuous, Song et al. 2021). Each has its own name now; DDPM's keeps 'linear' as an alias (its call sites:
# the toy study's grid, the benches' diffusers cross-checks), the continuous 'linear' is refused with the new names.
DISCRETE_SCHEDULES = ("ddpm_linear", "cosine", "logsnr_cosine")
CONTINUOUS_SCHEDULES = ("vp_linear", "cosine", "logsnr_cosine")
DISCRETE_ALIASES = {"linear": "ddpm_linear"}
SCHEDULES = CONTINUOUS_SCHEDULES  # the names `continuous_schedule` takes (the training CLI's --schedule)
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal's cosine schedule
COSINE_MAX_BETA = 0.999


def _f64(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------


class Schedule(nn.Module):
    """A variance-preserving schedule on t in [0, 1]: subclasses define `log_snr`, `alpha`, `sigma`.

    `T` is the number of steps of a discrete schedule and None for a continuous one.
    """

    T: int | None = None
    name: str = ""

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha^2 / sigma^2), float64, shape of t (+inf at the data)."""
        raise NotImplementedError

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale alpha(t) = sqrt(sigmoid(lambda)), float64, shape of t."""
        return torch.sigmoid(self.log_snr(t)).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale sigma(t) = sqrt(sigmoid(-lambda)), float64, shape of t."""
        return torch.sigmoid(-self.log_snr(t)).sqrt()

    def alpha_sigma(self, t) -> Tensor:
        """alpha(t) and sigma(t) stacked on a last dim: [*t.shape, 2] float64 (one lookup for both)."""
        lam = self.log_snr(t)
        return torch.stack([lam, -lam], -1).sigmoid().sqrt()

    def to_time(self, t) -> Tensor:
        """Continuous time in [0, 1] as a float64 tensor (integer steps i of a discrete schedule -> i / T)."""
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point:
            return t.double()
        if self.T is None:
            raise TypeError("a continuous schedule takes float times in [0, 1], got integers")
        return t.double() / self.T

    def time(self, t) -> Tensor:
        """Time as the networks see it: float32 in [0, 1], shape of t."""
        return self.to_time(t).float()

    def grid(self, steps: int | None = None) -> Tensor:
        """Descending times [steps + 1] from 1 to 0, float64; steps defaults to T (every step).

        A discrete schedule needs steps <= T and uses evenly spaced steps rounded to its grid
        (DDIM's 'linear' skipping); a continuous one evenly spaced times.
        """
        if steps is None:
            if self.T is None:
                raise ValueError("a continuous schedule needs the number of steps")
            steps = self.T
        steps = positive_int("steps", steps)
        if self.T is None:
            return torch.linspace(1, 0, steps + 1, dtype=torch.float64)
        if steps > self.T:
            raise ValueError(f"steps must be at most T={self.T}, got {steps}")
        return torch.linspace(self.T, 0, steps + 1, dtype=torch.float64).round() / self.T

    def time_at(self, log_snr, iterations: int = 80) -> Tensor:
        """The time t with lambda(t) = log_snr (float64, shape of log_snr), by bisection on [0, 1]
        (lambda decreases in t); values outside [lambda(1), lambda(0)] give the nearest end."""
        target = torch.as_tensor(log_snr, dtype=torch.float64)
        lo, hi = torch.zeros_like(target), torch.ones_like(target)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > target  # still too early: the root is later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def check_times(self, t) -> Tensor:
        """`t` as float64 time after checking it lies in [0, 1] (and on the grid of a discrete
        schedule); raises ValueError otherwise. Call it once, outside a step: it synchronises."""
        time = self.to_time(t)
        if not torch.isfinite(time).all() or (time < 0).any() or (time > 1).any():
            raise ValueError(f"times must lie in [0, 1], got values in [{time.min().item()}, {time.max().item()}]")
        if self.T is not None:
            steps = time * self.T
            if ((steps - steps.round()).abs() > 1e-6).any():
                raise ValueError(f"times of a {self.T}-step schedule must lie on its grid i / {self.T}")
        return time


# ---------------------------------------------------------------------------------------
# Discrete time (DDPM)
# ---------------------------------------------------------------------------------------


class DiscreteSchedule(Schedule):
    """A T-step schedule on the grid t = i / T, from `log_alpha_bar`: float64 [T + 1], entry 0 = 0.

    DDPM's tables are indexed by the step as in the papers: `beta[i]` is beta_i for i = 1..T
    (entry 0 is 0). `alpha(t)`, `sigma(t)` and `log_snr(t)` take times on the grid.
    """

    def __init__(self, name: str, log_alpha_bar: Tensor):
        super().__init__()
        lab = log_alpha_bar
        assert lab.dtype == torch.float64 and lab.ndim == 1 and lab[0] == 0, "bad log_alpha_bar"
        self.name, self.T = name, lab.numel() - 1
        omab = -torch.expm1(lab)
        self.register_buffer("log_alpha_bar", lab)
        # [T + 1, 2]: alpha and sigma at t = i / T, read from alpha_bar exactly (one gather for both)
        self.register_buffer("alpha_sigma_table", torch.stack([(0.5 * lab).exp(), omab.sqrt()], -1))
        self.register_buffer("log_snr_table", lab - omab.log())  # +inf at i = 0

    def extra_repr(self) -> str:
        return f"{self.name!r}, T={self.T}"

    # Tables over i = 0..T ---------------------------------------------------------------
    @property
    def alpha_bar(self) -> Tensor:
        """alpha_bar_i = prod_{j<=i} (1 - beta_j), [T + 1]."""
        return self.log_alpha_bar.exp()

    @property
    def one_minus_alpha_bar(self) -> Tensor:
        """1 - alpha_bar_i without cancellation near i = 0, [T + 1]."""
        return -torch.expm1(self.log_alpha_bar)

    @property
    def beta(self) -> Tensor:
        """beta_i = 1 - alpha_bar_i / alpha_bar_{i-1}; entry 0 is 0. [T + 1]."""
        step = torch.diff(self.log_alpha_bar, prepend=self.log_alpha_bar[:1])
        return -torch.expm1(step)

    @property
    def alphas(self) -> Tensor:
        """alpha_i = 1 - beta_i (DDPM's per-step alpha, not the signal scale `alpha(t)`), [T + 1]."""
        return 1 - self.beta

    @property
    def posterior_variance(self) -> Tensor:
        """beta~_i = (1 - alpha_bar_{i-1}) / (1 - alpha_bar_i) beta_i for i >= 1; entry 0 is 0."""
        omab = self.one_minus_alpha_bar
        out = torch.zeros_like(omab)
        out[1:] = omab[:-1] / omab[1:] * self.beta[1:]
        return out

    # Lookups at times on the grid (no checks: see `check_times`) --------------------------
    def step_index(self, t) -> Tensor:
        """The step i = round(t T) of times on the grid (integer tensors are steps already)."""
        t = torch.as_tensor(t)
        if not t.dtype.is_floating_point:
            return t.long()
        return (t.double() * self.T).round().long()

    def _at(self, table: Tensor, t) -> Tensor:
        # index_select, not table[i]: indexing with a 0-dim tensor calls .item(), a host sync on a GPU
        i = self.step_index(t).to(table.device)
        return table.index_select(0, i.reshape(-1)).reshape(i.shape + table.shape[1:])

    def alpha_sigma(self, t) -> Tensor:
        """(sqrt(alpha_bar_i), sqrt(1 - alpha_bar_i)) at t = i / T: [*t.shape, 2] float64."""
        return self._at(self.alpha_sigma_table, t)

    def alpha(self, t) -> Tensor:
        """sqrt(alpha_bar_i) at t = i / T, float64, shape of t."""
        return self._at(self.alpha_sigma_table[:, 0], t)

    def sigma(self, t) -> Tensor:
        """sqrt(1 - alpha_bar_i) at t = i / T, float64, shape of t."""
        return self._at(self.alpha_sigma_table[:, 1], t)

    def log_snr(self, t) -> Tensor:
        """lambda_i = log alpha_bar_i - log(1 - alpha_bar_i) at t = i / T; +inf at t = 0."""
        return self._at(self.log_snr_table, t)

    def curve(self) -> ContinuousSchedule:
        """The continuous schedule through this one's grid: log alpha_bar linear in t on each step (the VP
        process whose beta(t) is constant on each step), so alpha, sigma, lambda at every i / T are the
        tables' and lambda'(t) exists between grid points. What the continuous-time tools (the
        probability-flow ODE, the continuous bound) need: wrap the same network on it. Built from the
        tables where they are now (call it after moving the schedule)."""
        return ContinuousSchedule(f"{self.name}:curve", functools.partial(_grid_log_snr, log_alpha_bar=self.log_alpha_bar))


def _grid_log_snr(u: Tensor, log_alpha_bar: Tensor) -> Tensor:
    # log alpha_bar linear in u between the grid points i / T (differentiable in u); lambda = lab - log(1 - e^lab)
    T = log_alpha_bar.numel() - 1
    lab, s = log_alpha_bar.to(u.device), u * T
    i = s.detach().floor().clamp(0, T - 1).long()
    lab_u = lab[i] + (s - i) * (lab[i + 1] - lab[i])
    return lab_u - torch.log(-torch.expm1(lab_u))


def linear_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
    """DDPM's linear betas (Ho et al. 2020): beta_t from beta_start to beta_end at T = 1000.

    For other T the end points are scaled by 1000 / T (Nichol & Dhariwal 2021), so the
    schedule approximates the same continuous process whatever T is.
    """
    T = positive_int("T", T)
    scale = 1000.0 / T
    betas = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    if (betas >= 1).any():
        raise ValueError(f"linear schedule with T={T} gives beta >= 1; use T >= {math.floor(1000 * beta_end) + 1}")
    return DiscreteSchedule("ddpm_linear", torch.cat([_f64([0.0]), torch.cumsum(torch.log1p(-betas), 0)]))


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
    """Build a T-step schedule by name: 'ddpm_linear' (DDPM's linear betas; alias 'linear'), 'cosine' or
    'logsnr_cosine'."""
    name = DISCRETE_ALIASES.get(name, name)
    choose("schedule", name, DISCRETE_SCHEDULES)
    builder = {"ddpm_linear": linear_schedule, "cosine": cosine_schedule, "logsnr_cosine": logsnr_cosine_schedule}[name]
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


def _vp_linear_log_snr(u: Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    # VP-SDE with beta(u) = beta_min + u (beta_max - beta_min): alpha_bar = exp(-int_0^u beta),
    # lambda = -log(expm1(int_0^u beta)). The T = 1000 DDPM linear betas approximate it.
    integral = beta_min * u + 0.5 * (beta_max - beta_min) * u**2
    return -torch.log(torch.expm1(integral))


def _logsnr_cosine(u: Tensor, logsnr_max: float = 5.0, logsnr_min: float = -10.0) -> Tensor:
    # lambda(u) = -2 log tan(a + u (b - a)), a and b chosen so lambda(0) = max, lambda(1) = min.
    a = math.atan(math.exp(-0.5 * logsnr_max))
    b = math.atan(math.exp(-0.5 * logsnr_min))
    return -2 * torch.log(torch.tan(a + u * (b - a)))


class ContinuousSchedule(Schedule):
    """A variance-preserving schedule on t in [0, 1] defined by its log-SNR function lambda(t)."""

    def __init__(self, name: str, log_snr_fn: Callable[[Tensor], Tensor]):
        super().__init__()
        self.name, self.log_snr_fn = name, log_snr_fn

    def extra_repr(self) -> str:
        return f"{self.name!r}"

    def log_snr(self, t) -> Tensor:
        """lambda(t), float64, shape of t (no range check: see `check_times`)."""
        return self.log_snr_fn(self.to_time(t))

    def d_log_snr(self, t) -> Tensor:
        """d lambda / dt by autograd in float64, shape of t."""
        t = self.to_time(t).detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.log_snr(t).sum(), t)
        return grad


def continuous_schedule(name: str, **kwargs) -> ContinuousSchedule:
    """Continuous-time schedule by name: 'vp_linear' (the VP-SDE's beta(t) linear in t), 'cosine', 'logsnr_cosine'."""
    if name == "linear":
        raise ValueError("continuous_schedule('linear') is ambiguous: the VP-SDE's beta(t) linear in t is "
                         "continuous_schedule('vp_linear'); DDPM's linear betas are discrete_schedule('ddpm_linear')")
    choose("schedule", name, CONTINUOUS_SCHEDULES)
    fn = {"vp_linear": _vp_linear_log_snr, "cosine": _cosine_log_snr, "logsnr_cosine": _logsnr_cosine}[name]
    return ContinuousSchedule(name, functools.partial(fn, **kwargs))


def coefficient(value: Tensor, like: Tensor) -> Tensor:
    """Cast a float64 schedule constant [B] to `like`'s dtype/device, shaped to broadcast on it."""
    if value.ndim == 0 and value.dtype == like.dtype and value.device == like.device:
        return value  # a per-step constant already cast: broadcasts as it is
    value = value.to(device=like.device, dtype=like.dtype)
    return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))
