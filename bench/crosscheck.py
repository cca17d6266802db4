"""Convention cross-check: this library's DDIM and DDPM updates against diffusers' schedulers.

The same eps-model, schedule, start noise and noise draws go through this library's 50-step
`ddim_sample` / `ddpm_sample` and through diffusers' `DDIMScheduler.step` / `DDPMScheduler.step`.
The eps-model is the exact E[eps | z_t] of data N(0, DATA_STD^2 I), so the samples stay O(1).

Conventions (what makes the two agree):
- index shift 1: diffusers' `alphas_cumprod[k]` is this library's alpha_bar at step k + 1
  (its entry 0 is 1 - beta_1; ours, alpha_bar_0 = 1, is the data), so diffusers' timestep k is
  our time (k + 1) / T, which is what the eps-model is fed;
- spacing 'trailing': our grid round(linspace(T, 0, steps + 1)) is diffusers' "trailing"
  timesteps T - 1, ..., with the final step to alpha_bar = 1 (`set_alpha_to_one=True`);
- DDPM: `variance_type="fixed_small"` (the posterior variance beta~), same torch.Generator;
- schedules: 'linear' (beta 1e-4 .. 0.02) is ours "linear"; 'squaredcos_cap_v2' (betas from the
  cosine alpha_bar, capped at 0.999) is ours "cosine".

Three comparisons: float32 as each library builds its tables (diffusers: a float32 cumprod of the
betas); float32 with diffusers' alphas_cumprod replaced by ours (the updates alone, float32 rounding);
float64 with our tables (the formulas: equal to ~1e-13). Agreement: float64 within 1e-8 and float32
within 1e-4. Each side's float32 error against the float64 result is recorded too (DDIM): with
'squaredcos_cap_v2' this library's is the larger one (alpha at the first step is ~1e-4, and the fast
path's folded constants A z + B eps_hat cancel), 2.9e-5 against diffusers' 7e-7 at 50 steps.

    .venv/bin/python bench/crosscheck.py      # prints the table (needs diffusers)
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py
from common import diffusers_loop  # noqa: E402
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample, ddpm_sample
from diffusion_study.core.schedules import discrete_schedule

OURS = {"linear": "linear", "squaredcos_cap_v2": "cosine"}
DATA_STD = 0.5
TOLERANCE = 1e-4  # float32: max abs difference of O(1) samples after the run


def exact_eps_model(schedule, T: int):
    """eps_hat(z, tau) = sigma z / (alpha^2 DATA_STD^2 + sigma^2) at our time tau (a step i / T)."""
    alpha_bar = schedule.alpha_bar  # float64 [T + 1]

    def eps(z, tau):
        ab = alpha_bar[(tau.double() * T).round().long()]
        scale = (1 - ab).sqrt() / (ab * DATA_STD**2 + 1 - ab)
        return z * scale.to(z.dtype).reshape(scale.shape + (1,) * (z.ndim - scale.ndim))
    return eps


def diffusers_schedulers(beta_schedule: str, T: int = 1000, steps: int = 50, spacing: str = "trailing"):
    from diffusers import DDIMScheduler, DDPMScheduler

    common = {"num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": beta_schedule,
              "clip_sample": False, "timestep_spacing": spacing}
    ddim = DDIMScheduler(**common, set_alpha_to_one=True)
    ddpm = DDPMScheduler(**common, variance_type="fixed_small")
    ddim.set_timesteps(steps)
    ddpm.set_timesteps(steps)
    return ddim, ddpm


def _diff(a, b) -> float:
    d = (a.double() - b.double()).abs().max().item()
    return d if math.isfinite(d) else float("inf")


def cross_check(beta_schedule: str, *, T: int = 1000, steps: int = 50, shape=(4096, 2), seed: int = 7) -> dict:
    """Max abs differences of this library's DDIM / DDPM samples from diffusers' (float32, and float64 with
    diffusers' tables replaced by ours), the index shift that aligns the tables and the grids."""
    schedule = discrete_schedule(OURS[beta_schedule], T)
    process = GaussianForward(schedule)
    eps = exact_eps_model(schedule, T)
    model = Denoiser(lambda z, tau: eps(z, tau), process, prediction="eps")
    times = schedule.grid(steps)
    x32 = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    ddim, ddpm = diffusers_schedulers(beta_schedule, T, steps)
    ours_steps = (times[:-1] * T).round().long()
    out = {"schedule": beta_schedule, "ours": OURS[beta_schedule], "T": T, "steps": steps, "shape": list(shape),
           "spacing": "trailing", "grids_match_with_shift_1": bool(torch.equal(ours_steps, ddim.timesteps + 1))}
    dif = ddim.alphas_cumprod.double()
    shifts = {}
    for shift in (0, 1):
        ours = schedule.alpha_bar[shift:T + shift]
        shifts[shift] = ((dif - ours) / ours).abs().max().item()
    out["alphas_cumprod_max_rel_diff_by_shift"] = shifts
    out["index_shift"] = min(shifts, key=shifts.get)

    ours_ddim = ddim_sample(model, x32, times)
    out["max_abs_value"] = ours_ddim.abs().max().item()
    out["ddim_float32"] = _diff(diffusers_loop(ddim, eps, x32, T), ours_ddim)
    ours_ddpm = ddpm_sample(model, x32, times, generator=torch.Generator().manual_seed(11))
    out["ddpm_float32"] = _diff(diffusers_loop(ddpm, eps, x32, T, torch.Generator().manual_seed(11)), ours_ddpm)
    # diffusers' tables replaced by ours (shifted by one), in float32 and in float64: the updates alone
    for dtype in (torch.float32, torch.float64):
        for sch in (ddim, ddpm):
            sch.alphas_cumprod = schedule.alpha_bar[1:].to(dtype)
        ddim.final_alpha_cumprod = torch.tensor(1.0, dtype=dtype)
        ddpm.one = torch.tensor(1.0, dtype=dtype)
        if dtype == torch.float32:
            shared32 = {"ddim": diffusers_loop(ddim, eps, x32, T),
                        "ddpm": diffusers_loop(ddpm, eps, x32, T, torch.Generator().manual_seed(11))}
            out["ddim_float32_shared_tables"] = _diff(shared32["ddim"], ours_ddim)
            out["ddpm_float32_shared_tables"] = _diff(shared32["ddpm"], ours_ddpm)
    x64 = x32.double()
    ours64 = {"ddim": ddim_sample(model, x64, times),
              "ddpm": ddpm_sample(model, x64, times, generator=torch.Generator().manual_seed(11))}
    out["ddim_float64_our_tables"] = _diff(diffusers_loop(ddim, eps, x64, T), ours64["ddim"])
    out["ddpm_float64_our_tables"] = _diff(
        diffusers_loop(ddpm, eps, x64, T, torch.Generator().manual_seed(11)), ours64["ddpm"])
    # each side's float32 rounding error against the float64 result (DDIM: deterministic; DDPM's float32
    # and float64 noise draws differ)
    out["ddim_float32_error_ours"] = _diff(ours_ddim, ours64["ddim"])
    out["ddim_float32_error_diffusers"] = _diff(shared32["ddim"], ours64["ddim"])
    other, _ = diffusers_schedulers(beta_schedule, T, steps, "leading")
    out["ddim_float32_leading_spacing"] = _diff(diffusers_loop(other, eps, x32, T), ours_ddim)
    out["tolerance"] = TOLERANCE
    out["agree"] = bool(out["index_shift"] == 1 and out["grids_match_with_shift_1"]
                        and max(out["ddim_float64_our_tables"], out["ddpm_float64_our_tables"]) <= 1e-8
                        and max(out["ddim_float32"], out["ddpm_float32"]) <= TOLERANCE)
    return out


if __name__ == "__main__":
    for name in OURS:
        print(cross_check(name))
