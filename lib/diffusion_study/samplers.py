"""Samplers: functions of (denoiser, process, x_T, steps) with one signature.

`denoiser(z, t) -> x0_hat` is any callable: a trained `Denoiser` or an exact oracle such as
`GaussianMixture.denoiser`. Each step goes through the process's posterior
q(z_s | z_t, x = x0_hat), so the same code samples DDPM (F = identity) and NDM.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import rng
from .schedules import DiscreteSchedule
from .validation import choose, positive_int, probability


def time_grid(schedule, steps: int) -> Tensor:
    """Descending times [steps + 1] from the last time to 0: evenly spaced integers for a
    discrete schedule (DDIM's 'linear' skipping), evenly spaced floats for a continuous one."""
    steps = positive_int("steps", steps)
    if isinstance(schedule, DiscreteSchedule):
        if steps > schedule.T:
            raise ValueError(f"steps must be at most T={schedule.T}, got {steps}")
        return torch.linspace(schedule.T, 0, steps + 1, dtype=torch.float64).round().long()
    return torch.linspace(1, 0, steps + 1, dtype=torch.float64)


@torch.no_grad()
def ddim_sample(denoiser, process, x_T: Tensor, *, steps: int | None = None, eta: float = 0.0, generator=None,
                progress: bool = False, return_path: bool = False):
    """DDIM (Song et al. 2021, eq. 12): z_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
    c = eta * posterior std. eta = 0 is deterministic; eta = 1 is DDPM's ancestral sampler.

    x_T: [B, ...] start noise; steps defaults to every step of a discrete schedule.
    Returns x_0 [B, ...] (and the list of all z along the path if `return_path`).
    """
    eta = probability("eta", eta)
    sched = process.schedule
    grid = time_grid(sched, steps if steps is not None else getattr(sched, "T", 1000))
    batch = x_T.shape[:1]
    z, path = x_T, [x_T]
    for t, s in tqdm(list(zip(grid[:-1], grid[1:])), desc="sampling", disable=not progress):
        tt, ss = t.to(x_T.device).expand(batch), s.to(x_T.device).expand(batch)
        mean, var = process.posterior(denoiser(z, tt), z, tt, ss, eta=eta)
        z = mean + var.sqrt() * rng.randn(z.shape, z, generator) if eta > 0 else mean
        path.append(z)
    return (z, path) if return_path else z


def ddpm_sample(denoiser, process, x_T: Tensor, *, steps: int | None = None, generator=None, progress: bool = False,
                return_path: bool = False):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): z_{t-1} ~ q(z_{t-1} | z_t, x0_hat), variance beta~_t."""
    return ddim_sample(denoiser, process, x_T, steps=steps, eta=1.0, generator=generator, progress=progress,
                       return_path=return_path)


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample}


def get_sampler(name: str):
    """A sampler by name: 'ddpm' or 'ddim' (same signature)."""
    return SAMPLERS[choose("sampler", name, SAMPLERS)]
