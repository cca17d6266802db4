"""Sampler overhead per step against diffusers, and the convention cross-check, in one run.

1. Overhead per step, CPU, one thread, linear T = 1000, 50-step grid: this library's `ddim_sample`
   (eta 0) and `ddpm_sample` against diffusers' `DDIMScheduler.step` / `DDPMScheduler.step` looped
   over `scheduler.timesteps` (trailing spacing, `set_timesteps` outside the timing). The "network"
   is trivial, eps = 0.1 z, so the step is all overhead:
     - toy:   z [10000, 2];
     - image: z [64, 3, 32, 32].
   A timing is a whole sampling call / steps (our once-per-call preparation included).
   Beside them the noise draw alone (torch.randn of z's shape, once per step): the DDPM step's floor.
2. The same on [64, 3, 32, 32] with a small U-Net (UNet(3, base=16, mults=(1, 2)), 2 threads,
   5-step grid): the whole step, network included, and the network alone, so that the sampler's
   share of a real step shows.
3. The convention cross-check (`crosscheck.py`) for 'linear' and 'squaredcos_cap_v2'.

    .venv/bin/python bench/sampler_step.py                 # about 2 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common
import torch
from crosscheck import cross_check, diffusers_schedulers
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample, ddpm_sample
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.nets.models import UNet, count_parameters

T = 1000


def variants(x: torch.Tensor, steps: int, net=None) -> dict:
    """{name: fn() running one `steps`-step sampling loop} with eps = net(z, t) (default 0.1 z)."""
    process = GaussianForward(discrete_schedule("linear", T))
    times = process.schedule.grid(steps)
    B = x.shape[0]
    if net is None:
        ours_net = lambda z, t: 0.1 * z  # noqa: E731
        theirs = lambda z, k: 0.1 * z  # noqa: E731
    else:
        ours_net = net
        theirs = lambda z, k: net(z, ((k + 1) / T).expand(B))  # noqa: E731  diffusers' k is our step k + 1
    model = Denoiser(ours_net, process, prediction="eps")
    ddim, ddpm = diffusers_schedulers("linear", T, steps)
    ddim_t, ddpm_t = list(ddim.timesteps), list(ddpm.timesteps)  # the 0-dim tensors a pipeline iterates
    g = torch.Generator()

    @torch.no_grad()
    def diffusers_ddim():
        z = x
        for k in ddim_t:
            z = ddim.step(theirs(z, k), k, z, eta=0.0, return_dict=False)[0]
        return z

    @torch.no_grad()
    def diffusers_ddpm():
        z, gen = x, g.manual_seed(0)
        for k in ddpm_t:
            z = ddpm.step(theirs(z, k), k, z, generator=gen, return_dict=False)[0]
        return z

    return {"ours_ddim": lambda: ddim_sample(model, x, times),
            "diffusers_ddim": diffusers_ddim,
            "ours_ddpm": lambda: ddpm_sample(model, x, times, generator=g.manual_seed(0)),
            "diffusers_ddpm": diffusers_ddpm}


PAIRS = [("ours_ddim", "diffusers_ddim"), ("ours_ddpm", "diffusers_ddpm")]


def overhead(shape, steps: int, loops: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    fns = variants(x, steps)
    g = torch.Generator()

    def noise_only():  # the DDPM step's noise draw alone: a floor for any sampler drawing the same noise
        g.manual_seed(0)
        for _ in range(steps):
            torch.randn(x.shape, generator=g)
    fns["noise_only"] = noise_only
    timed = {k: (lambda f=f: [f() for _ in range(loops)]) for k, f in fns.items()}
    raw = common.interleaved(timed, repeats, warmup=2, per=loops * steps)
    return {"noise_floor_ratio": common.paired(raw["noise_only"], raw["diffusers_ddpm"]),
            "ddpm_without_noise_ratio": common.paired([a - n for a, n in zip(raw["ours_ddpm"], raw["noise_only"])],
                                                      [b - n for b, n in zip(raw["diffusers_ddpm"], raw["noise_only"])]),
            "shape": list(shape), "threads": 1, "steps": steps, "loops_per_repeat": loops, "repeats": repeats,
            "results": {k: common.summary(v) for k, v in raw.items()},
            "us_per_step_median": {k: 1e6 * statistics.median(v) for k, v in raw.items()},
            "ratios": common.ratios(raw, PAIRS)}


def with_unet(steps: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = UNet(channels=3, base=16, mults=(1, 2)).eval()
    with torch.no_grad():  # a non-zero output layer (the U-Net's starts at 0)
        for p in net.out.parameters():
            p.normal_(0, 0.02)
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fns = variants(x, steps, net)
    t = torch.full((64,), 0.5)

    @torch.no_grad()
    def network_only():
        for _ in range(steps):
            net(x, t)
    fns["network_only"] = network_only
    raw = common.interleaved(fns, repeats, warmup=1, per=steps)
    med = {k: statistics.median(v) for k, v in raw.items()}
    share = {k: common.paired([a - b for a, b in zip(raw[k], raw["network_only"])], raw[k])
             for k in fns if k != "network_only"}
    return {"shape": [64, 3, 32, 32], "threads": threads, "steps": steps, "repeats": repeats,
            "unet": {"channels": 3, "base": 16, "mults": [1, 2], "parameters": count_parameters(net)},
            "results": {k: common.summary(v) for k, v in raw.items()},
            "ms_per_step_median": {k: 1e3 * v for k, v in med.items()},
            "ratios": common.ratios(raw, PAIRS + [(k, "network_only") for k in fns if k != "network_only"]),
            "sampler_share_of_step_paired": share,
            "note": "sampler share = (step - network alone) / step, paired per round (noisy: the difference "
                    "of two large timings)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--unet-repeats", type=int, default=5)
    parser.add_argument("--unet-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of the U-Net part")
    common.add_run_arguments(parser)
    args = parser.parse_args()
    common.budget(args.budget)
    started, load = time.perf_counter(), os.getloadavg()
    payload = {"parameters": {**vars(args), "T": T, "schedule": "linear", "eps_model": "0.1 z (overhead parts)"}}
    payload["toy"] = overhead((10_000, 2), 50, 4, args.repeats)
    print("toy [10000, 2], us/step:", {k: round(v, 1) for k, v in payload["toy"]["us_per_step_median"].items()},
          flush=True)
    payload["image"] = overhead((64, 3, 32, 32), 50, 1, args.repeats)
    print("image [64, 3, 32, 32], us/step:",
          {k: round(v, 1) for k, v in payload["image"]["us_per_step_median"].items()}, flush=True)
    payload["unet"] = with_unet(args.unet_steps, args.unet_repeats, args.threads)
    print("U-Net step, ms:", {k: round(v, 1) for k, v in payload["unet"]["ms_per_step_median"].items()}, flush=True)
    torch.set_num_threads(1)
    payload["cross_check"] = {name: cross_check(name) for name in ("linear", "squaredcos_cap_v2")}
    for name, c in payload["cross_check"].items():
        print(f"cross-check {name}: DDIM {c['ddim_float32']:.2g}, DDPM {c['ddpm_float32']:.2g}, "
              f"shift {c['index_shift']}, agree {c['agree']}", flush=True)
    common.write_result("sampler_step", payload, started, args.out, load)


if __name__ == "__main__":
    main()
