"""Training throughput (samples/s): this library's loop against a bare PyTorch loop, diffusers and
denoising-diffusion-pytorch, for the same batch; eps-prediction, L_simple, linear T = 1000, Adam 1e-4.

Variants (each an optimizer step on a batch drawn at random from the data):
    lib                 `train(Denoiser(UNet), simple_loss, ...)`, the library's loop (no EMA);
    bare                plain PyTorch with the same UNet: the schedule as two float32 tables,
                        t ~ U{1..T}, z = a_t x + s_t eps, ||net(z, t / T) - eps||^2;
    diffusers           the training example's loop: `DDPMScheduler.add_noise` + `UNet2DModel` of
                        matched size (DownBlock2D / UpBlock2D, no attention, as this UNet);
    diffusers_same_net  `DDPMScheduler.add_noise` with this library's UNet (the loop alone);
    ddpm_pytorch        denoising-diffusion-pytorch's `GaussianDiffusion(Unet(dim, mults))`, objective
                        'pred_noise', linear betas (its Unet of matched size has linear attention);
    ddpm_pytorch_same_net  `GaussianDiffusion` around this library's UNet.
Sizes: digits [B, 1, 8, 8] (UNet(1, 32, (1, 2))), and 32x32 [B, 3, 32, 32] (UNet(3, 32, (1, 2, 2))).

On CUDA (`--device cuda`, a prepared run: python bench/train_throughput.py --device cuda) every variant
is timed with bf16 autocast off and on and `torch.compile` of the network off and on, with the peak
memory of each (torch.cuda.max_memory_allocated). A peer that is not installed is reported as
unavailable, with the reason.

    .venv/bin/python bench/train_throughput.py                       # CPU, 2 threads, about 3 minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common
import torch
import torch.nn.functional as F
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import simple_loss
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.images import load_image_dataset
from diffusion_study.nets.models import UNet, count_parameters
from diffusion_study.training.loop import train
from torch import nn

T, LR = 1000, 1e-4
SIZES = {  # name: (channels, size, our mults, diffusers' block_out_channels, ddpm-pytorch dim)
    "digits": (1, 8, (1, 2), (28, 56), 24),
    "32x32": (3, 32, (1, 2, 2), (28, 56, 56), 22),
}


def data_for(size: str) -> torch.Tensor:
    if size == "digits":
        return load_image_dataset("digits").train  # [1500, 1, 8, 8] on 17 levels in [-1, 1]
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (512, 3, 32, 32), generator=g).float() / 127.5 - 1)


class SameNet(nn.Module):
    """This library's UNet under another library's calling convention: integer timestep k (0-based,
    diffusers' and denoising-diffusion-pytorch's) is our time (k + 1) / T."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.channels, self.out_dim = net, net.channels, net.channels
        self.self_condition, self.random_or_learned_sinusoidal_cond = False, False

    def forward(self, x, k, x_self_cond=None):
        return self.net(x, (k.float() + 1) / T)


def build(size: str, names: list[str], device: torch.device, compile_net: bool, batch: int) -> tuple[dict, dict]:
    """{name: step(n) running n optimizer steps}, {name: info}; every variant from its own fresh weights
    (the library's UNet variants from one initialisation)."""
    C, H, mults, blocks, dim = SIZES[size]
    data = data_for(size).to(device)
    maybe_compile = (lambda m: torch.compile(m)) if compile_net else (lambda m: m)
    torch.manual_seed(0)
    base = UNet(C, 32, mults)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}

    def our_unet():
        net = UNet(C, 32, mults)
        net.load_state_dict(base_state)
        return net.to(device)

    fns, info = {}, {}
    g = torch.Generator(device=device).manual_seed(0)

    def index():
        return torch.randint(len(data), (batch,), generator=g, device=device)

    def loop(params, loss_of):
        opt = torch.optim.Adam(params, lr=LR)

        def run(n):
            for _ in range(n):
                loss = loss_of(data[index()])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return run

    if "lib" in names:
        net = our_unet()
        model = Denoiser(maybe_compile(net), GaussianForward(discrete_schedule("linear", T)).to(device), "eps")
        seeds = iter(range(10**6))

        def lib(n, model=model):
            train(model, lambda m, x, gen: simple_loss(m, x, generator=gen), data, steps=n, batch_size=batch, lr=LR,
                  ema_decay=None, seed=next(seeds), progress=False)
        fns["lib"], info["lib"] = lib, {"parameters": count_parameters(net), "network": "diffusion_study UNet"}
    if "bare" in names:
        net = our_unet()
        f = maybe_compile(net)
        ab = discrete_schedule("linear", T).alpha_bar
        a, s = ab.sqrt().float().to(device), (1 - ab).sqrt().float().to(device)

        def bare_loss(x, f=f, a=a, s=s):
            t = torch.randint(1, T + 1, (batch,), generator=g, device=device)
            eps = torch.randn(x.shape, generator=g, device=device)
            z = a[t].view(-1, 1, 1, 1) * x + s[t].view(-1, 1, 1, 1) * eps
            return (f(z, t.float() / T) - eps).pow(2).mean()
        fns["bare"], info["bare"] = loop(net.parameters(), bare_loss), {"parameters": count_parameters(net),
                                                                        "network": "diffusion_study UNet"}
    if any(n.startswith("diffusers") for n in names):
        from diffusers import DDPMScheduler, UNet2DModel

        sched = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
        sched.alphas_cumprod = sched.alphas_cumprod.to(device)  # add_noise moves it on every call otherwise
        for name in ("diffusers", "diffusers_same_net"):
            if name not in names:
                continue
            if name == "diffusers":
                net = UNet2DModel(sample_size=H, in_channels=C, out_channels=C, layers_per_block=1,
                                  block_out_channels=blocks, down_block_types=("DownBlock2D",) * len(blocks),
                                  up_block_types=("UpBlock2D",) * len(blocks), norm_num_groups=4,
                                  add_attention=False).to(device)
                f = maybe_compile(net)
                call = lambda z, k, f=f: f(z, k).sample  # noqa: E731
                what = f"diffusers UNet2DModel block_out_channels={blocks}, layers_per_block=1, no attention"
            else:
                net = our_unet()
                f = maybe_compile(SameNet(net))
                call = lambda z, k, f=f: f(z, k)  # noqa: E731
                what = "diffusion_study UNet"

            def diffusers_loss(x, call=call):
                noise = torch.randn(x.shape, generator=g, device=device)
                k = torch.randint(0, T, (batch,), generator=g, device=device)
                return F.mse_loss(call(sched.add_noise(x, noise, k), k), noise)
            fns[name], info[name] = loop(net.parameters(), diffusers_loss), {"parameters": count_parameters(net),
                                                                             "network": what}
    if any(n.startswith("ddpm_pytorch") for n in names):
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet

        for name in ("ddpm_pytorch", "ddpm_pytorch_same_net"):
            if name not in names:
                continue
            if name == "ddpm_pytorch":
                net = Unet(dim=dim, dim_mults=mults, channels=C)
                what = f"denoising-diffusion-pytorch Unet(dim={dim}, dim_mults={mults})"
            else:
                net = SameNet(our_unet())
                what = "diffusion_study UNet"
            diffusion = GaussianDiffusion(net, image_size=H, timesteps=T, objective="pred_noise",
                                          beta_schedule="linear", auto_normalize=False).to(device)
            diffusion.model = maybe_compile(diffusion.model)
            fns[name] = loop(net.parameters(), lambda x, d=diffusion: d(x))
            info[name] = {"parameters": count_parameters(net), "network": what}
    return fns, info


def run_config(size: str, names: list[str], device: torch.device, batch: int, steps: int, repeats: int,
               bf16: bool, compile_net: bool) -> dict:
    fns, info = build(size, names, device, compile_net, batch)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
    peaks = {name: 0 for name in fns}

    def timed(name):
        def run():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if autocast:
                with autocast():
                    fns[name](steps)
            else:
                fns[name](steps)
            if device.type == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
        return run

    raw = common.interleaved({n: timed(n) for n in fns}, repeats, warmup=1, per=steps, device=device)
    med = {n: statistics.median(v) for n, v in raw.items()}
    pairs = [("lib", "bare"), ("lib", "diffusers"), ("lib", "ddpm_pytorch"), ("bare", "diffusers"),
             ("lib", "diffusers_same_net"), ("lib", "ddpm_pytorch_same_net"), ("diffusers_same_net", "bare"),
             ("ddpm_pytorch_same_net", "bare")]
    return {"size": size, "shape": [batch, SIZES[size][0], SIZES[size][1], SIZES[size][1]], "bf16": bf16,
            "compile": compile_net, "steps_per_repeat": steps, "repeats": repeats, "networks": info,
            "results": {n: common.summary(v) for n, v in raw.items()},
            "samples_per_s_median": {n: batch / v for n, v in med.items()},
            "ms_per_step_median": {n: 1e3 * v for n, v in med.items()},
            "ratios_of_time": common.ratios(raw, pairs),
            "peak_memory_MiB": {n: p / 2**20 for n, p in peaks.items()} if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=["lib", "bare", "diffusers", "diffusers_same_net",
                                                          "ddpm_pytorch", "ddpm_pytorch_same_net"])
    parser.add_argument("--batch", type=int, nargs=2, default=None, metavar=("DIGITS", "32x32"),
                        help="batch per size (default: CPU 128 16, CUDA 128 128)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat (CPU 2, CUDA 20)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (CPU 5, CUDA 5)")
    parser.add_argument("--threads", type=int, default=2)
    common.add_run_arguments(parser)
    args = parser.parse_args()
    common.budget(args.budget)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available (the CPU run needs no flag)")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    batch = dict(zip(SIZES, args.batch or ((128, 128) if cuda else (128, 16))))
    steps, repeats = args.steps or (20 if cuda else 2), args.repeats or 5
    started, load = time.perf_counter(), os.getloadavg()
    unavailable = {}
    names = []
    for n in args.variants:
        module = {"diffusers": "diffusers", "ddpm": "denoising_diffusion_pytorch"}.get(n.split("_")[0])
        if module and not common.have(module):
            unavailable[n] = common.peer_versions()[common.PEERS[module]]
        else:
            names.append(n)
    configs = [(False, False)] if not cuda else [(False, False), (True, False), (False, True), (True, True)]
    runs = []
    for size in args.sizes:
        for bf16, comp in configs:
            r = run_config(size, names, device, batch[size], steps, repeats, bf16, comp)
            runs.append(r)
            print(f"{size} batch {batch[size]} bf16={bf16} compile={comp}: samples/s "
                  + ", ".join(f"{k} {v:.0f}" for k, v in r["samples_per_s_median"].items()), flush=True)
    payload = {"device": torch.cuda.get_device_name(0) if cuda else "cpu",
               "threads": torch.get_num_threads(), "parameters": {**vars(args), "batch": batch, "steps": steps,
                                                                  "repeats": repeats, "T": T, "lr": LR},
               "unavailable": unavailable, "runs": runs}
    common.write_result("train_throughput" + ("_cuda" if cuda else ""), payload, started, args.out, load)


if __name__ == "__main__":
    main()
