"""Chapter 3's measurements: sampler sweeps, DDIM inversion, guidance sweeps and their summaries.

Everything takes ensembles: x: [G, N, *event] with G independent models (seeds) sampled in one
call, so every measurement comes back per seed, [..., G], for `stats.mean_interval`.
Samplers are named once here (`SAMPLERS`); wall times are measured around each call and
returned beside the quality, never printed (they vary from run to run).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from diffusion_study.core.ode import ode_solve
from diffusion_study.core.samplers import ddim_invert, ddim_sample, reverse_sampler
from diffusion_study.eval.stats import mean_interval

# The chapter's samplers: names of `core.samplers.REVERSE_SAMPLERS` (each states its reverse variance) -> label.
SAMPLERS: dict[str, str] = {
    "ddpm-beta": "DDPM ancestral ($\\sigma_t^2 = \\beta_t$)",
    "ddpm-beta-tilde": "DDPM ancestral ($\\tilde\\beta_t$, DDIM $\\eta = 1$)",
    "ddim-eta0.5": "DDIM $\\eta = 0.5$",
    "ddim": "DDIM $\\eta = 0$",
}


def run_sampler(name: str, model, x: Tensor, steps: int, extra_args: dict | None = None, generator=None):
    """(samples shaped like x, seconds) of reverse sampler `name` on `steps` evenly spaced steps of the model's schedule."""
    sampler = reverse_sampler(name)
    times = model.process.schedule.grid(steps)
    started = time.perf_counter()
    out = sampler(model, x, times, extra_args, generator=generator)
    return out, time.perf_counter() - started


@dataclass
class Sweep:
    """quality[name][k]: per-seed metric [G] at steps[k]; nfe[name][k]: model calls; seconds[name][k]: wall time."""

    steps: dict[str, list[int]] = field(default_factory=dict)
    quality: dict[str, list[np.ndarray]] = field(default_factory=dict)
    nfe: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, steps: int, quality, nfe: int, seconds: float) -> None:
        for store, value in ((self.steps, steps), (self.quality, np.asarray(quality, dtype=float)),
                             (self.nfe, nfe), (self.seconds, seconds)):
            store.setdefault(name, []).append(value)

    def at(self, name: str, steps: int) -> np.ndarray:
        """The per-seed metric [G] of sampler `name` at `steps`."""
        return self.quality[name][self.steps[name].index(steps)]

    def to_dict(self) -> dict:
        return {"steps": self.steps, "quality": {k: [q.tolist() for q in v] for k, v in self.quality.items()},
                "nfe": self.nfe, "seconds": self.seconds}


def sampler_sweep(model, x_T: Tensor, steps: list[int], metric: Callable[[Tensor], np.ndarray], *,
                  names=tuple(SAMPLERS), seed: int = 0, extra_args: dict | None = None,
                  sweep: Sweep | None = None) -> Sweep:
    """Every named sampler at every number of steps from the same start x_T [G, N, *event]; metric(samples) -> [G].

    The noise of the stochastic samplers comes from a generator seeded with `seed` for every run.
    """
    sweep = sweep or Sweep()
    for name in names:
        for n in steps:
            samples, seconds = run_sampler(name, model, x_T, n, extra_args, torch.Generator().manual_seed(seed))
            sweep.add(name, n, metric(samples), n, seconds)
    return sweep


def ode_sweep(model, x_T: Tensor, configs: dict[str, list[dict]], metric: Callable[[Tensor], np.ndarray], *,
              sweep: Sweep | None = None, extra_args: dict | None = None) -> Sweep:
    """Probability-flow ODE samplers: configs = {name: [ode_solve keyword dicts, with 'steps' for fixed-step ones]}.

    The 'steps' entry of a fixed-step config is the number of equal steps in t (model calls: stages x steps);
    an adaptive config records its tolerance as its 'steps' key in the sweep (`rtol`)."""
    sweep = sweep or Sweep()
    for name, runs in configs.items():
        for kw in runs:
            kw = dict(kw)
            steps = kw.pop("steps", None)
            times = model.process.schedule.grid(steps) if steps else torch.tensor([1.0, 0.0], dtype=torch.float64)
            started = time.perf_counter()
            solution = ode_solve(model, x_T, times, extra_args, **kw)
            sweep.add(name, steps or kw.get("rtol"), metric(solution.z), solution.nfe, time.perf_counter() - started)
    return sweep


def inversion_error(model, x: Tensor, steps: list[int], extra_args: dict | None = None) -> np.ndarray:
    """RMS of decode(encode(x)) - x per seed, [len(steps), G]: DDIM inversion then DDIM (eta = 0) on the same grid.

    x: [G, N, *event]; the RMS is over examples and event dims.
    """
    out = []
    for n in steps:
        times = model.process.schedule.grid(n)
        latent = ddim_invert(model, x, times, extra_args)
        back = ddim_sample(model, latent, times, extra_args, eta=0.0)
        out.append((back - x).double().pow(2).flatten(1).mean(1).sqrt().numpy())
    return np.stack(out)


class EnergyDistanceTo:
    """x -> energy distance of x: [*batch, N, D] to a fixed reference y: [M, D], [*batch] as numpy.

    The same V-statistic as `metrics.energy_distance`, 2 E|X-Y| - E|X-X'| - E|Y-Y'|, with the reference's own term
    E|Y-Y'| computed once instead of per call and per batch member (it is the M^2 part of the cost).
    """

    def __init__(self, reference: Tensor):
        self.reference = reference.double()
        self.self_term = float(torch.cdist(self.reference, self.reference).mean())

    def __call__(self, x: Tensor) -> np.ndarray:
        x = x.double()
        xy = torch.cdist(x, self.reference.expand(x.shape[:-2] + self.reference.shape)).mean((-2, -1))
        xx = torch.cdist(x, x).mean((-2, -1))
        return np.atleast_1d((2 * xy - xx - self.self_term).numpy())


# ---------------------------------------------------------------------------------------------
# Guidance: precision against diversity, per class
# ---------------------------------------------------------------------------------------------


def class_blocks(labels_per_class: int, K: int, G: int) -> Tensor:
    """Requested labels [G, K * n]: class c in columns c n .. (c + 1) n - 1 for every member."""
    return torch.arange(K).repeat_interleave(labels_per_class).expand(G, -1).clone()


def precision(predicted: Tensor, requested: Tensor) -> np.ndarray:
    """Share of samples whose predicted class is the requested one, per seed: [G, N] -> [G]."""
    return (predicted == requested).double().mean(-1).numpy()


def within_class_spread(features: Tensor, K: int) -> np.ndarray:
    """sqrt(trace Cov) of each requested class's samples, averaged over classes: features [G, K n, F] -> [G]."""
    blocks = features.double().unflatten(1, (K, -1))  # [G, K, n, F]
    centred = blocks - blocks.mean(2, keepdim=True)
    return centred.pow(2).sum(-1).mean(-1).sqrt().mean(-1).numpy()


def held_out_distance(features: Tensor, held_out: list[Tensor], K: int) -> np.ndarray:
    """Energy distance of each class's samples to that class's held-out data, averaged over classes: [G].

    features: [G, K n, F]; held_out[c]: [M_c, F]."""
    blocks = features.double().unflatten(1, (K, -1))
    return np.mean([EnergyDistanceTo(held_out[c])(blocks[:, c]) for c in range(K)], axis=0)


# ---------------------------------------------------------------------------------------------
# Summaries and verdicts
# ---------------------------------------------------------------------------------------------


def relative_rms(estimate: Tensor, exact: Tensor) -> float:
    """||estimate - exact|| / ||exact|| over all entries (float64)."""
    estimate, exact = estimate.double(), exact.double()
    return float((estimate - exact).pow(2).sum().sqrt() / exact.pow(2).sum().sqrt())


def log_ratio(a, b) -> np.ndarray:
    """log(a / b) per seed."""
    return np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float))


def interval_text(values, fmt: str = ".3f", scale: float = 1.0) -> str:
    """'mean ± half-width' of the 95% interval over seeds (values multiplied by `scale`)."""
    iv = mean_interval(np.asarray(values, dtype=float) * scale)
    return f"{format(iv.mean, fmt)} ± {format(iv.half_width, fmt.replace('+', ''))}"


def ratio_text(log_values, fmt: str = ".2f") -> str:
    """A log-ratio interval shown as a ratio: 'exp(mean) [exp(low), exp(high)]'."""
    iv = mean_interval(log_values)
    return f"{format(math.exp(iv.mean), fmt)} [{format(math.exp(iv.low), fmt)}, {format(math.exp(iv.high), fmt)}]"


def tile_images(rows: list[Tensor], pad: float = -1.0) -> Tensor:
    """A grid image from rows of images: rows[r]: [C, H, W] (C images of H x W) -> [R (H + 2), C (W + 2)], padded with
    `pad` (-1: the background of images in [-1, 1])."""
    padded = [torch.cat([torch.nn.functional.pad(im, (1, 1, 1, 1), value=pad) for im in row], 1) for row in rows]
    return torch.cat(padded, 0)
