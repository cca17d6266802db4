"""What one training step and one sampling step cost: the library before and after its new API.

Three versions of the library are imported side by side (the older two extracted with
`git archive` into a temporary folder and renamed, e.g. `diffusion_study_8f0c1f3`):

    before   8f0c1f3, the old API: integer steps, `.any()` range checks, tables read on the host;
    api      d233aee, the new API as it first landed (t in [0, 1], Denoiser carries the process);
    after    this checkout (the working tree: what `import diffusion_study` gives), or with
             `--after REV` that commit, extracted like the others (a fixed library while other
             people edit lib/; the JSON records HEAD and the changed lib/ files at start and end).

Four parts, one run, one JSON file (plus a short markdown table next to it):

1. training step of the U-Net (UNet(channels=1, base=32, mults=(1, 2))) on MNIST-sized batches
   [B, 1, 28, 28], eps-prediction, linear schedule T = 1000, Adam (lr 1e-3), every variant from
   the same initial weights (copy.deepcopy of one U-Net):
     before, api, after  the version's simple_loss in a bare loop (draw the batch indices,
                         zero_grad, loss.mean().backward(), step);
     after_train         the after version's `train(...)` with EMA 0.999: wall time of a call /
                         steps, after an untimed warm-up call;
     reference           plain PyTorch: the schedule as two precomputed float32 tables, the
                         draws on the data's device, no library.
   Beside it, the loss alone: each version's simple_loss (forward) with the trivial network
   0.5 * z on [128, 1, 28, 28], one CPU thread: what the library itself adds to a step, which
   the U-Net's ~200 ms on a CPU hide.
2. host-device synchronisations per training step and per sampling step (CUDA only):
   warnings of torch.cuda.set_sync_debug_mode("warn") counted while a step runs.
3. sampler step overhead on the CPU with one thread: an eps "network" 0.1 * z on a [10000, 2]
   float32 batch, linear T = 1000, 50-step grid: each version's DDIM (eta 0) and DDPM (eta 1)
   sampler and diffusers' DDIMScheduler / DDPMScheduler.step; each timing is a full 50-step
   loop / 50. after_ddim_marginal = (50-step call - 10-step call) / 40: one step without the
   sampler's once-per-call preparation. aten ops per step are counted with a dispatch mode.
4. convention cross-check against diffusers: one eps-model and one start noise through this
   library's 50-step DDIM / DDPM and diffusers' schedulers (index shift, spacing, tolerance).

Repeats are interleaved (every variant once per round, the order rotated each round). Reported:
medians and minima, and three ratios from this one run: of medians, of minima, and paired (the
median over rounds of the per-round ratio, which cancels a burst of load that slows a whole
round: on a shared machine the one to read).

    .venv/bin/python bench/step_speed.py --device cpu          # batch 32, about 2 minutes on 2 idle cores
    .venv/bin/python bench/step_speed.py --device cpu --after HEAD   # the committed library
    python bench/step_speed.py --device cuda                   # batch 128 on a GPU, adds sync counts

Needs diffusers (`pip install -e .[bench]`) and git (the older versions come from the history).
"""

from __future__ import annotations

import argparse
import collections
import copy
import hashlib
import importlib
import io
import math
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py
from common import diffusers_loop  # noqa: E402
from diffusion_study.book.results import provenance, write_json_atomic
from diffusion_study.nets.models import UNet, count_parameters

BEFORE = "8f0c1f3"  # the last commit of the old API
API = "d233aee"  # the commit that introduced the new API
T = 1000
BETA_START, BETA_END = 1e-4, 0.02
LR = 1e-3
SAMPLE_SHAPE = (10_000, 2)
SAMPLE_STEPS = 50
SHORT = 10  # the short grid: (time of 50 steps - time of 10 steps) / 40 is one step alone
WARMUP_ROUNDS = 3  # untimed interleaved rounds before the loss and sampler timings (this VM's first
#                   rounds after a phase change run up to 3x slower: fresh memory, other tenants)
MODULES = ("schedules", "processes", "objectives", "samplers", "denoiser", "train")
# the same modules in today's layout (subpackages since the layout change)
CURRENT_PATHS = {"schedules": "core.schedules", "processes": "core.processes", "objectives": "core.objectives",
                 "samplers": "core.samplers", "denoiser": "core.denoiser", "train": "training.loop"}


# --------------------------------------------------------------------------- helpers


def load_version(commit: str, workdir: Path) -> SimpleNamespace:
    """lib/diffusion_study at `commit` as the package diffusion_study_<commit> (beside this one)."""
    name = f"diffusion_study_{commit}"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "lib/diffusion_study"],
                             capture_output=True, check=True).stdout
    target = workdir / commit
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        try:
            tar.extractall(target, filter="data")
        except TypeError:  # Python < 3.11.4 has no extraction filters (our own git archive: trusted)
            tar.extractall(target)
    pkg = target / name
    (target / "lib" / "diffusion_study").rename(pkg)
    for path in pkg.rglob("*.py"):  # absolute imports name the renamed package
        path.write_text(re.sub(r"\bdiffusion_study\.", f"{name}.", path.read_text()))
    sys.path.insert(0, str(target))
    return SimpleNamespace(commit=commit, **{m: importlib.import_module(f"{name}.{m}") for m in MODULES})


def this_checkout() -> SimpleNamespace:
    """The working tree's library (`import diffusion_study`), as it is when this runs."""
    return SimpleNamespace(commit="worktree", **{m: importlib.import_module(f"diffusion_study.{path}")
                                                 for m, path in CURRENT_PATHS.items()})


def lib_state() -> dict:
    """Which library the working tree holds: HEAD, the lib/ files that differ from it (tracked or
    not) and a sha256 of `git diff HEAD -- lib/` (None when lib/ is clean)."""
    def git(*a):
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True).stdout
    diff = git("diff", "HEAD", "--", "lib/")
    files = git("status", "--porcelain", "--", "lib/").decode().splitlines()
    return {"head": git("rev-parse", "HEAD").decode().strip(), "lib_changed_files": [f[3:] for f in files],
            "lib_diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, repeats: int, device: torch.device, per: float = 1.0) -> dict:
    """{name: [seconds / per, one per round]}: every fn once per round, the order rotated."""
    names, out = list(fns), {name: [] for name in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            out[name].append((time.perf_counter() - start) / per)
    return out


def paired(rows: dict, a: str, b: str) -> float:
    """Median over rounds of the per-round ratio a / b: a burst of load from other jobs slows a whole
    round (the variants of a round run back to back), so it cancels in the round's ratio."""
    return statistics.median(x / y for x, y in zip(rows[a]["seconds"], rows[b]["seconds"]))


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "seconds": seconds}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched (below autograd, after CompositeImplicit decompositions)."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn, per: int) -> dict:
    with OpCounter() as counter:
        fn()
    return {"ops_per_step": sum(counter.ops.values()) / per,
            "by_op_per_step": {k: v / per for k, v in counter.ops.most_common()}}


def count_syncs(fn) -> dict:
    """Synchronising CUDA calls made by fn() (set_sync_debug_mode 'warn'), with their call sites."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    hits = [w for w in caught if "synchroniz" in str(w.message)]
    sites = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in hits)
    return {"count": len(hits), "sites": dict(sites)}


# --------------------------------------------------------------------------- 1, 2: training


def reference_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(alpha_bar_i), sqrt(1 - alpha_bar_i) for i = 0..T as float32 [T + 1] (plain PyTorch)."""
    alpha_bar = alpha_bar_table()
    return alpha_bar.sqrt().float().to(device), (1 - alpha_bar).sqrt().float().to(device)


def reference_loss(net, x, g, tables):
    """The same L_simple without the library: t ~ U{1..T}, z = a_t x + s_t eps, ||net(z, t/T) - eps||^2."""
    a, s = tables
    B = x.shape[0]
    t = torch.randint(1, T + 1, (B,), generator=g, device=g.device).to(x.device)
    eps = torch.randn(x.shape, generator=g, device=g.device).to(x.device)
    z = a[t].view(B, 1, 1, 1) * x + s[t].view(B, 1, 1, 1) * eps
    return (net(z, t.float() / T) - eps).pow(2).mean((1, 2, 3))


def training_part(args, device: torch.device, versions: dict) -> dict:
    torch.manual_seed(args.seed)
    base = UNet(channels=1, base=32, mults=(1, 2)).to(device)
    data = (torch.rand(args.data_size, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    B, S = args.batch, args.steps
    old = versions["before"]
    old_process = old.processes.GaussianForward(old.schedules.discrete_schedule("linear", T))
    tables = reference_tables(device)

    def new_api(v, net):
        process = v.processes.GaussianForward(v.schedules.discrete_schedule("linear", T)).to(device)
        return v.denoiser.Denoiser(net, process, "eps")

    def loss_of(v):
        if v is old:
            return lambda m, x, g: old.objectives.simple_loss(m, old_process, x, prediction="eps", generator=g)
        return lambda m, x, g: v.objectives.simple_loss(m, x, generator=g)

    # Same initial weights everywhere; each variant keeps its own copy, optimizer and generator.
    models = {"before": copy.deepcopy(base)}
    losses = {"before": loss_of(old)}
    for key in ("api", "after"):
        models[key], losses[key] = new_api(versions[key], copy.deepcopy(base)), loss_of(versions[key])
    models["reference"], losses["reference"] = copy.deepcopy(base), (lambda m, x, g: reference_loss(m, x, g, tables))
    opts = {k: torch.optim.Adam(m.parameters(), lr=LR) for k, m in models.items()}
    gens = {k: torch.Generator().manual_seed(0) for k in models}  # the library draws on the host, as train() does
    gens["reference"] = torch.Generator(device=device).manual_seed(0)  # plain PyTorch draws on the device
    train_model = new_api(versions["after"], copy.deepcopy(base))

    def bare(name: str, steps: int):
        model, loss_fn, opt, g = models[name], losses[name], opts[name], gens[name]
        for _ in range(steps):
            index = torch.randint(len(data), (B,), generator=g, device=g.device)
            loss = loss_fn(model, data[index], g)
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            opt.step()

    loop_seconds = []

    def in_train(steps: int, seed: int = 0):
        result = versions["after"].train.train(train_model, losses["after"], data, steps=steps, batch_size=B, lr=LR,
                                               ema_decay=0.999,
                       progress=False, seed=seed)
        loop_seconds.append(result.seconds / steps)

    # Equal losses: the same batch and generator seed give the same draws (t, then eps).
    probe = copy.deepcopy(base)
    with torch.no_grad():  # a random output layer, so the loss depends on z (the U-Net's starts at 0)
        for p in probe.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)).to(device))
    x = data[:B]
    check = {"before": losses["before"](probe, x, torch.Generator().manual_seed(3)),
             "reference": reference_loss(probe, x, torch.Generator().manual_seed(3), tables)}
    for key in ("api", "after"):
        check[key] = losses[key](new_api(versions[key], probe), x, torch.Generator().manual_seed(3))
    loss_check = {"mean_loss": {k: v.mean().item() for k, v in check.items()},
                  "max_abs_diff_vs_after": {k: (v - check["after"]).abs().max().item() for k, v in check.items()}}

    # Warm-up (lazy initialisation, allocator, oneDNN / cuDNN kernel choice), not timed.
    for name in models:
        bare(name, args.warmup)
    in_train(args.warmup)
    loop_seconds.clear()

    fns = {name: (lambda name=name: bare(name, S)) for name in models}
    fns["after_train"] = lambda: in_train(S, seed=len(loop_seconds))
    rows = {name: summary(seconds) for name, seconds in interleaved(fns, args.repeats, device, S).items()}
    rows["after_train"]["train_loop_only"] = summary(loop_seconds)  # TrainResult.seconds / steps
    med = {name: r["median_s"] for name, r in rows.items()}
    low = {name: r["min_s"] for name, r in rows.items()}
    pairs = [("after", "before"), ("after", "api"), ("after_train", "after"), ("after", "reference"),
             ("before", "reference"), ("after_train", "reference")]
    ratios = {f"{a} / {b}": med[a] / med[b] for a, b in pairs}
    # Minima: the least disturbed repeat of each (a shared machine's load falls unevenly on them).
    ratios_min = {f"{a} / {b}": low[a] / low[b] for a, b in pairs}
    ratios_paired = {f"{a} / {b}": paired(rows, a, b) for a, b in pairs}

    syncs = None
    if device.type == "cuda":
        syncs = {name: count_syncs(lambda name=name: bare(name, 1)) for name in models}
        syncs["after_train"] = count_syncs(lambda: in_train(S))
        syncs["after_train"]["steps"] = S
        syncs["after_train"]["note"] = "one train() call of `steps` steps (it copies the losses to the host at the end)"
    return {"parameters": count_parameters(base), "batch": B, "steps_per_repeat": S,
            "threads": torch.get_num_threads(), "results": rows, "medians_s": med, "minima_s": low,
            "ratios": ratios, "ratios_of_minima": ratios_min, "ratios_paired": ratios_paired,
            "loss_check": loss_check, "syncs_per_step": syncs}


def loss_overhead_part(args, device: torch.device, versions: dict) -> dict:
    """The loss's own cost, without the U-Net: each version's simple_loss (forward) with the trivial
    network 0.5 * z on [128, 1, 28, 28] (on the CPU with one thread). On a CPU the U-Net's
    ~200 ms hide this; on a GPU, where a step takes milliseconds, it is what the library adds."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        x = torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(4), device="cpu").to(device) * 2 - 1
        old = versions["before"]
        old_process = old.processes.GaussianForward(old.schedules.discrete_schedule("linear", T))
        tables = reference_tables(device)
        fns, g = {}, torch.Generator().manual_seed(0)
        g_dev = torch.Generator(device=device).manual_seed(0)
        fns["before"] = lambda: old.objectives.simple_loss(lambda z, t: 0.5 * z, old_process, x, prediction="eps",
                                                           generator=g)
        for key in ("api", "after"):
            v = versions[key]
            process = v.processes.GaussianForward(v.schedules.discrete_schedule("linear", T)).to(device)
            model = v.denoiser.Denoiser(lambda z, t: 0.5 * z, process, "eps")
            fns[key] = lambda v=v, m=model: v.objectives.simple_loss(m, x, generator=g)
        fns["reference"] = lambda: reference_loss(lambda z, t: 0.5 * z, x, g_dev, tables)
        calls = 20
        with torch.no_grad():
            timed = {name: (lambda fn=fn: [fn() for _ in range(calls)]) for name, fn in fns.items()}
            interleaved(timed, WARMUP_ROUNDS, device)  # warm-up rounds, discarded
            rows = {name: summary(sec) for name, sec in interleaved(timed, args.sampler_repeats, device, calls).items()}
            ops = {name: count_ops(fn, 1)["ops_per_step"] for name, fn in fns.items()}
    finally:
        torch.set_num_threads(threads)
    med = {name: r["median_s"] for name, r in rows.items()}
    return {"batch": [128, 1, 28, 28], "threads": 1 if device.type == "cpu" else threads, "calls_per_repeat": calls,
            "results": rows, "medians_s": med, "aten_ops_per_call": ops,
            "ratios": {f"{k} / reference": med[k] / med["reference"] for k in ("before", "api", "after")},
            "ratios_paired": {f"{k} / reference": paired(rows, k, "reference") for k in ("before", "api", "after")}}


# --------------------------------------------------------------------------- 3: sampler steps


def diffusers_schedulers(spacing: str = "trailing", steps: int = SAMPLE_STEPS):
    from diffusers import DDIMScheduler, DDPMScheduler

    common = {"num_train_timesteps": T, "beta_start": BETA_START, "beta_end": BETA_END,
              "beta_schedule": "linear", "clip_sample": False, "timestep_spacing": spacing}
    ddim = DDIMScheduler(**common, set_alpha_to_one=True)
    ddpm = DDPMScheduler(**common, variance_type="fixed_small")
    ddim.set_timesteps(steps)
    ddpm.set_timesteps(steps)
    return ddim, ddpm


def sampler_variants(versions: dict, device: torch.device, x: torch.Tensor, steps: int = SAMPLE_STEPS) -> dict:
    """{name: fn() running one `steps`-step sampling loop} for the eps-model 0.1 * z.

    Only public entry points are called (each version's ddim_sample / ddpm_sample, the
    schedulers' step), so the benchmark keeps working while the library's internals change.
    """
    gen = torch.Generator(device=device)
    fns = {}
    for key in ("before", "api", "after"):
        v = versions[key]
        process = v.processes.GaussianForward(v.schedules.discrete_schedule("linear", T))
        model = v.denoiser.Denoiser(lambda z, t: 0.1 * z, process, prediction="eps")
        if key == "before":  # the old signature: (denoiser, process, x_T, steps=...)
            fns["before_ddim"] = lambda v=v, m=model, p=process: v.samplers.ddim_sample(m, p, x, steps=steps, eta=0.0)
            fns["before_ddpm"] = lambda v=v, m=model, p=process: v.samplers.ddpm_sample(
                m, p, x, steps=steps, generator=gen.manual_seed(0))
        else:
            process.to(device)
            times = process.schedule.grid(steps)
            fns[f"{key}_ddim"] = lambda v=v, m=model, ts=times: v.samplers.ddim_sample(m, x, ts, eta=0.0)
            fns[f"{key}_ddpm"] = lambda v=v, m=model, ts=times: v.samplers.ddpm_sample(
                m, x, ts, generator=gen.manual_seed(0))
    ddim, ddpm = diffusers_schedulers(steps=steps)
    ddim_t, ddpm_t = list(ddim.timesteps), list(ddpm.timesteps)  # the 0-dim tensors a pipeline iterates

    @torch.no_grad()
    def diffusers_ddim():
        z = x
        for t in ddim_t:
            z = ddim.step(0.1 * z, t, z, eta=0.0, return_dict=False)[0]
        return z

    @torch.no_grad()
    def diffusers_ddpm():
        z, g = x, gen.manual_seed(0)
        for t in ddpm_t:
            z = ddpm.step(0.1 * z, t, z, generator=g, return_dict=False)[0]
        return z

    fns["diffusers_ddim"], fns["diffusers_ddpm"] = diffusers_ddim, diffusers_ddpm
    fns["diffusers_ddim_one_step"] = lambda: ddim.step(0.1 * x, ddim_t[0], x, eta=0.0, return_dict=False)
    return fns


def sampler_part(args, versions: dict) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        device = torch.device("cpu")
        x = torch.randn(SAMPLE_SHAPE, generator=torch.Generator().manual_seed(0))
        fns = sampler_variants(versions, device, x)
        fns.pop("diffusers_ddim_one_step")
        fns["after_ddim_10_steps"] = sampler_variants(versions, device, x, SHORT)["after_ddim"]
        order = ["after_ddim", "after_ddim_10_steps", "api_ddim", "before_ddim", "diffusers_ddim",
                 "after_ddpm", "api_ddpm", "before_ddpm", "diffusers_ddpm"]
        fns = {name: fns[name] for name in order}
        inner = args.sampler_loops
        timed = {name: (lambda fn=fn: [fn() for _ in range(inner)]) for name, fn in fns.items()}
        interleaved(timed, WARMUP_ROUNDS, device)  # warm-up rounds, discarded
        raw = interleaved(timed, args.sampler_repeats, device, inner)  # seconds per loop
        per_step = {name: [s / (SHORT if name == "after_ddim_10_steps" else SAMPLE_STEPS) for s in secs]
                    for name, secs in raw.items()}
        # One step without the once-per-call preparation: the two grids paired per round.
        per_step["after_ddim_marginal"] = [(a - b) / (SAMPLE_STEPS - SHORT) for a, b in
                                           zip(raw["after_ddim"], raw["after_ddim_10_steps"])]
        rows = {name: summary(s) for name, s in per_step.items()}
        # its "minimum" is the difference of the two calls' minima (a minimum of differences would
        # reward a round where only the short call was disturbed)
        rows["after_ddim_marginal"]["min_s"] = ((min(raw["after_ddim"]) - min(raw["after_ddim_10_steps"]))
                                                / (SAMPLE_STEPS - SHORT))
        med = {name: r["median_s"] for name, r in rows.items()}
        ratios = {f"{k}_{s} / diffusers_{s}": med[f"{k}_{s}"] / med[f"diffusers_{s}"]
                  for s in ("ddim", "ddpm") for k in ("after", "api", "before")}
        ratios["after_ddim_marginal / diffusers_ddim"] = med["after_ddim_marginal"] / med["diffusers_ddim"]
        ratios.update({f"after_{s} / before_{s}": med[f"after_{s}"] / med[f"before_{s}"] for s in ("ddim", "ddpm")})
        ratios_min = {k: rows[k.split(" / ")[0]]["min_s"] / rows[k.split(" / ")[1]]["min_s"] for k in ratios}
        ratios_paired = {k: paired(rows, *k.split(" / ")) for k in ratios}
        ops = {name: count_ops(fn, SHORT if name == "after_ddim_10_steps" else SAMPLE_STEPS)
               for name, fn in fns.items()}
        long_ops, short_ops = SAMPLE_STEPS * ops["after_ddim"]["ops_per_step"], SHORT * ops["after_ddim_10_steps"]["ops_per_step"]
        ops["after_ddim_marginal"] = {"ops_per_step": (long_ops - short_ops) / (SAMPLE_STEPS - SHORT)}
    finally:
        torch.set_num_threads(threads)
    return {"threads": 1, "shape": list(SAMPLE_SHAPE), "steps": SAMPLE_STEPS, "loops_per_repeat": inner,
            "results": rows, "medians_s_per_step": med, "ratios": ratios, "ratios_of_minima": ratios_min,
            "ratios_paired": ratios_paired, "aten_ops": ops,
            "notes": {"*_ddim, *_ddpm": "a sampler call on schedule.grid(50) / 50, including its once-per-call "
                                        "preparation (time checks, step constants)",
                      "after_ddim_marginal": f"(50-step call - {SHORT}-step call) / {SAMPLE_STEPS - SHORT}, "
                                             "paired per round: one step alone",
                      "diffusers_*": "scheduler.step(0.1 * z, t, z, return_dict=False) over scheduler.timesteps "
                                     "(set_timesteps once, outside the timing)",
                      "aten_ops": "aten ops dispatched per step (TorchDispatchMode), 0-dim ones included"}}


def sampler_syncs(versions: dict, device: torch.device) -> dict:
    """Synchronisations per sampling step, (count over 50 steps - count over 10 steps) / 40, and
    the once-per-call rest; diffusers' DDIM step also counted alone."""
    x = torch.randn(SAMPLE_SHAPE, device=device)
    long, short = sampler_variants(versions, device, x), sampler_variants(versions, device, x, SHORT)
    for fn in list(long.values()) + list(short.values()):  # warm-up
        fn()
    out = {"diffusers_ddim_one_step": count_syncs(long.pop("diffusers_ddim_one_step"))}
    short.pop("diffusers_ddim_one_step")
    for name in long:
        c_long, c_short = count_syncs(long[name]), count_syncs(short[name])
        per_step = (c_long["count"] - c_short["count"]) / (SAMPLE_STEPS - SHORT)
        out[name] = {"per_step": per_step, "per_call_setup": c_short["count"] - SHORT * per_step,
                     f"count_{SAMPLE_STEPS}_steps": c_long["count"], f"count_{SHORT}_steps": c_short["count"],
                     "sites": c_long["sites"]}
    return out


# --------------------------------------------------------------------------- 4: convention check

DATA_STD = 0.5  # the cross-check's eps-model is exact for data x ~ N(0, DATA_STD^2 I)


def alpha_bar_table() -> torch.Tensor:
    """alpha_bar_i for i = 0..T (entry 0 = 1), float64, from DDPM's linear betas (plain PyTorch)."""
    betas = torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


ALPHA_BAR = alpha_bar_table()


def eps_model(z: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """E[eps | z_t] for x ~ N(0, DATA_STD^2 I): sigma_t z / (alpha_t^2 DATA_STD^2 + sigma_t^2), a
    time-dependent eps 'network' whose samples stay O(1); tau: times in [0, 1] of the batch shape."""
    ab = ALPHA_BAR[(tau.double() * T).round().long()]
    scale = (1 - ab).sqrt() / (ab * DATA_STD**2 + 1 - ab)
    return z * scale.to(z.dtype)[:, None]


def diffusers_run(scheduler, x, g=None):
    """diffusers' loop with eps_model (float32 times, as the timed loops use)."""
    return diffusers_loop(scheduler, eps_model, x, T, g, time_dtype=torch.float32)


def max_diff(a, b) -> dict:
    diff = (a.double() - b.double()).abs().max().item()
    return {"max_abs_diff": diff if math.isfinite(diff) else str(diff), "max_abs_value": b.abs().max().item()}


def cross_check(versions: dict) -> dict:
    """This checkout's 50-step DDIM / DDPM vs diffusers' on the same eps-model, start noise and noise draws."""
    new = versions["after"]
    process = new.processes.GaussianForward(new.schedules.discrete_schedule("linear", T))
    model = new.denoiser.Denoiser(eps_model, process, prediction="eps")
    times = process.schedule.grid(SAMPLE_STEPS)
    alpha_bar = process.schedule.alpha_bar  # float64 [T + 1]: entry i is alpha_bar at our step i (t = i / T)
    x32 = torch.randn(SAMPLE_SHAPE, generator=torch.Generator().manual_seed(7))
    x64 = x32.double()
    out = {"our_grid_steps": (times * T).round().long().tolist()}

    ddim, ddpm = diffusers_schedulers("trailing")
    out["diffusers_trailing_timesteps"] = ddim.timesteps.tolist()
    # diffusers' alphas_cumprod[k] is our alpha_bar at step k + shift: for which shift?
    dif = ddim.alphas_cumprod.double()
    shifts = {}
    for shift in (-1, 0, 1, 2):
        lo, hi = max(0, -shift), min(T, T + 1 - shift)
        ours = alpha_bar[lo + shift:hi + shift]
        shifts[shift] = ((dif[lo:hi] - ours) / ours).abs().max().item()
    out["alphas_cumprod_max_rel_diff_by_shift"] = shifts
    out["index_shift"] = min(shifts, key=shifts.get)

    # (a) float32, diffusers as configured (its float32 tables), trailing spacing
    ours = new.samplers.ddim_sample(model, x32, times, eta=0.0)
    out["ddim_float32_trailing"] = max_diff(diffusers_run(ddim, x32), ours)
    old = versions["before"]
    old_process = old.processes.GaussianForward(old.schedules.discrete_schedule("linear", T))
    out["ddim_float32_before_vs_after"] = max_diff(
        old.samplers.ddim_sample(old.denoiser.Denoiser(eps_model, old_process, "eps"), old_process, x32,
                                 steps=SAMPLE_STEPS, eta=0.0), ours)
    ours_ddpm = new.samplers.ddpm_sample(model, x32, times, generator=torch.Generator().manual_seed(11))
    out["ddpm_float32_trailing"] = max_diff(diffusers_run(ddpm, x32, torch.Generator().manual_seed(11)), ours_ddpm)

    # (b) float64 with diffusers' tables replaced by ours (shifted by one): the update formulas alone
    for sch in (ddim, ddpm):
        sch.alphas_cumprod = alpha_bar[1:].clone()
    ddim.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    ddpm.one = torch.tensor(1.0, dtype=torch.float64)
    out["ddim_float64_our_tables"] = max_diff(diffusers_run(ddim, x64), new.samplers.ddim_sample(model, x64, times))
    out["ddpm_float64_our_tables"] = max_diff(
        diffusers_run(ddpm, x64, torch.Generator().manual_seed(11)),
        new.samplers.ddpm_sample(model, x64, times, generator=torch.Generator().manual_seed(11)))

    # (c) diffusers' other spacings do not land on our grid
    for spacing in ("leading", "linspace"):
        other, _ = diffusers_schedulers(spacing)
        head_tail = other.timesteps[:3].tolist() + other.timesteps[-2:].tolist()
        out[f"ddim_float32_{spacing}"] = {"timesteps_head_tail": head_tail,
                                          **max_diff(diffusers_run(other, x32), ours)}
    return out


# --------------------------------------------------------------------------- main


def markdown(payload: dict) -> str:
    tr, sp, cc = payload["training"], payload["sampler"], payload["cross_check"]
    prov = payload["provenance"]
    after = payload["versions"]["after"][:7] if payload["parameters"]["after"] != "worktree" else "the working tree"
    lines = [f"# step_speed: {payload['device']}, torch {payload['torch']}, diffusers {payload['diffusers']}, "
             f"commit {(prov['git_commit'] or '?')[:7]}; after = {after}",
             "", f"Command: `{payload['command']}`", "",
             f"Training step: U-Net ({tr['parameters']:,} parameters), batch [{tr['batch']}, 1, 28, 28], eps, "
             f"linear T = 1000, Adam; {tr['threads']} threads; median of {payload['parameters']['repeats']} "
             f"interleaved repeats of {tr['steps_per_repeat']} steps.", "",
             "| variant | ms / step (median) | ms / step (min) | median / reference |", "|---|---|---|---|"]
    for name, med in tr["medians_s"].items():
        lines.append(f"| {name} | {1e3 * med:.1f} | {1e3 * tr['minima_s'][name]:.1f} | "
                     f"{med / tr['medians_s']['reference']:.3f} |")
    lo = payload["loss_overhead"]
    lines += ["", f"The loss alone (simple_loss forward with the network 0.5 z, no U-Net), [128, 1, 28, 28], "
              f"{lo['threads']} thread(s):", "", "| variant | us / call (median) | aten ops / call | / reference |",
              "|---|---|---|---|"]
    for name, med in lo["medians_s"].items():
        lines.append(f"| {name} | {1e6 * med:.1f} | {lo['aten_ops_per_call'][name]:.0f} | "
                     f"{med / lo['medians_s']['reference']:.3f} |")
    lines += ["", f"Sampler step: [10000, 2] float32, eps = 0.1 z, linear T = 1000, 50-step grid, CPU, 1 thread; "
              f"median of {payload['parameters']['sampler_repeats']} interleaved repeats of "
              f"{sp['loops_per_repeat']} loops.", "",
              "| variant | us / step (median) | us / step (min) | aten ops / step |", "|---|---|---|---|"]
    for name, med in sp["medians_s_per_step"].items():
        ops = sp["aten_ops"].get(name, {}).get("ops_per_step")
        lines.append(f"| {name} | {1e6 * med:.1f} | {1e6 * sp['results'][name]['min_s']:.1f} | "
                     f"{'' if ops is None else f'{ops:.1f}'} |")
    lines += ["", "| ratio | paired (median of per-round ratios) | of medians | of minima |", "|---|---|---|---|"]
    lines += [f"| training: {k} | {tr['ratios_paired'][k]:.3f} | {v:.3f} | {tr['ratios_of_minima'][k]:.3f} |"
              for k, v in tr["ratios"].items()]
    lines += [f"| loss alone: {k} | {lo['ratios_paired'][k]:.3f} | {v:.3f} | |" for k, v in lo["ratios"].items()]
    lines += [f"| sampler: {k} | {sp['ratios_paired'][k]:.3f} | {v:.3f} | {sp['ratios_of_minima'][k]:.3f} |"
              for k, v in sp["ratios"].items()]
    lines += ["", f"Cross-check against diffusers: index shift {cc['index_shift']} (diffusers' alphas_cumprod[k] is "
              "our alpha_bar at step k + 1), timestep_spacing='trailing', set_alpha_to_one=True.", "",
              "| comparison | max abs diff | max abs value |", "|---|---|---|"]
    for k, v in cc.items():
        if isinstance(v, dict) and "max_abs_diff" in v:
            d = v["max_abs_diff"]
            lines.append(f"| {k} | {d if isinstance(d, str) else f'{d:.3g}'} | {v['max_abs_value']:.3g} |")
    syncs = payload["syncs"]
    lines += ["", "Host-device syncs: " + (syncs["reason"] if "reason" in syncs else "see `syncs` in the JSON."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default 128 on cuda, 32 on cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per timed repeat (default 20 cuda, 5 cpu)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats of the training variants")
    parser.add_argument("--warmup", type=int, default=10, help="untimed training steps per variant first")
    parser.add_argument("--sampler-repeats", type=int, default=15,
                        help="interleaved repeats of the sampler loops (>= 7)")
    parser.add_argument("--sampler-loops", type=int, default=4, help="50-step loops per sampler repeat")
    parser.add_argument("--data-size", type=int, default=1024, help="random 28x28 'images' the batches are drawn from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", default=BEFORE, help="commit of the old library")
    parser.add_argument("--api", default=API, help="commit of the new API as it first landed")
    parser.add_argument("--after", default="worktree",
                        help="'worktree' (default: the checkout as it is) or a commit, e.g. HEAD, extracted like "
                             "the others (a fixed library while others edit lib/)")
    parser.add_argument("--skip-training", action="store_true", help="sampler parts only (a quick look)")
    parser.add_argument("--out", default="bench/results/step_speed.json")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if args.sampler_repeats < 7:
        parser.error("--sampler-repeats must be at least 7")
    args.batch = args.batch or (128 if cuda else 32)
    args.steps = args.steps or (20 if cuda else 5)
    device = torch.device(args.device)
    began = time.perf_counter()
    load_start = os.getloadavg()
    state_start = lib_state()

    with tempfile.TemporaryDirectory() as tmp:
        after_rev = None if args.after == "worktree" else subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", args.after], capture_output=True, text=True,
            check=True).stdout.strip()
        versions = {"before": load_version(args.before, Path(tmp)), "api": load_version(args.api, Path(tmp)),
                    "after": this_checkout() if after_rev is None else load_version(after_rev, Path(tmp))}
        training = None if args.skip_training else training_part(args, device, versions)
        loss_overhead = loss_overhead_part(args, device, versions)
        print("loss without the U-Net (us/call): " + ", ".join(
            f"{k} {1e6 * v:.1f}" for k, v in loss_overhead["medians_s"].items()), flush=True)
        if training:
            print(f"training ({device}, batch {args.batch}, ms/step): " + ", ".join(
                f"{k} {1e3 * v:.1f}" for k, v in training["medians_s"].items()), flush=True)
        sampler = sampler_part(args, versions)
        print("sampler (cpu, 1 thread, us/step): " + ", ".join(
            f"{k} {1e6 * v:.1f}" for k, v in sampler["medians_s_per_step"].items()), flush=True)
        if cuda:
            syncs = {"training_per_step": training and training.pop("syncs_per_step"),
                     "sampling": sampler_syncs(versions, device)}
        else:
            if training:
                training.pop("syncs_per_step")
            syncs = {"training_per_step": None, "sampling_per_step": None,
                     "reason": "CPU run: torch.cuda.set_sync_debug_mode only sees CUDA synchronisations "
                               "(run with --device cuda)"}
        checks = cross_check(versions)

    payload = {
        "benchmark": "step_speed",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "diffusers": importlib.import_module("diffusers").__version__,
        "threads": {"training": torch.get_num_threads(), "sampler": 1},
        "versions": {"before": args.before, "api": args.api,
                     "after": after_rev or "the working tree: see library_state (HEAD and lib/ changes, "
                                           "at start and end)"},
        "parameters": {**{k: v for k, v in vars(args).items() if k != "out"}, "T": T, "schedule": "linear",
                       "beta_start": BETA_START, "beta_end": BETA_END, "lr": LR, "prediction": "eps",
                       "unet": {"channels": 1, "base": 32, "mults": [1, 2]}, "interleaved_repeats": True},
        "training": training,
        "loss_overhead": loss_overhead,
        "syncs": syncs,
        "sampler": sampler,
        "cross_check": checks,
        "provenance": provenance(time.perf_counter() - began),
        "library_state": {"start": state_start, "end": lib_state()},
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg(),
                                   "note": "the machine's load: other jobs share its cores"},
    }
    out = Path(args.out)
    write_json_atomic(out, payload)
    if training:
        out.with_suffix(".md").write_text(markdown(payload))
    for k, v in {**(training or {}).get("ratios", {}), **sampler["ratios"]}.items():
        print(f"{k}: {v:.3f}")
    print("cross-check:", {k: v for k, v in checks.items() if isinstance(v, dict)})
    print(f"wrote {out} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
