"""Continuous time for any forward process q(z_t | x) = N(alpha_t F(x, t), sigma_t^2 I): DDPM (F = identity) and
Neural Diffusion Models (Bartosh et al. 2023, a learned F_phi with F(x, 0) = x). Derived in chapter 4.

- the continuous-time bound (`continuous_bound_terms`), with m'_t(x) by `torch.func.jvp`:
      g^2(t) = -sigma_t^2 lambda'(t),   a_t = (sigma_t sigma'_t - g^2 / 2) / sigma_t^2,
      f(z, t, x) = (a_t + g^2 / sigma_t^2)(z - m_t(x)) + m'_t(x)          (reverse drift given x)
      L_diff = 1/2 E_{t ~ p} E_{z ~ q(z_t|x)} ||f(z, t, x) - f(z, t, x_hat)||^2 / (g^2(t) p(t)),
  the one continuous bound: for F = identity it is VDM's -1/2 E int SNR'(t) ||x - x_hat||^2 dt (tests hold that form);
- the plain noise-prediction loss under which F collapses (`noise_prediction_loss`);
- the straight-path transform of the restricted reverse process (`StraightForward`);
- chapter 4's names for the one probability-flow ODE stack (`ode`: v(z, t) = f(z, t, x_hat) - g^2/2 score,
  score = -(z - m_t(x_hat)) / sigma_t^2): its fixed-grid sampler (`ode_sample`) and the exact likelihood of
  the flow model in low dimension (`ode_nll`, RK4 on a grid even in log-SNR, divergence by autograd).
The coefficients (`sde_coefficients`, `transform_with_velocity`, ...) live in `sde`, shared with `ode`.

Shapes: x, z: [*batch, *event] with the batch dims of the networks ([B, D], [G, B, D] for an
ensemble, [B, C, H, W]); times of the batch shape or 0-dim; per-example terms [*batch], nats.
Schedule constants are float64 and cast once where they meet the data (`schedules.coefficient`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import jvp

from diffusion_study.base import rng
from diffusion_study.base.args import choose, positive_int
from diffusion_study.core import ode
from diffusion_study.core.events import event_dims_of, sum_event
from diffusion_study.core.objectives import VLBTerms, refuse_noise_free, simple_loss
from diffusion_study.core.ode import (
    log_snr_grid,  # chapter 4 calls continuous_time.log_snr_grid
)
from diffusion_study.core.processes import ForwardProcess
from diffusion_study.core.schedules import coefficient
from diffusion_study.core.sde import (  # noqa: F401  (re-exported: continuous_time.X keeps working)
    SDECoefficients,
    drift_difference,
    mean_and_velocity,
    sde_coefficients,
    transform_with_velocity,
)

T_DENSITIES = ("uniform", "log_snr")


# ---------------------------------------------------------------------------------------
# F networks: F(x, t) = x + t net(x, t), with net's last layer at zero, so F = x at the start
# ---------------------------------------------------------------------------------------


class StraightForward(ForwardProcess):
    """The straight-path transform of the restricted reverse process (chapter 4, claim N4).

    F(x, t) = c_t x with alpha_t c_t = alpha_0 (1 - sigma_t) / (1 - sigma_0), so that for fixed
    (x, eps) the curve t -> alpha_t F(x, t) + sigma_t eps is a straight segment, linear in sigma_t,
    from alpha_0 x + sigma_0 eps (t = 0) to eps (t = 1, where sigma = 1 and alpha = 0 in the limit).
    F(x, 0) = x. Used as the *reverse* process of a model, its deterministic step moves z_t along
    the straight line towards the point given by x_hat; DDPM's (alpha_t x) moves along an arc.
    """

    def scale(self, t) -> Tensor:
        """c_t = alpha_0 (1 - sigma_t) / ((1 - sigma_0) alpha_t), float64, shape of t."""
        t = self.schedule.to_time(t)
        zero = torch.zeros((), dtype=torch.float64, device=t.device)
        a0, s0 = self.alpha(zero), self.sigma(zero)
        return a0 * (1 - self.sigma(t)) / ((1 - s0) * self.alpha(t))

    def transform(self, x: Tensor, t) -> Tensor:
        return coefficient(self.scale(t), x) * x

    def transform_pairs(self, pairs):
        return [self.transform(x, t) for x, t in pairs]

    def transform_velocity(self, x: Tensor, t) -> tuple[Tensor, Tensor]:
        """(F(x, t), dF/dt) = (c_t x, c'_t x), c'_t by forward-mode AD of the scale."""
        t = self.schedule.to_time(t).to(x.device)
        c, dc = jvp(self.scale, (t,), (torch.ones_like(t),))
        return coefficient(c, x) * x, coefficient(dc, x) * x


# ---------------------------------------------------------------------------------------
# The continuous-time bound
# ---------------------------------------------------------------------------------------


def sample_times(schedule, kind: str, shape, like: Tensor, generator=None, t_min: float = 0.0) -> tuple[Tensor, Tensor]:
    """Times t ~ p on [t_min, 1] and their density p(t), float64 [*shape].

    'uniform': p(t) = 1 / (1 - t_min). 'log_snr': uniform in lambda, p(t) = -lambda'(t) / (lambda(t_min) - lambda(1))
    (t by bisection of lambda, `Schedule.time_at`).
    """
    choose("time density", kind, T_DENSITIES)
    u = rng.rand(shape, like, generator)
    if kind == "uniform":
        return t_min + (1 - t_min) * u, torch.full_like(u, 1 / (1 - t_min))
    ends = schedule.log_snr(torch.tensor([t_min, 1.0], dtype=torch.float64, device=u.device))
    t = schedule.time_at(ends[1] + u * (ends[0] - ends[1])).clamp(t_min, 1)
    return t, -schedule.d_log_snr(t) / (ends[0] - ends[1])


def _stack_batch(a: Tensor, b: Tensor, batch_dims: int) -> Tensor:
    return torch.cat([a, b], dim=batch_dims - 1)


def continuous_bound_terms(denoiser, x: Tensor, *, decoder, reverse=None, t_density: str = "uniform",
                           t_min: float = 0.0, generator=None, event_dims: int | None = None,
                           y: Tensor | None = None) -> VLBTerms:
    """NDM's continuous-time negative ELBO, three terms [*batch] in nats (chapter 4):

        prior     = KL(q(z_1 | x) || N(0, I)),  q(z_1|x) = N(alpha_1 F(x, 1), sigma_1^2 I)
        diffusion = 1/2 ||f(z, t, x) - f(z, t, x_hat)||^2 / (g^2(t) p(t)),  one t ~ p, z ~ q(z_t|x)
        decoder   = -log p(x | z_{t_min}),  mean x_hat(z_{t_min}, t_min), std sigma(t_min)

    x_hat = denoiser(z_t, t). The model's drift uses the transform of `reverse` (default: the
    denoiser's process, NDM's p(z_s|z_t) = q(z_s|z_t, x_hat)); a restricted reverse process passes
    its own, e.g. `StraightForward`. F is called at most twice, the x_hat network once:
    [F, F'] at (x, t) with F(x, 1) stacked; x_hat at z_t and z_{t_min} stacked; [F, F'] at (x_hat, t).
    With F = identity on both sides this is VDM's continuous bound (Kingma et al. 2021), diffusion =
    -1/2 E_t SNR'(t) ||x - x_hat||^2 / p(t), the T -> infinity limit of `objectives.vlb_terms` on the grid
    t_min + (1 - t_min) i / T (tests/test_ndm.py holds VDM's form as the oracle). Labels y (of the
    batch shape) are passed to the denoiser. Refuses a discrete schedule, a noise-free process, and a
    t_min outside [0, 1) or with sigma(t_min) = 0 (the decoder's std).
    """
    event_dims = event_dims_of(x, event_dims, denoiser)
    process, reverse = denoiser.process, reverse if reverse is not None else denoiser.process
    sched = process.schedule
    refuse_noise_free(process)
    if sched.T is not None or not hasattr(sched, "d_log_snr"):
        raise ValueError("the continuous bound needs a continuous schedule (continuous_schedule): a discrete "
                         "schedule's log-SNR is defined on its grid only; use objectives.vlb_terms on its grid, "
                         "or wrap the same network on schedule.curve() (the continuous curve through its grid)")
    if not 0 <= t_min < 1 or not sched.sigma(torch.tensor(float(t_min), dtype=torch.float64)) > 0:
        raise ValueError(f"t_min must lie in [0, 1) with sigma(t_min) > 0 (the decoder's std), got {t_min!r}")
    batch_dims = x.ndim - event_dims
    batch = x.shape[:batch_dims]
    t, p_t = sample_times(sched, t_density, batch, x, generator, t_min)
    noise = rng.randn(x.shape, x, generator)
    sde = sde_coefficients(sched, t)
    t1 = torch.ones((), dtype=torch.float64, device=x.device)
    t0 = torch.tensor(float(t_min), dtype=torch.float64, device=x.device)
    pairs = [(x, t), (x, t1)] + ([(x, t0)] if t_min else [])  # F(x, 0) = x needs no call
    (f_t, df_t), (f_1, _), *rest = transform_with_velocity(process, pairs)
    f_0 = rest[0][0] if t_min else x
    m, dm = mean_and_velocity(sde, f_t, df_t)
    z_t = m + coefficient(sde.sigma, x) * noise
    z_0 = coefficient(process.alpha(t0), x) * f_0 + coefficient(process.sigma(t0), x) * rng.randn(x.shape, x, generator)
    labels = () if y is None else (_stack_batch(y, y, batch_dims),)
    x_hat = denoiser(_stack_batch(z_t, z_0, batch_dims), _stack_batch(t, t0.expand(batch), batch_dims), *labels)
    x_hat_t, x_hat_0 = x_hat.split(batch[-1], dim=batch_dims - 1)
    ((g_t, dg_t),) = transform_with_velocity(reverse, [(x_hat_t, t)])
    m_hat, dm_hat = mean_and_velocity(sde, g_t, dg_t)
    err = sum_event(drift_difference(sde, m, dm, m_hat, dm_hat) ** 2, event_dims)
    diffusion = 0.5 * err / coefficient(sde.g2 * p_t, err)
    prior_mean = coefficient(sched.alpha(t1), x) * f_1
    prior = sum_event(0.5 * (prior_mean**2 + coefficient(sched.sigma(t1) ** 2 - 1 - 2 * sched.sigma(t1).log(), x)),
                       event_dims)
    decoder_nll = decoder.nll(x, x_hat_0, coefficient(sched.sigma(t0), x), event_dims)
    return VLBTerms(prior=prior, diffusion=diffusion, decoder=decoder_nll)


def continuous_bound(denoiser, x: Tensor, *, decoder, n_t: int = 1, **kwargs) -> VLBTerms:
    """`continuous_bound_terms` averaged over n_t independent draws of (t, z) per example ([*batch] each)."""
    draws = [continuous_bound_terms(denoiser, x, decoder=decoder, **kwargs) for _ in range(positive_int("n_t", n_t))]
    return VLBTerms(*(torch.stack(parts).mean(0) for parts in zip(*draws)))


def noise_prediction_loss(denoiser, x: Tensor, generator=None) -> Tensor:
    """NDM's plain noise-prediction loss, mean over the event of ||eps - eps_hat(z_t, t)||^2 (claim N6), [*batch]:
    `objectives.simple_loss` with target 'eps' (eps_hat through F; t ~ U(0, 1] on a continuous schedule).
    Any F that forgets x (F(., t) = const for t > 0) makes it zero: it lets F collapse."""
    return simple_loss(denoiser, x, generator=generator, target="eps")


# ---------------------------------------------------------------------------------------
# The probability-flow ODE given x_hat: chapter 4's names for the one ODE stack in `ode`
# ---------------------------------------------------------------------------------------


def ode_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, reverse=None,
               method: str = "rk4") -> Tensor:
    """`ode.ode_solve` on the fixed grid `times` (descending; e.g. from 1 to 0), fixed-step by default.

    x: the start z at times[0], [*batch, *event]; returns z at times[-1]. method: one of `ode.METHODS`
    ('euler': one x_hat call per step, 'rk4': four). callback({'i', 't', 'z'}) after every step.
    `log_snr_grid(schedule, steps)` is a good grid; `schedule.grid(steps)` the even one.
    """
    solution = ode.ode_solve(model, x, times, extra_args, method=method, reverse=reverse)
    if callback is not None:
        times = torch.as_tensor(times, dtype=torch.float64)
        for i in range(len(solution.path) - 1):
            callback({"i": i, "t": times[i + 1] if len(times) == len(solution.path) else times[-1],
                      "z": solution.path[i + 1]})
    return solution.z


def ode_nll(model, x: Tensor, steps: int = 32, *, reverse=None, event_dims: int | None = None,
            t_min: float = 0.0) -> Tensor:
    """-log p(x) of the deterministic flow model defined by the probability-flow ODE, [*batch] nats.

    The model's sample is x = z_{t_min} / alpha_{t_min}, z_1 ~ N(0, I) pushed through the ODE from
    t = 1 to t_min; so -log p(x) = -`ode.ode_log_likelihood`(alpha_{t_min} x) - D log alpha_{t_min}, with
    the exact divergence (one backward pass per coordinate: for low dimension, e.g. 2D) and RK4 on
    `steps` steps evenly spaced in log-SNR (`log_snr_grid`). An exact density of that flow, not a bound;
    its error is the ODE solver's (compare two step counts).
    """
    event_dims = event_dims_of(x, event_dims, model)
    reverse = reverse if reverse is not None else model.process
    sched = reverse.schedule
    alpha = sched.alpha(torch.tensor(float(t_min), dtype=torch.float64))
    result = ode.ode_log_likelihood(model, coefficient(alpha, x) * x, method="rk4",
                                    times=log_snr_grid(sched, steps, t_min).flip(0), reverse=reverse,
                                    event_dims=event_dims)
    d = math.prod(x.shape[x.ndim - event_dims:])
    return -(result.log_prob + d * alpha.log()).to(x.dtype)


# ---------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------


