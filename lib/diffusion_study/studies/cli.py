"""Command line: train a DDPM or an NDM on images and measure its test bits/dim (chapter 5).

    python -m diffusion_study.train --dataset mnist --model ndm --objective vlb --T 10 \\
        --steps 20000 --batch 128 --checkpoint-dir runs/mnist-ndm-T10-s0
    torchrun --nproc_per_node=4 -m diffusion_study.train ...      (DistributedDataParallel)

The model and the losses are chapter 5's (`image_study`), so a run here (and the GPU run of
scripts/mnist_gpu.py) trains what the chapter trains: x_hat = PreconditionedX0(UNet) predicting x0,
clipped to [-1, 1] (--no-clip: not clipped), on a continuous schedule (logsnr_cosine, log-SNR
10..-10 by default); DDPM noises x itself (F = identity), NDM a learned F(x, t) = x + t UNet(x, t)
of the same size whose time features are slowed by --f-time-scale (0.01, `transforms.SlowTime`, as in
chapters 4 and 5; 0: the denoisers' features) (`image_study.image_model`). Objectives, per example
(`image_study.training_loss`), in bits/dim: 'simple' = ||eps - eps_hat||^2 (Ho et al.; for NDM it
lets F collapse, chapter 4; not in bits), 'vlb' = the discrete bound on the grid of T steps, one
of its T terms drawn per example and scaled by T (`image_study.sampled_bound`, the chapter's
training loss), 'continuous' = the continuous-time bound (NDM's, VDM's for DDPM).

The run lives in --checkpoint-dir: config.json (the settings that define the run), checkpoint.pt
(train's, written every --checkpoint-every steps and on SIGTERM / SIGINT, exit 143 / 130; it records
the settings too), eval.jsonl (evaluations every --eval-every steps, one line per step, not repeated
after a resume) and result.json (final test bits/dim with provenance). Rerunning the same command
resumes; a larger --steps extends the run; other settings, here or in a copied checkpoint, are refused.
Every flag is checked, in one line naming it, before anything is written. The global batch
--batch is split over the ranks (train's draws="global": the run equals a one-process run with
the same global batch up to float order). The final evaluation is sharded over the ranks
(`distributed.sharded_bound`) and runs in float32 on the unwrapped EMA model: the discrete bound
on T steps (all T - 1 pairs if T - 1 <= --eval-pairs, else that many random pairs per example)
and the continuous bound (--eval-nt draws of t per example).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from diffusion_study.base.args import writable_folder
from diffusion_study.book.results import write_json_atomic, write_result
from diffusion_study.core import continuous_time
from diffusion_study.core.objectives import (
    DiscretizedGaussianDecoder,
    nats_to_bits_per_dim,
    vlb_terms,
)
from diffusion_study.core.schedules import SCHEDULES, continuous_schedule
from diffusion_study.data.images import DATASETS, load_image_dataset
from diffusion_study.nets.models import count_parameters
from diffusion_study.studies.ndm_images import (
    OBJECTIVES,
    AutocastUNet,
    full_precision,
    image_model,
    training_loss,
    unets,
)
from diffusion_study.training import distributed
from diffusion_study.training.loop import (
    DRAWS,
    config_differences,
    load_checkpoint,
    state_digest,
    train,
)

MODELS = ("ddpm", "ndm")
PRECISIONS = ("fp32", "bf16")
BOUNDS = ("discrete", "continuous")
# Arguments that may change between the calls of one run; every other one defines the run.
RUN_FREE = ("steps", "checkpoint_dir", "checkpoint_every", "compile", "device", "log_every", "progress",
            "eval_every", "eval_batches", "eval_batch_size", "eval_pairs", "eval_nt", "eval_examples",
            "results_dir", "name", "data_root", "reevaluate")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default, except None (that flag's help says what happens without it)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffusion_study.train", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[2],
                                formatter_class=_Help)
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--data-root", default="data", help="folder of MNIST/raw and cifar-10-batches-py")
    p.add_argument("--model", default="ddpm", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--objective", default="vlb", help=f"one of {', '.join(OBJECTIVES)}")
    p.add_argument("--schedule", default="logsnr_cosine", help=f"continuous schedule, one of {', '.join(SCHEDULES)}")
    p.add_argument("--logsnr-max", type=float, default=10.0, help="log-SNR at t = 0 (logsnr_cosine only)")
    p.add_argument("--logsnr-min", type=float, default=-10.0, help="log-SNR at t = 1 (logsnr_cosine only)")
    p.add_argument("--T", type=int, default=1000, help="steps of the discrete bound (objective vlb and evaluation)")
    p.add_argument("--base", type=int, default=32, help="U-Net base width (channels of the first level)")
    p.add_argument("--mults", default="1,2,2", help="U-Net width multipliers per level, comma-separated")
    p.add_argument("--attention", action="store_true", help="self-attention at the lowest resolution")
    p.add_argument("--f-time-scale", type=float, default=0.01,
                   help="NDM: F's U-Net reads time scale * t (transforms.SlowTime, chapters 4 and 5); 0: the denoisers' 1000 t")
    p.add_argument("--clip", action=argparse.BooleanOptionalAction, default=True,
                   help="clip x_hat to [-1, 1], as chapter 5 does (--no-clip: not clipped)")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps (a larger value extends a run)")
    p.add_argument("--batch", type=int, default=128, help="global batch, split evenly over the ranks")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate, in (0, 1]")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (0 disables the EMA)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="global gradient-norm clip (0: none)")
    p.add_argument("--precision", default="fp32", help=f"one of {', '.join(PRECISIONS)} (bf16: autocast in training)")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Nets (in place: same checkpoints)")
    p.add_argument("--draws", default="global", help=f"one of {', '.join(DRAWS)} (see train.train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, batches and noise (>= 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto: cuda when available")
    p.add_argument("--checkpoint-dir", required=True, help="the run's folder: config, checkpoint, results")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="write checkpoint.pt every this many steps")
    p.add_argument("--log-every", type=int, default=100, help="copy the losses to the host every this many steps")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (--no-progress: none)")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every this many steps (0: never)")
    p.add_argument("--eval-batches", type=int, default=4, help="test batches of a periodic evaluation")
    p.add_argument("--eval-batch-size", type=int, default=256, help="test images per evaluation batch")
    p.add_argument("--eval-pairs", type=int, default=50, help="random pairs per example of the discrete bound if T - 1 exceeds it")
    p.add_argument("--eval-nt", type=int, default=4, help="draws of t per example of the continuous bound")
    p.add_argument("--eval-examples", type=int, default=None, help="evaluate the first this many test images (default: all)")
    p.add_argument("--reevaluate", action="store_true", help="redo the final evaluation of a finished run")
    p.add_argument("--results-dir", default=None, help="also write the final JSON here, as <name>.json")
    p.add_argument("--name", default=None, help="result name (default: dataset-model-objective-T-seed)")
    return p


def _check(kind: str, value: str, valid) -> str:
    if value not in valid:
        raise SystemExit(f"error: unknown {kind} {value!r}; valid choices: {', '.join(map(repr, valid))}")
    return value


def _flag(name: str) -> str:
    """The command-line spelling of an argument: 'eval_every' -> '--eval-every'; 'progress' -> '--no-progress'."""
    return "--no-progress" if name == "progress" else "--" + name.replace("_", "-")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed and checked arguments: a bad one exits with one line naming the flag and its valid range, before
    anything is read or written (the data-dependent checks follow in `check_against_data`)."""
    args = parser().parse_args(argv)
    _check("dataset", args.dataset, DATASETS)
    _check("model", args.model, MODELS)
    _check("objective", args.objective, OBJECTIVES)
    _check("schedule", args.schedule, SCHEDULES)
    _check("precision", args.precision, PRECISIONS)
    _check("draws", args.draws, DRAWS)
    _check("device", args.device, ("auto", "cpu", "cuda"))
    try:
        args.mults = tuple(int(m) for m in args.mults.split(","))
    except ValueError:
        raise SystemExit(f"error: --mults must be comma-separated integers such as 1,2,2, got {args.mults!r}")
    for name in ("T", "base", "steps", "batch", "checkpoint_every", "log_every", "eval_batches",
                 "eval_batch_size", "eval_pairs", "eval_nt"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: {_flag(name)} must be a positive integer, got {getattr(args, name)}")
    for name in ("eval_every", "seed"):
        if getattr(args, name) < 0:
            raise SystemExit(f"error: {_flag(name)} must be an integer >= 0, got {getattr(args, name)}")
    if args.eval_examples is not None and args.eval_examples < 1:
        raise SystemExit(f"error: --eval-examples must be a positive integer (or left out: all test images), "
                         f"got {args.eval_examples}")
    if args.T < 2:
        raise SystemExit(f"error: --T must be at least 2 (the discrete bound needs a decoder step and a diffusion step), got {args.T}")
    if min(args.mults) < 1:
        raise SystemExit(f"error: --mults entries must be positive, got {args.mults}")
    for name in ("logsnr_max", "logsnr_min", "f_time_scale", "lr", "ema", "grad_clip"):
        if not math.isfinite(getattr(args, name)):
            raise SystemExit(f"error: {_flag(name)} must be a finite number, got {getattr(args, name)}")
    if not args.logsnr_max > args.logsnr_min:
        raise SystemExit(f"error: --logsnr-max must exceed --logsnr-min (log-SNR falls from t = 0 to t = 1), "
                         f"got --logsnr-max {args.logsnr_max} <= --logsnr-min {args.logsnr_min}")
    if not 0 < args.lr <= 1:
        raise SystemExit(f"error: --lr must lie in (0, 1] (Adam's step size; the default is 2e-4), got {args.lr}")
    if args.f_time_scale < 0:
        raise SystemExit(f"error: --f-time-scale must be a number >= 0, got {args.f_time_scale}")
    if not 0 <= args.ema < 1:
        raise SystemExit(f"error: --ema must lie in [0, 1), got {args.ema}")
    if args.grad_clip < 0:
        raise SystemExit(f"error: --grad-clip must be >= 0 (0: no clipping), got {args.grad_clip}")
    return args


def check_against_data(args: argparse.Namespace, train_size: int, test_size: int, world: int) -> None:
    """The checks that need the data set's sizes and the number of ranks (still before anything is written)."""
    if args.batch % world:
        raise SystemExit(f"error: --batch {args.batch} must be a multiple of the number of ranks {world}")
    if args.batch > train_size:
        raise SystemExit(f"error: --batch must be at most the {train_size} training images of {args.dataset} "
                         f"(batches are drawn with replacement), got {args.batch}")
    if args.eval_examples is not None and args.eval_examples > test_size:
        raise SystemExit(f"error: --eval-examples must lie in [1, {test_size}] (the test images of {args.dataset}), "
                         f"got {args.eval_examples}")
    why = writable_folder(args.checkpoint_dir)
    if why is not None:
        raise SystemExit(f"error: --checkpoint-dir {args.checkpoint_dir} cannot hold the run: {why}")


# --------------------------------------------------------------------------- the model


def build_model(args: argparse.Namespace, schedule, channels: int, data_std: float):
    """The run's `image_study.image_model` (chapter 5's) from the parsed arguments; z: [B, C, H, W]."""
    return image_model(args.model, schedule, channels=channels, base=args.base, mults=args.mults,
                       attention=args.attention, data_std=data_std, seed=args.seed,
                       clip=(-1.0, 1.0) if args.clip else None, f_time_scale=args.f_time_scale or None,
                       bf16=args.precision == "bf16")


class Objective(nn.Module):
    """The training loss as a module, so DistributedDataParallel sees every network call (x_hat and F)
    inside its forward: forward(x [B, C, H, W], generator) -> per-example loss [B] float32: chapter 5's
    `image_study.training_loss` (for 'vlb' the sampled bound on the grid of T steps), in bits/dim for the
    bounds. With bf16 U-Nets (`image_model(..., bf16=True)`) only the networks run in bfloat16; the
    bound's arithmetic stays float32/float64. F under forward-mode AD (NDM's continuous bound,
    torch.func.jvp) runs in float32: autocast does not support it."""

    def __init__(self, denoiser, objective: str, levels: int, T: int):
        super().__init__()
        self.denoiser, self.objective, self.T = denoiser, objective, T
        self.decoder = DiscretizedGaussianDecoder(levels)
        self.grid = denoiser.process.schedule.grid(T)  # [T + 1] float64, kept on the CPU: checked without a sync
        self.loss = training_loss(objective, self.decoder, self.grid)
        if objective == "continuous":
            for net in unets(denoiser.process):
                if isinstance(net, AutocastUNet):
                    net.autocast_enabled = False

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        loss = self.loss(self.denoiser, x, generator)
        return loss if self.objective == "simple" else nats_to_bits_per_dim(loss, math.prod(x.shape[1:])).float()


def objective_loss(model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
    """train's loss_fn: the (possibly DDP-wrapped) Objective's forward; [B]."""
    return model(x, generator)


def bound_fn(kind: str, objective: Objective, pairs: int, n_t: int):
    """bound(denoiser, x, generator) -> VLBTerms [B] nats: the discrete bound on T steps or the continuous one."""
    if kind == "discrete":
        grid, T = objective.grid, objective.T
        n_timesteps = None if T - 1 <= pairs else pairs
        return lambda model, x, g: vlb_terms(model, x, decoder=objective.decoder, times=grid,
                                             n_timesteps=n_timesteps, generator=g)
    return lambda model, x, g: continuous_time.continuous_bound(model, x, decoder=objective.decoder, n_t=n_t, generator=g)


# --------------------------------------------------------------------------- the run


def run_config(args: argparse.Namespace, data_std: float) -> dict:
    """The settings that define a run (config.json): every argument but those in RUN_FREE."""
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items()) if k not in RUN_FREE}
    config["data_std"] = data_std
    return config


def _check_run_dir(folder: Path, config: dict, ctx, steps: int) -> None:
    """Refuse a folder that holds another run (config.json, then checkpoint.pt, see `_check_checkpoint`);
    write config.json for a new one (rank 0)."""
    path = folder / "config.json"
    if path.exists():
        stored = json.loads(path.read_text())
        differ = {k: (stored.get(k), config.get(k)) for k in sorted(set(stored) | set(config)) if stored.get(k) != config.get(k)}
        if differ:
            raise SystemExit(f"error: {folder} holds a run with another configuration; (stored, now) differ in {differ}. "
                             f"Rerun with the run's own arguments (only {', '.join(map(_flag, RUN_FREE))} "
                             "may change) or use another --checkpoint-dir")
    _check_checkpoint(folder / "checkpoint.pt", config, steps)
    distributed.barrier(ctx)
    if ctx.main and not path.exists():
        write_json_atomic(path, config)
    distributed.barrier(ctx)


def _check_checkpoint(path: Path, config: dict, steps: int) -> int:
    """The step of the checkpoint at `path` (0 if none), after refusing, before anything is written, one
    trained under another configuration (wherever it was copied from) or one already past --steps."""
    if not path.exists():
        return 0
    try:
        state = load_checkpoint(path)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    stored = state["config"].get("run")
    if stored is None:
        raise SystemExit(f"error: {path} records no run configuration (written by another program or an older "
                         "version): it cannot be checked against these settings; use another --checkpoint-dir")
    if stored != config:
        raise SystemExit(f"error: {path} was trained under another configuration; (checkpoint, now) differ in "
                         f"{config_differences(stored, config)}; rerun with the checkpoint's settings or use "
                         "another --checkpoint-dir")
    if state["step"] > steps:
        raise SystemExit(f"error: --steps must be at least the {state['step']} steps already done in {path} "
                         f"(a larger value extends the run), got {steps}")
    return state["step"]


def _evaluated_through(path: Path) -> int:
    """The last step in eval.jsonl (0 if none): evaluations up to it are not repeated after a resume,
    so the file stays append-only with one line per step. Unreadable lines (a write cut by SIGKILL) are skipped."""
    last = 0
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                last = max(last, int(json.loads(line)["step"]))
            except (ValueError, KeyError, TypeError):
                continue
    return last


def _log(ctx, message: str) -> None:
    if ctx.main:
        print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) and evaluate; returns 0. See the module docstring and --help."""
    args = parse(argv)
    ctx = distributed.setup(None if args.device == "auto" else args.device)
    try:
        return _main(args, ctx)
    except KeyboardInterrupt as stop:  # SIGINT as SIGTERM: a message and an exit code, no traceback
        if not stop.args:  # outside train, which already said where it stopped
            print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        distributed.teardown(ctx)


def _main(args: argparse.Namespace, ctx) -> int:
    began = time.perf_counter()
    if args.objective == "simple" and args.model == "ndm":
        _log(ctx, "warning: objective 'simple' lets NDM's F collapse (chapter 4, claim N6); 'vlb' or 'continuous' train it")
    data = load_image_dataset(args.dataset, args.data_root)
    check_against_data(args, len(data.train), len(data.test), ctx.world)
    data_std = round(float(data.train.std()), 4)
    config = run_config(args, data_std)
    folder = Path(args.checkpoint_dir)
    evaluated = _evaluated_through(folder / "eval.jsonl")
    _check_run_dir(folder, config, ctx, args.steps)
    name = args.name or f"{args.dataset}-{args.model}-{args.objective}-T{args.T}-s{args.seed}"
    if (folder / "result.json").exists() and not args.reevaluate:
        done = json.loads((folder / "result.json").read_text())
        if done.get("params", {}).get("steps") == args.steps:
            _log(ctx, f"{folder} already finished {args.steps} steps: {folder / 'result.json'} (--reevaluate to redo)")
            return 0

    kwargs = {"logsnr_max": args.logsnr_max, "logsnr_min": args.logsnr_min} if args.schedule == "logsnr_cosine" else {}
    schedule = continuous_schedule(args.schedule, **kwargs)
    # the initial weights are a function of --seed (DDP broadcasts rank 0's anyway)
    denoiser = build_model(args, schedule, data.shape[0], data_std)
    objective = Objective(denoiser, args.objective, data.levels, args.T).to(ctx.device)
    if args.compile:
        for net in unets(denoiser):
            net.compile()  # in place: parameter names (and checkpoints) stay those of the plain module
    model = objective
    if ctx.world > 1:
        model = DistributedDataParallel(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    train_x = data.train.to(ctx.device)
    test_x = data.test if args.eval_examples is None else data.test[:args.eval_examples]
    periodic = args.objective if args.objective != "simple" else "continuous"
    periodic = "discrete" if periodic == "vlb" else "continuous"

    def evaluate(step: int, net: nn.Module, ema: nn.Module | None) -> None:
        if step <= evaluated:  # replayed after a resume: already in eval.jsonl
            return
        module = ema if ema is not None else net
        bound = bound_fn(periodic, module, args.eval_pairs, 1)
        with full_precision(module):
            res = distributed.sharded_bound(module.denoiser, test_x, bound, batch_size=args.eval_batch_size,
                                            seed=args.seed, max_batches=args.eval_batches, device=ctx.device,
                                            decoder=module.decoder)
        if ctx.main:
            with open(folder / "eval.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "bound": periodic, **res.as_dict()}) + "\n")
            print(f"step {step}: {periodic} bound {res}", flush=True)

    _log(ctx, f"{name}: {args.model} on {args.dataset} {tuple(data.train.shape)}, objective {args.objective}, "
              f"T {args.T}, U-Net base {args.base} mults {args.mults}, {count_parameters(objective):,} parameters, "
              f"{ctx.world} rank(s) on {ctx.device}, global batch {args.batch}")
    result = train(model, objective_loss, train_x, steps=args.steps, batch_size=args.batch // ctx.world, lr=args.lr,
                   ema_decay=args.ema or None, seed=args.seed, checkpoint_path=folder / "checkpoint.pt",
                   checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                   progress=args.progress and ctx.main, grad_clip=args.grad_clip or None, draws=args.draws,
                   callback=evaluate if args.eval_every else None, callback_every=args.eval_every or None,
                   run_config=config)
    trained = result.ema if result.ema is not None else result.model
    digests = [state_digest(objective.state_dict())]  # every rank's weights: DDP keeps them equal
    if ctx.world > 1:
        digests = [None] * ctx.world
        torch.distributed.all_gather_object(digests, state_digest(objective.state_dict()))
    metrics = {"train_loss_last": float(result.losses[-min(100, len(result.losses)):].mean()),
               "train_seconds_this_call": result.seconds, "resumed_from": result.resumed_from,
               "parameters": count_parameters(objective), "test_examples": len(test_x),
               "rank_parameter_digests": digests}
    for kind in BOUNDS:
        bound = bound_fn(kind, trained, args.eval_pairs, args.eval_nt)
        t0 = time.perf_counter()
        with full_precision(trained):
            res = distributed.sharded_bound(trained.denoiser, test_x, bound, batch_size=args.eval_batch_size,
                                            seed=args.seed + 1, device=ctx.device, decoder=trained.decoder)
        metrics[f"{kind}_bound"] = {**res.as_dict(), "seconds": time.perf_counter() - t0}
        _log(ctx, f"test {kind} bound{f' (T = {args.T})' if kind == 'discrete' else ''}: {res}")
    params = {**config, "steps": args.steps, "world_size": ctx.world, "eval_pairs": args.eval_pairs,
              "eval_nt": args.eval_nt, "compile": args.compile, "name": name}
    if ctx.main:
        write_result(folder, "result", params, metrics, wall_time_s=time.perf_counter() - began)
        if args.results_dir:
            write_result(args.results_dir, name, params, metrics, wall_time_s=time.perf_counter() - began)
        print(f"wrote {folder / 'result.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
