"""How much faster is training G toy models as one EnsembleMLP than one after another?

Both sides train the toy study's network (TimeMLP(2, hidden=20, depth=2), ReLU) with Adam,
batch 64, for S steps, on the same self-contained noise-regression loss on a 2D mixture:
z = cos(pi t / 2) x + sin(pi t / 2) eps, loss = ||net(z, t) - eps||^2. Each side draws its
batches, times and noise from torch.Generators inside the timed region.

- ensemble: one EnsembleMLP(G, ...) and ONE Adam over its stacked [G, in, out] tensors;
- single:   a Python loop over G separate TimeMLPs, each with its own Adam. Adam's
            implementation (for-loop, foreach, fused) is timed for each option and the fastest
            is the peer.

    .venv/bin/python bench/ensemble_speedup.py --G 64 --steps 200 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from diffusion_study.nets.models import EnsembleMLP, TimeMLP

ARCH = {"dim": 2, "hidden": 20, "depth": 2, "time_dim": 32, "activation": "relu"}
BATCH, LR, N = 64, 1e-3, 10_000
ADAM_OPTIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def toy_data(n: int = N) -> torch.Tensor:
    """Two Gaussians at (-2, 0) and (2, 0), std 0.5: [n, 2]."""
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    return torch.randn(n, 2, generator=g) * 0.5 + torch.stack([2.0 * sign, torch.zeros(n)], 1)


def noise_loss(net, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x: [..., 2] -> per-example loss [...]."""
    t = torch.rand(x.shape[:-1], generator=g)
    eps = torch.randn(x.shape, generator=g)
    angle = (math.pi / 2 * t)[..., None]
    z = torch.cos(angle) * x + torch.sin(angle) * eps
    return (net(z, t) - eps).pow(2).sum(-1)


def train_ensemble(data: torch.Tensor, G: int, steps: int, adam: dict) -> float:
    g = torch.Generator().manual_seed(0)
    net = EnsembleMLP(G, **ARCH, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=LR, **adam)
    for _ in range(steps):
        x = data[torch.randint(len(data), (G, BATCH), generator=g)]  # [G, B, 2]
        loss = noise_loss(net, x, g).mean(-1).sum()  # each member: its own mean loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item() / G


def train_singles(data: torch.Tensor, models: int, steps: int, adam: dict) -> float:
    total = 0.0
    for m in range(models):
        g = torch.Generator().manual_seed(m)
        torch.manual_seed(m)
        net = TimeMLP(**ARCH)
        opt = torch.optim.Adam(net.parameters(), lr=LR, **adam)
        for _ in range(steps):
            x = data[torch.randint(len(data), (BATCH,), generator=g)]  # [B, 2]
            loss = noise_loss(net, x, g).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        total += loss.item()
    return total / models


def timed(fn, repeats: int) -> tuple[list[float], float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--G", type=int, default=64, help="number of toy models")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps per model")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per side")
    parser.add_argument("--single-models", type=int, default=None,
                        help="time only this many single runs and scale to G (default: all G)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/ensemble_speedup.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    singles = args.single_models or args.G
    scale = args.G / singles
    data = toy_data()

    # warm-up (lazy initialisation of each Adam implementation, allocator), not timed
    for adam in ADAM_OPTIONS.values():
        train_ensemble(data, args.G, 5, adam)
        train_singles(data, 1, 5, adam)

    # Repeats are interleaved (every configuration once per round) so that load from other
    # processes hits all configurations alike; the minimum is the least disturbed time.
    configs = [(f"ensemble, Adam {name}", "ensemble", name,
                lambda adam=adam: train_ensemble(data, args.G, args.steps, adam))
               for name, adam in ADAM_OPTIONS.items()]
    configs += [(f"single x{args.G}, Adam {name}", "single", name,
                 lambda adam=adam: train_singles(data, singles, args.steps, adam))
                for name, adam in ADAM_OPTIONS.items()]
    rows = {label: {"side": side, "adam": name, "seconds": []} for label, side, name, _ in configs}
    for _ in range(args.repeats):
        for label, side, _, fn in configs:
            (seconds,), loss = timed(fn, 1)
            rows[label]["seconds"].append(seconds * (scale if side == "single" else 1.0))
            rows[label]["final_loss"] = loss
    for r in rows.values():
        r["median_s"], r["min_s"] = statistics.median(r["seconds"]), min(r["seconds"])
    best = {side: min((r for r in rows.values() if r["side"] == side), key=lambda r: r["median_s"])
            for side in ("ensemble", "single")}
    ratio = best["single"]["median_s"] / best["ensemble"]["median_s"]
    ratio_min = (min(r["min_s"] for r in rows.values() if r["side"] == "single")
                 / min(r["min_s"] for r in rows.values() if r["side"] == "ensemble"))

    print(f"G={args.G} models, {args.steps} steps, batch {BATCH}, {args.repeats} repeats, "
          f"{args.threads} threads" + (f"; single runs: {singles} timed, scaled x{scale:g}"
                                       if scale != 1 else ""))
    print(f"{'configuration':32s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'final loss':>10s}")
    for name, r in rows.items():
        print(f"{name:32s} {r['median_s']:9.3f} {min(r['seconds']):8.3f} "
              f"{max(r['seconds']):8.3f} {r['final_loss']:10.3f}")
    print(f"speed-up, medians (fastest single / fastest ensemble): {ratio:.1f}x "
          f"({best['single']['adam']} vs {best['ensemble']['adam']})")
    print(f"speed-up, minima (least disturbed by other load): {ratio_min:.1f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "ensemble_speedup",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "parameters": {"G": args.G, "steps": args.steps, "repeats": args.repeats,
                       "batch_size": BATCH, "lr": LR, "architecture": ARCH,
                       "threads": args.threads, "interleaved_repeats": True, "single_models_timed": singles,
                       "single_scale": scale},
        "results": rows,
        "speedup_median": ratio,
        "speedup_min": ratio_min,
        "fastest": {side: r["adam"] for side, r in best.items()},
        "provenance": {"git_commit": git_commit(), "torch": torch.__version__,
                       "python": platform.python_version(), "platform": platform.platform(),
                       "processor": platform.processor(), "cpu_count": os.cpu_count()},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
