"""Samplers: functions `sample(model, x, times, extra_args=None, callback=None, ...)` (chapter 3).

`model(z, t, **extra_args) -> x0_hat` is a `Denoiser`, an `Oracle` (exact denoiser) or a
guidance wrapper around either; it carries its forward process (`model.process`). `times` is
an explicit descending grid from the start time to 0 (`schedule.grid(steps)`). Each step goes
through the process's posterior q(z_s | z_t, x = x0_hat), so the same code samples DDPM
(F = identity), NDM and the noise-free process. x: [*batch, *event], e.g. [G, B, D] for an
ensemble; every time is one scalar per step, broadcast over the batch.

Speed: the times are checked and the per-step constants computed once, before the loop, as
device tensors; a step is one model call and a few fused tensor operations, with no
host-device synchronisation. For a plain `Denoiser` (no clip) on a Gaussian process the
conversion to x0_hat is folded into the step's constants (`_direct_plan`): one network call and
two tensor operations per step, the same update up to rounding. Sampling runs without
autograd; a guidance wrapper that needs a gradient (classifier guidance) enables it for its
own computation. Chapter 3 adds `ancestral_sample` (DDPM with the variance beta_t) and
`ddim_invert` (data to latent).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffusion_study.base import rng
from diffusion_study.base.args import choose, probability
from diffusion_study.base.tensors import check_model_input
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import REVERSE_VARIANCES
from diffusion_study.core.predictions import to_eps, to_x0
from diffusion_study.core.processes import StepCoefficients


def time_grid(schedule, steps: int | None = None) -> Tensor:
    """Descending times [steps + 1] from 1 to 0 (`schedule.grid`): DDIM's evenly spaced ('linear') skipping."""
    return schedule.grid(steps)


def _prepare(model, x: Tensor, times, eta: float):
    """Checked times on x's device and the per-step constants cast to x: done once per sampling run."""
    process = model.process
    times = process.schedule.check_times(times)
    if times.ndim != 1 or len(times) < 2 or not (torch.diff(times) < 0).all():
        raise ValueError("times must be a descending 1-D grid of at least two times, e.g. schedule.grid(steps)")
    coefs = process.step_coefficients(times[1:], times[:-1], eta)
    return process, times.to(x.device), coefs.table(x), coefs.var.sqrt().to(x)


def _direct_plan(model, process, times: Tensor, coefs: StepCoefficients, like: Tensor, extra_args: dict):
    """The fast path of a plain `Denoiser` (no clip, not 'prev') on a Gaussian forward process.

    Its step mean x_coef x0_hat + noise z, with x0_hat = a z + b output affine in the network output
    (a, b read off `predictions.to_x0` at unit inputs, so the conversion stays in one place), folds into
    z_s = A z + B output, A = noise + x_coef a, B = x_coef b: one network call and two tensor operations
    per step. Returns ([steps, 4] constants (A, B, a, b) cast to `like`, float32 network times [steps]) or
    None for any other model (an Oracle, a guidance wrapper, a clipped or NDM denoiser).
    """
    if (type(model) is not Denoiser or model.clip is not None or model.prediction == "prev"
            or not process.is_identity or set(extra_args) - {"y"}):
        return None
    alpha, sigma = process.alpha_sigma(times[:-1]).unbind(-1)  # float64 [steps]
    ones, zeros = torch.ones_like(alpha), torch.zeros_like(alpha)
    a, b = to_x0(model.prediction, zeros, ones, alpha, sigma), to_x0(model.prediction, ones, zeros, alpha, sigma)
    coef = torch.stack([coefs.noise + coefs.x_coef * a, coefs.x_coef * b, a, b], -1)
    return coef.to(device=like.device, dtype=like.dtype), process.schedule.time(times[:-1]).to(like.device)


def _step_means(model, process, x: Tensor, times: Tensor, table: Tensor, extra_args: dict, eta: float):
    """mean(i, z) -> (mean of z at times[i + 1], x0_hat or what `_x0` turns into it): the deterministic part of
    step i (DDIM's eq. 12 with the given eta), through the fast path when `_direct_plan` allows it, else through
    model(z, t) -> x0_hat and the process's posterior mean."""
    coefs = process.step_coefficients(times[1:], times[:-1], eta)
    plan = _direct_plan(model, process, times, coefs, x, extra_args)
    if plan is None:
        def mean(i, z):
            x0_hat = model(z, times[i], **extra_args)
            return process.posterior_mean(StepCoefficients.row(table, i), x0_hat, z, times[i + 1], times[i]), x0_hat
        return mean
    coef, net_times = plan
    rows, y = coef.unbind(0), extra_args.get("y")
    taus = net_times.expand(model.batch_shape(x) + net_times.shape).movedim(-1, 0)  # [steps, *batch] views

    def fast_mean(i, z):
        A, B, a, b = rows[i].unbind()
        out = model.net(z, taus[i]) if y is None else model.net(z, taus[i], y)
        return torch.addcmul(z * A, B, out), (a, b, out)
    return fast_mean


def _x0(step_out, z):
    """x0_hat from a step's second output (the fast path defers it until a callback asks)."""
    if isinstance(step_out, tuple):
        a, b, out = step_out
        return torch.addcmul(z * a, b, out)
    return step_out


@torch.no_grad()
def ddim_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, eta: float = 0.0,
                generator=None, progress: bool = False) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
    c = eta * posterior std. eta = 0 is deterministic; eta = 1 is DDPM's ancestral sampler.

    x: the start z at times[0]; returns z at times[-1] (x0 when the grid ends at 0), shaped like x.
    callback({'i', 't', 'z', 'x0_hat'}) is called after every step.
    """
    eta = probability("eta", eta)
    check_model_input(model, x, where="ddim_sample: ", y=(extra_args or {}).get("y"))
    process, times, table, std = _prepare(model, x, times, eta)
    extra_args = extra_args or {}
    mean = _step_means(model, process, x, times, table, extra_args, eta)
    z = x
    for i in tqdm(range(len(times) - 1), desc="sampling", disable=not progress):
        z_in = z
        z, x0_hat = mean(i, z)
        if eta > 0:
            z = torch.addcmul(z, std[i], rng.randn(z.shape, z, generator))
        if callback is not None:
            callback({"i": i, "t": times[i + 1], "z": z, "x0_hat": _x0(x0_hat, z_in)})
    return z


def ddpm_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, generator=None,
                progress: bool = False) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): z_s ~ q(z_s | z_t, x0_hat), variance beta~_t."""
    check_model_input(model, x, where="ddpm_sample: ", y=(extra_args or {}).get("y"))
    return ddim_sample(model, x, times, extra_args, callback, eta=1.0, generator=generator, progress=progress)


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample}


def get_sampler(name: str):
    """A sampler by name: 'ddpm' or 'ddim' (same signature)."""
    return SAMPLERS[choose("sampler", name, SAMPLERS)]


@torch.no_grad()
def ancestral_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *,
                     variance: str = "beta", generator=None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) with a chosen reverse variance sigma_t^2:
    z_s = mu~(x0_hat, z_t) + sigma_t noise (no noise on the last step, to t = 0).

    variance 'posterior' is sigma_t^2 = beta~_t (= `ddpm_sample`); 'beta' is sigma_t^2 = beta_t, on a
    skipped grid the transition variance sigma_{t|s}^2 = 1 - alpha_t^2 / alpha_s^2 (Song et al.'s
    sigma-hat, "DDPM with the larger variance"). F = identity (Gaussian forward process) only.
    """
    choose("reverse variance", variance, REVERSE_VARIANCES)
    check_model_input(model, x, where="ancestral_sample: ", y=(extra_args or {}).get("y"))
    process, times, table, _ = _prepare(model, x, times, 1.0)
    coefs = process.step_coefficients(times[1:], times[:-1], 1.0)
    var = coefs.posterior_var if variance == "posterior" else coefs.transition_var
    std = torch.where(times[1:] == 0, 0.0, var).sqrt().to(x)  # Algorithm 2: no noise on the step to the data
    extra_args = extra_args or {}
    mean = _step_means(model, process, x, times, table, extra_args, 1.0)
    z = x
    for i in range(len(times) - 1):
        z_in = z
        z, x0_hat = mean(i, z)
        z = torch.addcmul(z, std[i], rng.randn(z.shape, z, generator))
        if callback is not None:
            callback({"i": i, "t": times[i + 1], "z": z, "x0_hat": _x0(x0_hat, z_in)})
    return z


def _ddim_half(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, generator=None) -> Tensor:
    return ddim_sample(model, x, times, extra_args, callback, eta=0.5, generator=generator)


def _ddim(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, generator=None) -> Tensor:
    return ddim_sample(model, x, times, extra_args, callback, eta=0.0, generator=generator)


def _ddpm_beta(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, generator=None) -> Tensor:
    return ancestral_sample(model, x, times, extra_args, callback, variance="beta", generator=generator)


# The reverse samplers by a name that states their reverse variance, all with the signature
# sample(model, x, times, extra_args=None, callback=None, *, generator=None) -> z at times[-1]:
#   ddpm-beta        DDPM ancestral, sigma_t^2 = beta_t (Ho et al.'s larger variance; Song et al.'s sigma-hat)
#   ddpm-beta-tilde  DDPM ancestral, sigma_t^2 = beta~_t, the posterior variance (= DDIM with eta = 1)
#   ddim-eta0.5      DDIM with eta = 0.5: half the posterior standard deviation
#   ddim             DDIM with eta = 0: no noise, deterministic given x_T
REVERSE_SAMPLERS = {"ddpm-beta": _ddpm_beta, "ddpm-beta-tilde": ddpm_sample, "ddim-eta0.5": _ddim_half, "ddim": _ddim}


def reverse_sampler(name: str):
    """The sampler of `REVERSE_SAMPLERS` called `name`; ValueError listing the valid names otherwise."""
    if name not in REVERSE_SAMPLERS:
        raise ValueError(f"unknown reverse sampler {name!r}; valid names: {', '.join(REVERSE_SAMPLERS)}")
    return REVERSE_SAMPLERS[name]


@torch.no_grad()
def ddim_invert(model, x: Tensor, times, extra_args: dict | None = None, callback=None) -> Tensor:
    """DDIM inversion (Song et al. 2021, sec. 4.3: eq. 12 with eta = 0 run from data to noise): the latent
    z at times[0] that `ddim_sample(model, z, times, eta=0)` maps back to x (approximately).

    `times` is the sampler's descending grid, walked backwards. A step s -> t (s < t) is
    z_t = alpha_t x0 + sigma_t eps with eps = eps_hat(z_s, t) and x0 = (z_s - sigma_s eps) / alpha_s:
    the model is read at the target time t (at s = 0, z_0 = x carries no noise to predict), the usual
    approximation eps_hat(z_t, t) ~ eps_hat(z_s, t), whose error vanishes as the steps shrink.
    x: [*batch, *event] at times[-1]; returns z at times[0], shaped like x.
    """
    check_model_input(model, x, where="ddim_invert: ", y=(extra_args or {}).get("y"))
    process = model.process
    times = process.schedule.check_times(times)
    if times.ndim != 1 or len(times) < 2 or not (torch.diff(times) < 0).all():
        raise ValueError("times must be a descending 1-D grid of at least two times, e.g. schedule.grid(steps)")
    pairs = process.alpha_sigma(times).to(x)  # [K + 1, 2], cast once
    extra_args = extra_args or {}
    z = x
    for i in range(len(times) - 1, 0, -1):
        t = times[i - 1]
        (a_s, s_s), (a_t, s_t) = pairs[i].unbind(), pairs[i - 1].unbind()
        eps = to_eps("x0", model(z, t, **extra_args), z, a_t, s_t)
        z = a_t * (z - s_s * eps) / a_s + s_t * eps
        if callback is not None:
            callback({"i": i, "t": t, "z": z})
    return z
