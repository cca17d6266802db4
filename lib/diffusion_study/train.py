"""One training loop for every model in the book: Adam, EMA, progress bar, checkpoint + resume,
on one process or data-parallel over torch.distributed ranks.

The run is a function of `seed`: batches are drawn from one torch.Generator, and the same
generator is handed to the loss for its noise and times, so an interrupted run resumed from
its checkpoint ends bitwise equal to an uninterrupted one (on the same machine).

    loss_fn(model, batch, generator) -> Tensor[B]        (one model)
    loss_fn(model, batch, generator) -> Tensor[G, B]     (an EnsembleMLP of G members)

`batch` is the indexed data on the model's device: a Tensor [B, ...] ([G, B, ...]), or for
tuple data such as (x, y) the tuple of indexed tensors. e.g.
`lambda model, x, g: simple_loss(model, x, generator=g)` for a `Denoiser` model.

Pieces: train_step (one optimizer step, loss kept on the device), save_checkpoint /
load_checkpoint (atomic file I/O) and train (the loop). Distributed use follows nanoGPT: one
process per device, init_process_group (with NCCL, torch.cuda.set_device(local_rank) first),
the model wrapped in DistributedDataParallel before it is handed to train (see train's
docstring for batches, seeds and checkpoints).
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from diffusion_study.validation import positive_int, probability

Batch = Tensor | tuple[Tensor, ...]
LossFn = Callable[[nn.Module, Batch, torch.Generator], Tensor]


@dataclass
class TrainResult:
    """model (unwrapped from DistributedDataParallel) and ema (None when disabled) after
    training; losses: [steps] or [steps, G], the per-step mean loss over the batch (per member
    for an ensemble) of this rank, including steps done before a resume (rank 0's history is
    the one checkpointed); resumed_from: the step the run started at (0 for a fresh run)."""

    model: nn.Module
    ema: nn.Module | None
    losses: Tensor
    steps: int
    resumed_from: int
    seconds: float


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay used after optimizer step `step` (0-based): min(decay, (1 + step) / (10 + step)).

    The warm-up keeps short runs from averaging in the random initialisation.
    """
    return min(decay, (1 + step) / (10 + step))


# --------------------------------------------------------------------------- distributed


def _rank() -> int:
    """This process's rank in torch.distributed; 0 when no process group is initialised."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world_size() -> int:
    """Number of ranks in torch.distributed; 1 when no process group is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper, else `model` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s generator: `seed` itself on rank 0, so a one-process run draws the
    same stream as ever; a 64-bit hash of (seed, rank) on the other ranks (a CPU generator
    uses its low 32 bits, as it does for any seed)."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}".encode()).digest()[:8], "little")


def _generator_states(generator: torch.Generator, world: int) -> Tensor:
    """Generator state(s) for a checkpoint: [L] uint8 in one process; [world, L] with row r from
    rank r otherwise (all_gather_object: a collective every rank must enter)."""
    if world == 1:
        return generator.get_state()
    states: list = [None] * world
    dist.all_gather_object(states, generator.get_state())
    return torch.stack(states)


def _own_state(states: Tensor, rank: int) -> Tensor:
    """This rank's row of a checkpoint's generator state(s), [L] or [world, L] -> [L]."""
    # a copy: Generator.set_state on a row view (non-zero storage offset) segfaults (torch 2.14)
    return states if states.ndim == 1 else states[rank].clone()


# --------------------------------------------------------------------------- data


def _data_length(data: Tensor | tuple[Tensor, ...]) -> int:
    """N of data [N, ...] or of a tuple of tensors that all have first dimension N (N >= 1)."""
    parts = data if isinstance(data, tuple) else (data,)
    if not parts or not all(isinstance(p, Tensor) and p.ndim >= 1 for p in parts):
        raise ValueError("data must be a tensor [N, ...] or a non-empty tuple of such tensors, "
                         f"got {type(data).__name__}")
    lengths = [len(p) for p in parts]
    if len(set(lengths)) > 1:
        raise ValueError(f"the tensors in data must have the same length N, got lengths {lengths}")
    if lengths[0] == 0:
        raise ValueError(f"data must be non-empty, got shapes {[tuple(p.shape) for p in parts]}")
    return lengths[0]


def _batch(data: Tensor | tuple[Tensor, ...], index: Tensor, device: torch.device) -> Batch:
    """data[index] on `device`: [*index.shape, ...], or the tuple of them for tuple data."""
    if isinstance(data, tuple):
        return tuple(part[index].to(device) for part in data)
    return data[index].to(device)


# --------------------------------------------------------------------------- step and I/O


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, batch: Batch,
               generator: torch.Generator, *, grad_clip: float | None = None,
               expected_shape: tuple[int, ...]) -> Tensor:
    """One optimizer step on loss_fn(model, batch, generator) -> per-example losses of
    `expected_shape`, [B] or [G, B] (checked on the host: shapes only).

    Backpropagates the loss averaged over B and summed over G (member g gets the gradient of
    its own mean loss), clips the global gradient norm to `grad_clip` if given, steps. Returns
    the detached per-member mean loss, [] or [G], left on the model's device (no host sync).
    """
    loss = loss_fn(model, batch, generator)
    if loss.shape != tuple(expected_shape):
        raise ValueError(f"loss_fn must return per-example losses {tuple(expected_shape)}, "
                         f"got {tuple(loss.shape)}")
    optimizer.zero_grad(set_to_none=True)
    loss.mean(-1).sum().backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach().mean(-1)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save `state` to a temporary file in the folder of `path`, fsync, os.replace: a
    crash mid-write never leaves a truncated checkpoint at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by save_checkpoint, with every tensor on the CPU (weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- the loop


def train(model: nn.Module, loss_fn: LossFn, data: Tensor | tuple[Tensor, ...], *, steps: int,
          batch_size: int, lr: float = 1e-3, ema_decay: float | None = 0.999, seed: int = 0,
          checkpoint_path: str | Path | None = None, checkpoint_every: int = 1000,
          log_every: int = 50, progress: bool = True,
          grad_clip: float | None = None) -> TrainResult:
    """Train `model` in place with Adam for `steps` optimizer steps in total.

    data: [N, ...], or a tuple of tensors with the same N such as (x, y); each step draws
    indices uniformly with replacement, [B] for one model or [G, B] when the model has a
    `members` attribute G (EnsembleMLP), so each member sees its own batches. The loss is
    averaged over B and summed over G: member g's gradient is the gradient of its own mean
    loss. `grad_clip` clips the global gradient norm (not allowed for an ensemble, where it
    would couple the members). Losses stay on the device and are copied to the host (one
    sync) every `log_every` steps, at checkpoints and at the end; the progress bar shows the
    mean loss since the previous copy.

    With `checkpoint_path`, {model, ema, optimizer, step, generator state, losses, config} is
    written atomically every `checkpoint_every` steps and at the end; if the file exists the run
    resumes from it (its config must match). An interrupted run loses at most the steps since
    the last checkpoint; `steps` is the total, so rerunning the same call finishes the job.

    Under torch.distributed (model wrapped in DistributedDataParallel, one process per rank):
    rank r draws from its own generator seeded with rank_seed(seed, r) (rank 0: `seed`), so
    the ranks draw independent batches with replacement from the whole of `data`; this stands
    in for sharding (no DistributedSampler), the effective batch is world_size * batch_size
    and DDP averages the ranks' gradients. EMA and checkpoint hold the unwrapped module; every
    rank keeps the EMA, only rank 0 writes. The checkpoint keeps every rank's generator state,
    [world_size, L] gathered at each checkpoint, and resumed rank r restores row r, so a
    resumed multi-rank run continues each rank's stream exactly; world_size is part of the
    config, so resuming with another world size is refused. Every rank reads the checkpoint at
    the start, so its folder must be shared by the ranks.
    """
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    log_every = positive_int("log_every", log_every)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if ema_decay is not None:
        ema_decay = probability("ema_decay", ema_decay)
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
    net = unwrap(model)
    members = getattr(net, "members", None)
    if members is not None and grad_clip is not None:
        raise ValueError("grad_clip would couple the members of an ensemble; use grad_clip=None")
    size = _data_length(data)

    rank, world = _rank(), _world_size()
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(rank_seed(seed, rank))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    ema = copy.deepcopy(net).requires_grad_(False).eval() if ema_decay is not None else None
    index_shape = (batch_size,) if members is None else (members, batch_size)
    config = {"batch_size": batch_size, "lr": float(lr), "ema_decay": ema_decay, "seed": seed,
              "members": members, "data_size": size, "world_size": world}
    logged: list[Tensor] = []  # host copies, [k] or [k, G]
    pending: list[Tensor] = []  # device losses [] or [G] not yet copied
    start = 0

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        state = load_checkpoint(path)
        if state["config"] != config:
            raise ValueError(f"checkpoint {path} was written with {state['config']}, "
                             f"this run has {config}; use another checkpoint_path")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(_own_state(state["generator"], rank))
        logged = [state["losses"]]
        start = int(state["step"])
        if start > steps:
            raise ValueError(f"checkpoint {path} is at step {start}, beyond steps={steps}")

    bar = tqdm(total=steps, initial=start, disable=not progress or rank != 0, desc="train",
               dynamic_ncols=True)

    def log() -> None:
        if pending:
            logged.append(torch.stack(pending).cpu())  # the one host sync
            pending.clear()
            bar.set_postfix(loss=f"{logged[-1].mean().item():.4g}", refresh=False)

    def save(step: int) -> None:
        generators = _generator_states(generator, world)  # collective: before the rank test
        if rank == 0:
            save_checkpoint(path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                   "ema": ema.state_dict() if ema is not None else None,
                                   "step": step, "generator": generators,
                                   "losses": _losses(logged, members), "config": config})

    began = time.perf_counter()
    model.train()
    try:
        for step in range(start, steps):
            index = torch.randint(size, index_shape, generator=generator)
            pending.append(train_step(model, optimizer, loss_fn, _batch(data, index, device),
                                      generator, grad_clip=grad_clip, expected_shape=index_shape))
            if ema is not None:
                _ema_update(ema, net, ema_decay_at(step, ema_decay))
            bar.update(1)
            last = step == steps - 1
            checkpoint = path is not None and ((step + 1) % checkpoint_every == 0 or last)
            if (step + 1) % log_every == 0 or checkpoint or last:
                log()
            if checkpoint:
                save(step + 1)
    finally:
        bar.close()
    return TrainResult(net, ema, _losses(logged, members), steps, start,
                       time.perf_counter() - began)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter; buffers copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _losses(logged: list[Tensor], members: int | None) -> Tensor:
    """The host copies joined: [steps] or [steps, G] (empty before the first step)."""
    if logged:
        return torch.cat(logged)
    return torch.zeros((0,) if members is None else (0, members))
