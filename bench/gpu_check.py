"""GPU check: the library on CUDA agrees with the CPU, and what one training step costs.

Three parts, one JSON file:
1. agreement: the same TimeMLP denoiser, data and seed give the same bound (bits/dim) and the
   same deterministic DDIM samples on CPU and CUDA (float32 rounding apart);
2. digits at GPU scale: DDPM trained on L_simple with a U-Net, test-set bits/dim by the full
   1000-step discrete bound (the CPU chapters train for far fewer steps);
3. cost per step of the same U-Net family on 32x32x3 batches (planning CIFAR-10-scale runs).

    python bench/gpu_check.py --out bench/results/gpu_check.json --steps 4000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from diffusion_study.book.results import provenance, write_json_atomic
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.likelihood import bits_per_dim
from diffusion_study.core.objectives import (
    DiscretizedGaussianDecoder,
    GaussianDecoder,
    simple_loss,
)
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.samplers import ddim_sample
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.images import load_image_dataset
from diffusion_study.data.toy2d import two_gaussians
from diffusion_study.nets.models import TimeMLP, UNet, count_parameters
from diffusion_study.training.loop import train


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def agreement(device: str) -> dict:
    """Bound and DDIM samples of one TimeMLP denoiser on CPU and on `device`."""
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=64, depth=3)
    x = two_gaussians().sample(2000, torch.Generator().manual_seed(0))
    x_T = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    out = {}
    for dev in ("cpu", device):
        proc = GaussianForward(discrete_schedule("cosine", 200))
        den = Denoiser(net, proc).to(dev)
        bpd = bits_per_dim(den, x.to(dev), decoder=GaussianDecoder(), generator=torch.Generator().manual_seed(2))
        samples = ddim_sample(den, x_T.to(dev), proc.schedule.grid(50))
        out[dev] = (bpd.mean, samples.cpu())
    return {"bits_per_dim_cpu": out["cpu"][0], "bits_per_dim_gpu": out[device][0],
            "bits_per_dim_abs_diff": abs(out["cpu"][0] - out[device][0]),
            "ddim_max_abs_diff": (out["cpu"][1] - out[device][1]).abs().max().item()}


def digits_run(device: str, steps: int, batch: int) -> dict:
    """DDPM (L_simple, eps) with a U-Net on scikit-learn digits; test bits/dim by the full 1000-step bound."""
    data = load_image_dataset("digits")
    sched = discrete_schedule("logsnr_cosine", 1000, logsnr_max=5.0, logsnr_min=-10.0)
    process = GaussianForward(sched)
    torch.manual_seed(0)
    net = UNet(channels=1, base=64, mults=(1, 2))
    model = Denoiser(net, process, prediction="eps", clip=(-1, 1)).to(device)
    res = train(model, lambda m, x, g: simple_loss(m, x, generator=g), data.train.to(device), steps=steps,
                batch_size=batch, lr=2e-4, ema_decay=0.999, seed=0, progress=False)
    denoiser = res.ema.eval()
    bpd = bits_per_dim(denoiser, data.test.to(device), decoder=DiscretizedGaussianDecoder(data.levels),
                       batch_size=297, generator=torch.Generator().manual_seed(3))
    return {"test_bits_per_dim": bpd.mean, "stderr": bpd.stderr, "terms": bpd.terms, "n_test": bpd.n,
            "train_seconds": res.seconds, "parameters": count_parameters(net),
            "loss_first_100": res.losses[:100].mean().item(), "loss_last_100": res.losses[-100:].mean().item()}


def step_cost(device: str, repeats: int, size: int, batch: int) -> dict:
    """Median seconds per DDPM optimizer step (L_simple) with a U-Net on [batch, 3, size, size]."""
    process = GaussianForward(discrete_schedule("logsnr_cosine", 1000))
    x = ((torch.rand(batch, 3, size, size, device=device) * 2 - 1) * 127.5).round() / 127.5
    torch.manual_seed(0)
    net = UNet(channels=3, base=64, mults=(1, 2, 2))
    model = Denoiser(net, process).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    samples = []
    for r in range(repeats + 2):
        sync(device)
        start = time.perf_counter()
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            simple_loss(model, x, generator=g).mean().backward()
            opt.step()
        sync(device)
        if r >= 2:  # two warm-up rounds
            samples.append((time.perf_counter() - start) / 10)
    return {"seconds_per_step_median": statistics.median(samples), "seconds_per_step_all": samples,
            "parameters": count_parameters(net), "batch": batch, "size": size, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/gpu_check.json")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda", help="'cpu' only for a dry run of the script itself")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    report = {"device_name": name, "args": vars(args)}
    report["agreement"] = agreement(args.device)
    print(json.dumps(report["agreement"], indent=1), flush=True)
    report["ddpm_step_cost_32x32"] = step_cost(args.device, args.repeats, 32, args.batch)
    print(json.dumps(report["ddpm_step_cost_32x32"], indent=1), flush=True)
    report["digits_ddpm"] = digits_run(args.device, args.steps, args.batch)
    print(json.dumps(report["digits_ddpm"], indent=1), flush=True)
    report["provenance"] = provenance(time.perf_counter() - started)
    write_json_atomic(Path(args.out), report)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s; uniform would be {math.log2(17):.2f} bits/dim")


if __name__ == "__main__":
    main()
