"""The sampler's overhead per step against diffusers' DDIMScheduler.step, in one process.

Trivial eps-model (0.1 z) on [10000, 2] float32, linear T = 1000, a 50-step grid, one thread; both
loops include the model call; medians of 15 interleaved loops. Needs `pip install -e .[bench]`.

    .venv/bin/python bench/ddim_vs_diffusers.py
"""

import statistics
import time

import torch
from diffusers import DDIMScheduler
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample
from diffusion_study.core.schedules import discrete_schedule


def main(repeats: int = 15, steps: int = 50) -> None:
    torch.set_num_threads(1)
    process = GaussianForward(discrete_schedule("linear", 1000))
    model = Denoiser(lambda z, t: 0.1 * z, process, prediction="eps")
    x = torch.randn(10000, 2, generator=torch.Generator().manual_seed(0))
    times = process.schedule.grid(steps)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              clip_sample=False)
    scheduler.set_timesteps(steps)

    def ours():
        ddim_sample(model, x, times)

    def theirs():
        z = x
        for t in scheduler.timesteps:
            z = scheduler.step(0.1 * z, t, z, eta=0.0).prev_sample

    runs = {"this library": [], "diffusers": []}
    pair = (("this library", ours), ("diffusers", theirs))
    for _, f in pair:
        f()  # warm-up
    for r in range(repeats):
        for name, f in pair if r % 2 else pair[::-1]:
            start = time.perf_counter()
            f()
            runs[name].append((time.perf_counter() - start) / steps * 1e6)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"us per step (median of {repeats}): this library {med['this library']:.1f}, diffusers "
          f"{med['diffusers']:.1f}; ratio {med['this library'] / med['diffusers']:.2f}")


if __name__ == "__main__":
    main()
