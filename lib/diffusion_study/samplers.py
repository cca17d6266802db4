"""Samplers: functions `sample(model, x, times, extra_args=None, callback=None, ...)` (chapter 3).

`model(z, t, **extra_args) -> x0_hat` is a `Denoiser`, an `Oracle` (exact denoiser) or a
guidance wrapper around either; it carries its forward process (`model.process`). `times` is
an explicit descending grid from the start time to 0 (`schedule.grid(steps)`). Each step goes
through the process's posterior q(z_s | z_t, x = x0_hat), so the same code samples DDPM
(F = identity), NDM and the noise-free process. x: [*batch, *event], e.g. [G, B, D] for an
ensemble; every time is one scalar per step, broadcast over the batch.

Speed: the times are checked and the per-step constants computed once, before the loop, as
device tensors; a step is one model call and a few fused tensor operations, with no
host-device synchronisation. Sampling runs without autograd; a guidance wrapper that needs a
gradient (classifier guidance) enables it for its own computation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import rng
from .processes import StepCoefficients
from .validation import choose, probability


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


@torch.no_grad()
def ddim_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, eta: float = 0.0,
                generator=None, progress: bool = False) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
    c = eta * posterior std. eta = 0 is deterministic; eta = 1 is DDPM's ancestral sampler.

    x: the start z at times[0]; returns z at times[-1] (x0 when the grid ends at 0), shaped like x.
    callback({'i', 't', 'z', 'x0_hat'}) is called after every step.
    """
    eta = probability("eta", eta)
    process, times, table, std = _prepare(model, x, times, eta)
    extra_args = extra_args or {}
    z = x
    for i in tqdm(range(len(times) - 1), desc="sampling", disable=not progress):
        t, s = times[i], times[i + 1]
        x0_hat = model(z, t, **extra_args)
        z = process.posterior_mean(StepCoefficients.row(table, i), x0_hat, z, s, t)
        if eta > 0:
            z = torch.addcmul(z, std[i], rng.randn(z.shape, z, generator))
        if callback is not None:
            callback({"i": i, "t": s, "z": z, "x0_hat": x0_hat})
    return z


def ddpm_sample(model, x: Tensor, times, extra_args: dict | None = None, callback=None, *, generator=None,
                progress: bool = False) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): z_s ~ q(z_s | z_t, x0_hat), variance beta~_t."""
    return ddim_sample(model, x, times, extra_args, callback, eta=1.0, generator=generator, progress=progress)


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample}


def get_sampler(name: str):
    """A sampler by name: 'ddpm' or 'ddim' (same signature)."""
    return SAMPLERS[choose("sampler", name, SAMPLERS)]
