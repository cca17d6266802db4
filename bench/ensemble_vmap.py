"""The toy grid's G runs three ways: one EnsembleMLP, a Python loop of G TimeMLPs, and torch.func.

All three train the toy study's network (TimeMLP(2, hidden=20, depth=2, time_dim=8), ReLU; the
chapter's grid has G = 100 members) for S Adam steps of batch 64 each, on the same self-contained
noise-regression loss on a 2D mixture (z = cos(pi t / 2) x + sin(pi t / 2) eps, ||net(z, t) - eps||^2),
one thread, fused Adam everywhere:

    ensemble  one `EnsembleMLP(G, ...)` (one torch.baddbmm per layer for all members), one Adam;
    loop      G separate TimeMLPs trained one after another, each with its own Adam;
    vmap      G TimeMLPs stacked by `torch.func.stack_module_state`, evaluated with
              `torch.func.vmap(functional_call)`, one Adam over the stacked tensors: PyTorch's own
              answer to "many small models at once", the real peer of a hand-written ensemble.

Every side draws its batches, times and noise from a torch.Generator inside the timed region.
Rounds are interleaved (order rotated); the loop is timed in full (no scaling).

    .venv/bin/python bench/ensemble_vmap.py                  # about 1 minute on 2 idle cores
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics

import common
import torch
from diffusion_study.nets.models import EnsembleMLP, TimeMLP

ARCH = {"dim": 2, "hidden": 20, "depth": 2, "time_dim": 8, "activation": "relu"}
BATCH, LR = 64, 1e-3


def toy_data(n: int = 10_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    return torch.randn(n, 2, generator=g) * 0.5 + torch.stack([2.0 * sign, torch.zeros(n)], 1)


def draws(x: torch.Tensor, g: torch.Generator):
    t = torch.rand(x.shape[:-1], generator=g)
    eps = torch.randn(x.shape, generator=g)
    angle = (math.pi / 2 * t)[..., None]
    return torch.cos(angle) * x + torch.sin(angle) * eps, t, eps


def train_ensemble(data, G: int, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    net = EnsembleMLP(G, **ARCH, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)
    for _ in range(steps):
        z, t, eps = draws(data[torch.randint(len(data), (G, BATCH), generator=g)], g)
        loss = (net(z, t) - eps).pow(2).sum(-1).mean(-1).sum()  # each member its own mean loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item() / G


def train_loop(data, G: int, steps: int) -> float:
    total = 0.0
    for m in range(G):
        g = torch.Generator().manual_seed(m)
        torch.manual_seed(m)
        net = TimeMLP(**ARCH)
        opt = torch.optim.Adam(net.parameters(), lr=LR, fused=True)
        for _ in range(steps):
            z, t, eps = draws(data[torch.randint(len(data), (BATCH,), generator=g)], g)
            loss = (net(z, t) - eps).pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        total += loss.item()
    return total / G


def train_vmap(data, G: int, steps: int) -> float:
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    models = [TimeMLP(**ARCH) for _ in range(G)]
    params, buffers = stack_module_state(models)  # new leaves [G, ...] that require grad
    base = copy.deepcopy(models[0]).to("meta")

    def one(p, b, z, t):
        return functional_call(base, (p, b), (z, t))
    batched = vmap(one)
    opt = torch.optim.Adam(list(params.values()), lr=LR, fused=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        z, t, eps = draws(data[torch.randint(len(data), (G, BATCH), generator=g)], g)
        loss = (batched(params, buffers, z, t) - eps).pow(2).sum(-1).mean(-1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item() / G


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--G", type=int, default=100, help="members (the chapter's default grid: 100)")
    parser.add_argument("--steps", type=int, default=100, help="Adam steps per model")
    common.add_run_arguments(parser, repeats=5, threads=1)
    args = parser.parse_args()
    started, load = common.start_run(args)
    data = toy_data()
    final = {}

    def run(name, fn):
        def go():
            final[name] = fn(data, args.G, args.steps)
        return go
    fns = {"ensemble": run("ensemble", train_ensemble), "vmap": run("vmap", train_vmap),
           "loop": run("loop", train_loop)}
    for f in (train_ensemble, train_vmap):
        f(data, args.G, 3)  # warm-up: lazy initialisation, allocator
    train_loop(data, 2, 3)
    raw = common.interleaved(fns, args.repeats, warmup=0)
    med = {k: statistics.median(v) for k, v in raw.items()}
    rat = common.ratios(raw, [("loop", "ensemble"), ("vmap", "ensemble"), ("loop", "vmap")])
    print(f"G = {args.G} x {args.steps} steps, seconds (median): "
          + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
          + "; " + ", ".join(f"{k} {v['paired']:.1f}x" for k, v in rat.items()), flush=True)
    payload = {"parameters": {**vars(args), "arch": ARCH, "batch": BATCH, "lr": LR, "adam": "fused"},
               "results": {k: common.summary(v) for k, v in raw.items()}, "seconds_median": med,
               "speedups": rat, "final_mean_loss": final,
               "note": "speedups are ratios of times: 'loop / ensemble' = how many times faster the ensemble is"}
    common.write_result("ensemble_vmap", payload, started, args.out, load)


if __name__ == "__main__":
    main()
