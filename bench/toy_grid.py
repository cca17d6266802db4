"""How much faster is chapter 2's grid as one tensor program than the same runs one after another?

Grid side: the chapter's `ToyGrid` (every (process, schedule, target, seed) as one member of an
EnsembleMLP; the default grid has G = 100 members) trained by ONE `train(...)` call for the full
protocol (50 epochs of 10,000 points in batches of 64: 7,813 Adam steps).

Sequential side: the same runs, each a standalone `Denoiser(TimeMLP(2, hidden=20, depth=2, time_dim=8),
process, target)` trained by its own `train(...)` call with `objectives.simple_loss` (the pairing process: the
same squared error with the noise replaced by G(x)). A stratified subset is timed at the full
protocol: one run of each (process, target) pair, the schedule alternating; every pair has the same
number of members in the grid (2 schedules x seeds), so the sequential total is the timed sum
scaled by G / (runs timed). Both sides use the same loop (`train`), data, batch and threads.

    .venv/bin/python bench/toy_grid.py                       # the default grid, 1 thread (the chapter's)
    .venv/bin/python bench/toy_grid.py --steps 2000 --out /tmp/quick.json   # a quicker look, same scaling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import sample_time, simple_loss
from diffusion_study.core.predictions import target
from diffusion_study.data.toy2d import toy_split, two_gaussians
from diffusion_study.nets.models import TimeMLP
from diffusion_study.studies.toy_grid import (
    GaussianisingMap,
    GridSpec,
    PairingForward,
    ToyGrid,
    training_steps,
)
from diffusion_study.training.loop import train


def pairing_loss(model, batch, generator):
    """simple_loss with the pairing's noise G(x): batch [B, 4] = (x, G(x)) -> [B]."""
    x, paired = batch[:, :2], batch[:, 2:]
    t = sample_time(model.process.schedule, (len(x),), x, generator)
    alpha, sigma, step = model.scales(t, x)
    z = alpha * x + sigma * paired
    return (model.output(z, t) - target(model.prediction, x, paired, alpha, sigma, step)).pow(2).mean(-1)


def standard_loss(model, batch, generator):
    return simple_loss(model, batch[:, :2], generator=generator)


def time_grid(spec, pairing, data, steps, seed, time_dim) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, final loss) of the grid trained in one `train` call."""
    grid = ToyGrid(spec, pairing, hidden=20, depth=2, time_dim=time_dim, generator=torch.Generator().manual_seed(seed),
                   clip=(-6, 6))
    start, cpu = time.perf_counter(), time.process_time()
    run = train(grid, ToyGrid.loss_fn, grid.training_data(data), steps=steps, batch_size=64, ema_decay=None,
                seed=seed, progress=False)
    return time.perf_counter() - start, time.process_time() - cpu, float(run.losses[-50:].mean())


def time_sequential(spec, grid_for_processes, data, steps, seed, time_dim) -> list[dict]:
    """One standalone run per (process, target) pair of the grid, schedules alternating."""
    pairs = sorted({(c.process, c.target) for c in spec.configs}, key=str)
    runs = []
    for k, (process_name, target_name) in enumerate(pairs):
        schedule = spec.schedules[k % len(spec.schedules)]
        process = grid_for_processes.processes[process_name, schedule]
        torch.manual_seed(seed + k)
        model = Denoiser(TimeMLP(2, hidden=20, depth=2, time_dim=time_dim), process, target_name, clip=(-6, 6))
        loss = pairing_loss if isinstance(process, PairingForward) else standard_loss
        start, cpu = time.perf_counter(), time.process_time()
        run = train(model, loss, data, steps=steps, batch_size=64, ema_decay=None, seed=seed + k, progress=False)
        runs.append({"config": f"{process_name}/{schedule}/{target_name}", "seconds": time.perf_counter() - start,
                     "cpu_seconds": time.process_time() - cpu, "final_loss": float(run.losses[-50:].mean())})
        print(f"  sequential {runs[-1]['config']:28s} {runs[-1]['seconds']:7.2f} s (CPU {runs[-1]['cpu_seconds']:.2f} s)",
              flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 50 epochs of 10,000 / 64)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-dim", type=int, default=8, help="time features per network (the chapter's default)")
    parser.add_argument("--out", default="bench/results/toy_grid.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or training_steps(50, 10_000, 64)
    spec = GridSpec(seeds=args.seeds, T=1000)
    mixture = two_gaussians()
    pairing = GaussianisingMap(mixture)
    x, _ = toy_split("two_gaussians", 10_000, 1, seed=0)
    helper = ToyGrid(spec, pairing)  # its processes and training data serve the sequential runs too
    data = helper.training_data(x)
    G = len(spec.members)

    time_grid(spec, pairing, x, 20, 0, args.time_dim)  # warm-up (allocator, lazy initialisation), not timed
    load_before = os.getloadavg()
    print(f"grid: {G} members x {steps} steps, {args.threads} thread(s)", flush=True)
    grid_s, grid_cpu_s, grid_loss = time_grid(spec, pairing, x, steps, 0, args.time_dim)
    print(f"  grid {grid_s:.1f} s (CPU {grid_cpu_s:.1f} s)", flush=True)
    runs = time_sequential(spec, helper, data, steps, 0, args.time_dim)
    load_after = os.getloadavg()
    timed, timed_cpu = sum(r["seconds"] for r in runs), sum(r["cpu_seconds"] for r in runs)
    sequential_s, sequential_cpu_s = timed * G / len(runs), timed_cpu * G / len(runs)
    speedup, speedup_cpu = sequential_s / grid_s, sequential_cpu_s / grid_cpu_s
    # Wall time is what a user waits for; CPU time of this process is less sensitive to other jobs on the machine.
    print(f"sequential: {len(runs)} runs timed in {timed:.1f} s (CPU {timed_cpu:.1f} s), scaled x{G / len(runs):g} "
          f"to {sequential_s:.0f} s; speed-up {speedup:.1f}x (CPU time: {speedup_cpu:.1f}x); "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "toy_grid",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "parameters": {"G": G, "steps": steps, "batch_size": 64, "seeds": args.seeds, "threads": args.threads,
                       "time_dim": args.time_dim,
                       "sequential_runs_timed": len(runs), "sequential_scale": G / len(runs)},
        "grid_s": grid_s, "grid_cpu_s": grid_cpu_s, "grid_final_loss": grid_loss, "sequential_runs": runs,
        "sequential_timed_s": timed, "sequential_s": sequential_s, "speedup": speedup,
        "sequential_cpu_s": sequential_cpu_s, "speedup_cpu": speedup_cpu,
        "loadavg_before": load_before, "loadavg_after": load_after,
        "provenance": {"git_commit": commit.stdout.strip() or None, "torch": torch.__version__,
                       "python": platform.python_version(), "platform": platform.platform(),
                       "cpu_count": os.cpu_count()},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
