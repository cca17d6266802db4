"""The probability-flow ODE of any forward process q(z_t | x) = N(alpha_t F(x, t), sigma_t^2 I): a sampler and a
likelihood, for DDPM (F = identity, chapter 3) and NDM (a learned F, chapter 4) alike.

The reverse drift given x_hat minus g^2 / 2 times the score -(z - m_t(x_hat)) / sigma_t^2 is the velocity

    v(z, t) = sigma'_t / sigma_t (z - m_t(x_hat)) + m'_t(x_hat),   m_t(x) = alpha_t F(x, t),   (eq-pf-ode)

with x_hat = model(z, t), and (F, dF/dt) from `sde.transform_with_velocity` ((x, 0) for F = identity). For
F = identity, alpha^2 = sigmoid(lambda), it is Song et al.'s (2021, eq. 13) dz/dt = f_t z - g_t^2 / 2 score:
lambda'(t) / 2 * alpha_t * (x_hat - alpha_t z). Any model of the library (`Denoiser`, `Oracle`, a guidance
wrapper) defines it. lambda'(t) must exist between grid points: the ODE needs a `ContinuousSchedule` (a
discrete schedule's log-SNR is only defined on its grid i / T). A network trained on a discrete schedule
is re-wrapped on `schedule.curve()`, the continuous curve through its grid, or on the continuous schedule
it samples (e.g. `continuous_schedule('logsnr_cosine')` with the same ends for `logsnr_cosine_schedule`).

Likelihood (instantaneous change of variables, Chen et al. 2018; Grathwohl et al. 2019):

    log p_{t0}(z_{t0}) = log p_1(z_1) + int_{t0}^{1} div_z (dz/dt) dt,

solved forward from z_{t0} = x together with the integral. The divergence is exact (one autograd
pass per event dimension: D = 2 for the toy data) or Hutchinson's estimate v^T J v with Rademacher
or Gaussian probes v (one probe per solve, drawn once; `n_probes` independent solves give its
variance). Solvers are torchdiffeq's: adaptive 'dopri5' with tolerances rtol/atol, or fixed-step
'euler', 'midpoint', 'rk4' (torchdiffeq's 3/8-rule RK4) on the given grid of times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from diffusion_study.base import rng
from diffusion_study.base.args import choose, positive_int
from diffusion_study.core.events import event_dims_of, sum_event
from diffusion_study.core.likelihood import BitsPerDim
from diffusion_study.core.schedules import coefficient
from diffusion_study.core.sde import (
    mean_and_velocity,
    sde_coefficients,
    transform_with_velocity,
)

METHODS = ("dopri5", "euler", "midpoint", "rk4")
ADAPTIVE = ("dopri5",)
DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")



def flow_velocity(reverse, z: Tensor, x_hat: Tensor, t) -> Tensor:
    """v(z, t) of eq-pf-ode given x_hat: sigma'_t / sigma_t (z - m_t(x_hat)) + m'_t(x_hat), shaped like z.

    `reverse`: the forward process whose transform defines m (a model's own process, or a restricted
    reverse process such as `StraightForward`); t: 0-dim or of the batch shape (float64 time).
    """
    t = reverse.schedule.to_time(t)
    sde = sde_coefficients(reverse.schedule, t)
    ((f, df),) = transform_with_velocity(reverse, [(x_hat, t)])
    m, dm = mean_and_velocity(sde, f, df)
    return coefficient(sde.flow_scale, z) * (z - m) + dm


class ProbabilityFlow(nn.Module):
    """The velocity (eq-pf-ode) of `model` as torchdiffeq's `func(t, z)`, counting its calls in `nfe`.

    z: [*batch, *event]; t: a 0-dim time in [0, 1] (torchdiffeq's); returns dz/dt shaped like z.
    `extra_args` (e.g. {'y': labels}) are passed to the model at every call; `reverse` (default the
    model's process) is the process whose transform F defines the flow.
    """

    def __init__(self, model, extra_args: dict | None = None, reverse=None):
        super().__init__()
        self.reverse = reverse if reverse is not None else model.process
        schedule = self.reverse.schedule
        if schedule.T is not None or not hasattr(schedule, "d_log_snr"):
            raise ValueError("the probability-flow ODE needs a continuous schedule (continuous_schedule): a discrete "
                             "schedule's log-SNR is defined on its grid only; wrap the same network on schedule.curve() "
                             "(the continuous curve through its grid) or on the continuous schedule it samples")
        self.model, self.extra_args, self.nfe = model, extra_args or {}, 0

    @property
    def schedule(self):
        return self.reverse.schedule

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.nfe += 1
        t64 = torch.as_tensor(t, dtype=torch.float64).detach().cpu()
        return flow_velocity(self.reverse, z, self.model(z, t64, **self.extra_args), t64)


def check_solver(method: str, rtol: float, atol: float) -> str:
    """`method` if it is one of METHODS, with positive finite tolerances; else ValueError."""
    choose("ODE solver", method, METHODS)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return method


def _check_grid(flow: ProbabilityFlow, times) -> Tensor:
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) < 2 or not ((torch.diff(times) < 0).all() or (torch.diff(times) > 0).all()):
        raise ValueError("times must be a monotone 1-D grid of at least two times, e.g. schedule.grid(steps)")
    flow.schedule.check_times(times)
    if not torch.isfinite(sde_coefficients(flow.schedule, times[[0, -1]]).flow_scale).all():
        raise ValueError("d log-SNR / dt is not finite at an end of the grid (lambda = +-inf there): "
                         "end the ODE at a time with finite log-SNR, or use a schedule with finite ends")
    return times


def log_snr_grid(schedule, steps: int, t_min: float = 0.0) -> Tensor:
    """Descending times [steps + 1] from 1 to t_min, evenly spaced in log-SNR lambda (float64).

    The ODE is smooth in lambda; an even grid in t crowds the steps where lambda changes slowly.
    """
    ends = schedule.log_snr(torch.tensor([1.0, float(t_min)], dtype=torch.float64))
    lam = torch.linspace(float(ends[0]), float(ends[1]), positive_int("steps", steps) + 1, dtype=torch.float64)
    times = schedule.time_at(lam)
    times[0], times[-1] = 1.0, float(t_min)
    return times


def _odeint(func, y0, times: Tensor, method: str, rtol: float, atol: float):
    from torchdiffeq import odeint

    like = y0[0] if isinstance(y0, tuple) else y0
    t = times.to(device=like.device, dtype=like.dtype)
    # an adaptive solver may step past the last time and interpolate back, and its automatic first
    # step can leave [0, 1] where the drift is tiny (near t = 1); the schedule ends there, so the
    # last step lands on the end exactly and the first is 1% of the span
    options = {"step_t": t[-1:], "first_step": 0.01 * float((t[-1] - t[0]).abs())} if method in ADAPTIVE else None
    return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)


@dataclass(frozen=True)
class ODESolution:
    """z at the last time of the grid (shaped like the start), the number of model calls, and z at every
    time the solver returned ([len(times), *z.shape]: every grid time for a fixed-step method, the two
    ends for an adaptive one)."""

    z: Tensor
    nfe: int
    path: Tensor | None = None


@torch.no_grad()
def ode_solve(model, x: Tensor, times, extra_args: dict | None = None, *, method: str = "dopri5",
              rtol: float = 1e-5, atol: float = 1e-5, reverse=None) -> ODESolution:
    """Integrate eq-pf-ode from times[0] to times[-1] (either direction). x: [*batch, *event].

    Fixed-step methods step on the grid `times` (one step per interval); 'dopri5' adapts its steps
    to rtol/atol and only starts and ends on the grid. Returns z at times[-1] and the model calls.
    """
    method = check_solver(method, rtol, atol)
    flow = ProbabilityFlow(model, extra_args, reverse)
    times = _check_grid(flow, times)
    grid = times[[0, -1]] if method in ADAPTIVE else times
    path = _odeint(flow, x, grid, method, rtol, atol)
    return ODESolution(path[-1], flow.nfe, path)


def ode_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, method: str = "dopri5",
               rtol: float = 1e-5, atol: float = 1e-5, reverse=None) -> Tensor:
    """Probability-flow ODE sampler (Song et al. 2021, eq. 13) with the samplers' signature: z at times[-1].

    callback({'nfe', 'z'}) is called once at the end (an adaptive solver has no fixed steps).
    """
    solution = ode_solve(model, x, times, extra_args, method=method, rtol=rtol, atol=atol, reverse=reverse)
    if callback is not None:
        callback({"nfe": solution.nfe, "z": solution.z})
    return solution.z


# ---------------------------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------------------------


def exact_divergence(f: Tensor, z: Tensor, event_dims: int) -> Tensor:
    """div_z f = sum_d d f_d / d z_d, [*batch], by one autograd pass per event dimension (D of them).

    f = f(z) shaped like z, built with autograd from z (requires_grad). Examples must not interact
    (each output depends on its own example only), as in every network of the library.
    """
    batch = f.shape[: f.ndim - event_dims]
    flat_f, div = f.reshape(batch + (-1,)), torch.zeros(batch, dtype=f.dtype, device=f.device)
    for d in range(flat_f.shape[-1]):
        (grad,) = torch.autograd.grad(flat_f[..., d].sum(), z, retain_graph=True)
        div = div + grad.reshape(batch + (-1,))[..., d]
    return div


def hutchinson_divergence(f: Tensor, z: Tensor, probe: Tensor, event_dims: int) -> Tensor:
    """Hutchinson's estimate v^T (df/dz) v of div_z f, [*batch]: unbiased when E[v v^T] = I.

    One vector-Jacobian product for the whole batch; `probe` v is shaped like z.
    """
    (vjp,) = torch.autograd.grad(f, z, grad_outputs=probe)
    return sum_event(vjp * probe, event_dims)


def draw_probe(kind: str, like: Tensor, generator=None) -> Tensor:
    """A probe shaped like `like`: Rademacher (+-1) or standard Gaussian entries."""
    choose("probe", kind, PROBES)
    if kind == "gaussian":
        return rng.randn(like.shape, like, generator)
    return (rng.rand(like.shape, like, generator) < 0.5).to(like.dtype) * 2 - 1


class _AugmentedFlow(nn.Module):
    """(z, log-density change) -> (dz/dt, div dz/dt): the ODE of the likelihood."""

    def __init__(self, flow: ProbabilityFlow, event_dims: int, probe: Tensor | None):
        super().__init__()
        self.flow, self.event_dims, self.probe = flow, event_dims, probe

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]):
        z = state[0]
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f = self.flow(t, z)
            if self.probe is None:
                div = exact_divergence(f, z, self.event_dims)
            else:
                div = hutchinson_divergence(f, z, self.probe, self.event_dims)
        return f.detach(), div.detach()


def standard_normal_log_prob(z: Tensor, event_dims: int) -> Tensor:
    """log N(z; 0, I) summed over the event dims, [*batch]."""
    return sum_event(-0.5 * z**2 - 0.5 * math.log(2 * math.pi), event_dims)


@dataclass(frozen=True)
class ODELikelihood:
    """log p_{t0}(x) in nats (float64): `log_prob` [*batch] (mean over the probes), `per_probe`
    [n_probes, *batch] (one row for the exact divergence), the prior term log p_1(z_1) and the
    integral of the divergence (means over the probes), model calls per solve (`nfe`)."""

    log_prob: Tensor
    per_probe: Tensor
    prior: Tensor
    divergence: Tensor
    nfe: int


@torch.no_grad()
def ode_log_likelihood(model, x: Tensor, extra_args: dict | None = None, *, t0: float = 0.0, t1: float = 1.0,
                       method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, steps: int | None = None,
                       divergence: str = "exact", probe: str = "rademacher", n_probes: int = 1, generator=None,
                       event_dims: int | None = None, prior: Callable[[Tensor], Tensor] | None = None,
                       times=None, reverse=None) -> ODELikelihood:
    """log p(x) of the probability-flow ODE at time t0 (eq. above), x: [*batch, *event] -> [*batch] nats.

    divergence 'exact' (D autograd passes per call; for small D) or 'hutchinson' (`n_probes`
    independent probes of kind `probe`, each its own solve: the spread of `per_probe` is the
    estimator's variance). prior(z_1) -> [*batch] defaults to the standard normal. Fixed-step
    methods take `steps` equal steps from t0 to t1, or step on `times` (an ascending grid from t0 to t1,
    e.g. `log_snr_grid(schedule, steps).flip(0)`); 'dopri5' adapts to rtol/atol. `reverse`: the process
    whose F defines the flow (default the model's).
    """
    method = check_solver(method, rtol, atol)
    choose("divergence", divergence, DIVERGENCES)
    event_dims = event_dims_of(x, event_dims, model)
    flow = ProbabilityFlow(model, extra_args, reverse)
    if times is not None:
        times = torch.as_tensor(times, dtype=torch.float64)
        times = times[[0, -1]] if method in ADAPTIVE else times
    elif method in ADAPTIVE:
        times = torch.tensor([t0, t1], dtype=torch.float64)
    else:
        if steps is None:
            raise ValueError(f"the fixed-step solver {method!r} needs steps (the number of equal steps from t0 to t1)")
        times = torch.linspace(t0, t1, positive_int("steps", steps) + 1, dtype=torch.float64)
    times = _check_grid(flow, times)
    prior = prior or (lambda z: standard_normal_log_prob(z, event_dims))
    n_probes = 1 if divergence == "exact" else positive_int("n_probes", n_probes)
    rows, priors, divs, nfe = [], [], [], 0
    for _ in range(n_probes):
        v = None if divergence == "exact" else draw_probe(probe, x, generator)
        batch = x.shape[: x.ndim - event_dims]
        start = (x, torch.zeros(batch, dtype=x.dtype, device=x.device))
        before = flow.nfe
        z_path, div_path = _odeint(_AugmentedFlow(flow, event_dims, v), start, times, method, rtol, atol)
        nfe = flow.nfe - before
        priors.append(prior(z_path[-1]).double())
        divs.append(div_path[-1].double())
        rows.append(priors[-1] + divs[-1])
    per_probe = torch.stack(rows)
    return ODELikelihood(per_probe.mean(0), per_probe, torch.stack(priors).mean(0), torch.stack(divs).mean(0), nfe)


# ---------------------------------------------------------------------------------------------
# Discrete data: uniform dequantisation and bits/dim
# ---------------------------------------------------------------------------------------------


def dequantize_uniform(x: Tensor, bin_width: float, generator=None) -> Tensor:
    """x + u, u ~ U(-w/2, w/2) per dimension: a draw from the uniform density on x's bin (chapter 3)."""
    return x + (rng.rand(x.shape, x, generator, dtype=x.dtype) - 0.5) * bin_width


def dequantization_bits(bin_width: float) -> float:
    """The term added to a density's bits/dim for discrete data: -log2(w) per dimension.

    P(bin) = int_bin p(v) dv >= w^D exp E_u[log p(x + u)] (Jensen), so
    -log2 P(bin) / D <= E_u[-log2 p(x + u)] / D - log2 w   (w = 0.125 for digits: + 3 bits/dim).
    """
    return -math.log2(bin_width)


def ode_bits_per_dim(model, data: Tensor, *, bin_width: float, batch_size: int = 256, generator=None,
                     event_dims: int | None = None, **ode_kwargs) -> tuple[BitsPerDim, Tensor]:
    """Upper bound on the discrete NLL in bits/dim from the ODE density of uniformly dequantised data.

    data: [*models, N, *event] on the grid; returns (BitsPerDim with terms {'ode': E[-log2 p(x + u)] / D,
    'dequantization': -log2 w}, per-probe bits/dim [n_probes, *models, N]). The standard error is
    over examples (of the probe-averaged values); the probe variance is in the second output.
    """
    batch_size = positive_int("batch_size", batch_size)
    event_dims = event_dims_of(data, event_dims, model)
    axis = data.ndim - event_dims - 1
    dims = math.prod(data.shape[axis + 1:])
    parts = []
    for x in data.split(batch_size, dim=axis):
        result = ode_log_likelihood(model, dequantize_uniform(x, bin_width, generator), generator=generator,
                                    event_dims=event_dims, **ode_kwargs)
        parts.append(result.per_probe)
    per_probe = -torch.cat(parts, dim=-1) / (dims * math.log(2)) + dequantization_bits(bin_width)
    total = per_probe.mean(0)  # [*models, N]
    n = total.shape[-1]
    mean, stderr = total.mean(-1), total.std(-1) / math.sqrt(n)
    scalar = lambda v: float(v) if v.ndim == 0 else v  # noqa: E731
    terms = {"ode": scalar(mean - dequantization_bits(bin_width)), "dequantization": dequantization_bits(bin_width)}
    return BitsPerDim(scalar(mean), scalar(stderr), n, terms, total), per_probe
