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
docstring for batches, seeds and checkpoints). The command line, `python -m diffusion_study.train
--help` (one process, or `torchrun --nproc_per_node=N -m diffusion_study.train ...`), trains and
evaluates the image models of chapter 5 (`diffusion_study.studies.cli`).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from diffusion_study.base.args import positive_int, probability
from diffusion_study.base.io import atomic_path

DRAWS = ("rank", "global")
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


def state_digest(state) -> str:
    """SHA-256 over every tensor's bytes and every other value's repr, in key order: a checksum
    that changes when any weight, step or setting in a checkpoint does."""
    h = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                h.update(repr(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(f"{type(value).__name__}{len(value)}".encode())
            for item in value:
                feed(item)
        elif isinstance(value, Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())

    feed(state)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save `state` plus its `state_digest` to a temporary file in the folder of `path`,
    fsync, os.replace: a crash mid-write never leaves a truncated checkpoint at `path`."""
    state = {**state, "digest": state_digest(state)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=True, mode=0o600) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by save_checkpoint, tensors on the CPU (weights_only), after checking
    its digest: a file whose contents changed since it was written is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a zip, unpickling refused, ...
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                         "delete it to start over") from exc
    if not isinstance(state, dict) or "digest" not in state:
        raise ValueError(f"checkpoint {path} has no checksum: not written by this library's train()")
    stored = state.pop("digest")
    if state_digest(state) != stored:
        raise ValueError(f"checkpoint {path} does not match its checksum: it was modified or corrupted "
                         "after it was written; delete it to start over")
    return state


def data_fingerprint(data: Tensor | tuple[Tensor, ...]) -> str:
    """A short SHA-256 of the data's shapes, dtypes and values (all of them up to 2^22 elements per
    tensor, an evenly strided subset beyond): resuming on other data is refused."""
    h = hashlib.sha256()
    for part in data if isinstance(data, tuple) else (data,):
        flat = part.detach().reshape(-1)
        stride = max(1, flat.numel() // (1 << 22))
        sample = flat[::stride].cpu().contiguous().reshape(-1)
        h.update(f"{part.dtype}{tuple(part.shape)}".encode())
        h.update(sample.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def loss_identity(loss_fn) -> str:
    """Name and a hash of the code of `loss_fn` (and of the functions it was built from), so that
    resuming with another loss is refused."""
    h = hashlib.sha256()
    fn = loss_fn
    while isinstance(fn, functools_partial_types()):
        h.update(repr((fn.args, sorted(fn.keywords))).encode())
        fn = fn.func
    code = getattr(fn, "__code__", None)

    def feed(c) -> None:
        h.update(c.co_code)
        for const in c.co_consts:
            if hasattr(const, "co_code"):
                feed(const)
            else:
                h.update(repr(const).encode())
        h.update(repr(c.co_names).encode())

    if code is not None:
        feed(code)
    return f"{getattr(fn, '__qualname__', type(fn).__name__)}:{h.hexdigest()[:12]}"


def config_hash(config: dict) -> str:
    """SHA-256 of a JSON-able config (keys sorted): equal settings, equal hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()


def config_differences(stored: dict, now: dict, prefix: str = "") -> dict:
    """{key: (stored, now)} for every key whose values differ, nested dicts by dotted keys ('run.T');
    the hashes of differing sub-configs are left out (their keys are named instead)."""
    out = {}
    for key in sorted(set(stored) | set(now), key=str):
        a, b = stored.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_differences(a, b, f"{prefix}{key}."))
        elif a != b and not (str(key).endswith("_hash") and isinstance(stored.get(key[:-5]), dict)):
            out[f"{prefix}{key}"] = (a, b)
    return out


def functools_partial_types():
    import functools

    return (functools.partial,)


# --------------------------------------------------------------------------- the loop


def train(model: nn.Module, loss_fn: LossFn, data: Tensor | tuple[Tensor, ...], *, steps: int,
          batch_size: int, lr: float = 1e-3, ema_decay: float | None = 0.999, seed: int = 0,
          checkpoint_path: str | Path | None = None, checkpoint_every: int = 1000,
          log_every: int = 50, progress: bool = True,
          grad_clip: float | None = None, draws: str = "rank",
          callback: Callable[[int, nn.Module, nn.Module | None], None] | None = None,
          callback_every: int | None = None, run_config: dict | None = None) -> TrainResult:
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
    resumes from it (its config must match). `run_config` (JSON-able settings of the caller, such as
    the command line's model and schedule) is stored in the config with its SHA-256, so a checkpoint
    copied anywhere refuses to resume under other settings, naming the keys that differ. An interrupted run loses at most the steps since
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

    draws="global" (one model, not an ensemble) splits a global batch over the ranks instead:
    every rank seeds its generator with `seed`, draws the indices of the global batch of
    world_size * batch_size examples and keeps its own slice (rank r: examples r B .. (r+1) B - 1),
    and the loss's random draws (`diffusion_study.base.rng`, leading dim B) are drawn for the global
    batch and sliced the same way (`distributed.shard_draws`). The run then equals a one-process
    run with batch world_size * batch_size up to the float order of DDP's gradient average, and
    a checkpoint may be resumed on another number of ranks with the same global batch (the
    config records the global batch, not world_size). Each rank draws world_size times the random
    numbers of its own slice (on the CPU generator). The recorded losses are each rank's own
    slice means (rank 0's are checkpointed).

    callback(step, model, ema) runs on every rank after each step that is a multiple of
    `callback_every` (after that step's checkpoint; e.g. an evaluation, which may be collective);
    the model is put back in train mode after it.

    Under torch.distributed a SIGTERM / SIGINT is acted on within a step on the CPU, three on CUDA: the
    ranks vote on it every step (`_StopVote`, an all_reduce read without a host sync of the step under
    way), so they all save and stop after the same step.
    """
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    log_every = positive_int("log_every", log_every)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if ema_decay is not None:
        ema_decay = probability("ema_decay", ema_decay)
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
    net = unwrap(model)
    members = getattr(net, "members", None)
    if members is not None and grad_clip is not None:
        raise ValueError("grad_clip would couple the members of an ensemble; use grad_clip=None")
    size = _data_length(data)
    if draws not in DRAWS:
        raise ValueError(f"unknown draws {draws!r}; valid choices: {', '.join(map(repr, DRAWS))}")
    if draws == "global" and members is not None:
        raise ValueError("draws='global' splits one model's batch over the ranks; an ensemble needs draws='rank'")
    if callback is not None:
        callback_every = positive_int("callback_every", callback_every)

    rank, world = _rank(), _world_size()
    shared = draws == "global"
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(seed if shared else rank_seed(seed, rank))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    ema = copy.deepcopy(net).requires_grad_(False).eval() if ema_decay is not None else None
    index_shape = (batch_size,) if members is None else (members, batch_size)
    config = {"batch_size": batch_size, "lr": float(lr), "ema_decay": ema_decay, "seed": seed,
              "members": members, "data_size": size, "world_size": world,
              "data": data_fingerprint(data), "loss": loss_identity(loss_fn)}
    if run_config is not None:
        config["run"] = run_config
        config["run_hash"] = config_hash(run_config)
    step_loss = loss_fn
    if shared:  # the config of a global-batch run does not depend on the number of ranks
        del config["world_size"]
        config.update(batch_size=world * batch_size, draws="global")
        if world > 1:
            from diffusion_study.training.distributed import shard_draws

            def step_loss(model_, batch_, generator_, _loss=loss_fn):
                with shard_draws(rank, world):
                    return _loss(model_, batch_, generator_)
    logged: list[Tensor] = []  # host copies, [k] or [k, G]
    pending: list[Tensor] = []  # device losses [] or [G] not yet copied
    start = 0

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        state = load_checkpoint(path)
        if state["config"] != config:
            raise ValueError(f"checkpoint {path} belongs to another run; (checkpoint, this run) differ in "
                             f"{config_differences(state['config'], config)}; use another checkpoint_path "
                             "or the run's own settings")
        if not isinstance(state["step"], int) or not 0 <= state["step"] <= steps:
            raise ValueError(f"checkpoint {path} records step {state['step']!r}, not in [0, steps={steps}]")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(_own_state(state["generator"], rank))
        logged = [state["losses"]]
        start = state["step"]

    bar = tqdm(total=steps, initial=start, disable=not progress or rank != 0, desc="train",
               dynamic_ncols=True)

    good = {"step": start if path is not None and path.exists() else None}  # the last checkpoint written

    def check(step: int, losses: Tensor, batch=None) -> None:
        """Stop at the first non-finite loss among `losses` [k] or [k, G] of steps step+1-k..step."""
        finite = torch.isfinite(losses.reshape(len(losses), -1)).all(1)
        if not finite.all():
            bad = int((~finite).nonzero()[0])
            raise FloatingPointError(_non_finite_message(step + 1 - len(losses) + bad, losses[bad], batch,
                                                         path, good["step"]))

    def log(step: int) -> None:
        """Copy the pending losses to the host (the one sync), checked."""
        if pending:
            losses = torch.stack(pending).cpu()
            check(step, losses)
            logged.append(losses)
            pending.clear()
            bar.set_postfix(loss=f"{logged[-1].mean().item():.4g}", refresh=False)

    def save(step: int) -> None:
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise FloatingPointError(f"non-finite parameters after step {step} (a non-finite gradient); "
                                     f"not checkpointed; last good checkpoint: {path} at step {good['step']}")
        # collective: before the rank test (a global-batch run's ranks share one generator state)
        generators = generator.get_state() if shared else _generator_states(generator, world)
        good["step"] = step
        if rank == 0:
            save_checkpoint(path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                   "ema": ema.state_dict() if ema is not None else None,
                                   "step": step, "generator": generators,
                                   "losses": _losses(logged, members), "config": config})

    # On the CPU a finiteness check costs nothing: every step. On a GPU at log points (a sync).
    on_cpu = device.type == "cpu"
    began = time.perf_counter()
    model.train()
    draw_shape = (world * batch_size,) if shared else index_shape
    mine = slice(rank * batch_size, (rank + 1) * batch_size)
    vote = _StopVote(device) if world > 1 else None
    with _deferred_stop() as stop:
        try:
            for step in range(start, steps):
                index = torch.randint(size, draw_shape, generator=generator)
                batch = _batch(data, index[mine] if shared else index, device)
                pending.append(train_step(model, optimizer, step_loss, batch, generator, grad_clip=grad_clip,
                                          expected_shape=index_shape))
                if ema is not None:
                    _ema_update(ema, net, ema_decay_at(step, ema_decay))
                bar.update(1)
                last = step == steps - 1
                at_log = (step + 1) % log_every == 0 or last or (path is not None and (step + 1) % checkpoint_every == 0)
                signum = vote(stop.signum) if vote is not None else stop.signum
                checkpoint = path is not None and ((step + 1) % checkpoint_every == 0 or last or signum)
                if on_cpu:  # free here: name the exact step and its batch
                    check(step, pending[-1][None], batch)
                if at_log or checkpoint or signum:
                    log(step)
                if checkpoint:
                    save(step + 1)
                if callback is not None and (step + 1) % callback_every == 0 and not signum:
                    callback(step + 1, net, ema)
                    model.train()
                if signum and vote is not None:
                    vote.drain()  # the ranks' outstanding votes, before the save's collective
                if signum:
                    stop.signum = signum
                    where = f"checkpoint {path}" if path is not None else "no checkpoint_path, nothing saved"
                    message = f"stopped at step {step + 1}; {where}; rerun the same command to resume"
                    print(message, file=sys.stderr)
                    raise KeyboardInterrupt(message) if stop.signum == signal.SIGINT else SystemExit(128 + stop.signum)
            if vote is not None:
                vote.drain()
        finally:
            bar.close()
    return TrainResult(net, ema, _losses(logged, members), steps, start,
                       time.perf_counter() - began)


class _StopVote:
    """The ranks agree, every step, on the largest signal any of them has received, so they all save and stop
    after the same step, well within torchrun's 30 s between SIGTERM and SIGKILL.

    Each call starts an all_reduce(MAX) of this rank's signal without waiting (async_op) and returns the
    vote started `lag` steps earlier (0 before that). On CUDA the vote is copied to pinned host memory behind
    an event, so reading it waits only for that earlier step's work: no sync of the current step (lag 2).
    On the CPU (gloo) the reduce is done at once (lag 0): a stop costs at most the step under way."""

    def __init__(self, device: torch.device):
        self.device, self.pending = device, collections.deque()
        self.lag = 2 if device.type == "cuda" else 0
        if device.type == "cuda":
            self.host = [torch.zeros(1, dtype=torch.int64, pin_memory=True) for _ in range(self.lag + 1)]
        self.calls = 0

    def __call__(self, signum: int) -> int:
        flag = torch.full((1,), signum, dtype=torch.int64, device=self.device)  # no host-to-device copy
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)
        if self.device.type == "cuda":
            work.wait()  # orders this stream after the reduce; the host does not wait
            host = self.host[self.calls % len(self.host)]
            host.copy_(flag, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self.pending.append((done.synchronize, host))
        else:
            self.pending.append((work.wait, flag))
        self.calls += 1
        if len(self.pending) <= self.lag:
            return 0
        wait, value = self.pending.popleft()
        wait()
        return int(value[0])

    def drain(self) -> None:
        """Wait for the votes still under way (every rank has the same ones)."""
        while self.pending:
            self.pending.popleft()[0]()


def _non_finite_message(step: int, loss: Tensor, batch, path, good_step) -> str:
    """What a user needs when training diverges: the step, the loss, the batch, the last good checkpoint."""
    parts = [f"non-finite loss {loss.tolist()} at step {step}; training stopped"]
    if batch is not None:
        x = (batch[0] if isinstance(batch, tuple) else batch).detach().double()
        finite = torch.isfinite(x)
        stats = (f"batch {tuple(x.shape)}: {int((~finite).sum())} non-finite values"
                 + (f", finite values in [{x[finite].min().item():.4g}, {x[finite].max().item():.4g}], "
                    f"mean {x[finite].mean().item():.4g}" if finite.any() else ""))
        parts.append(stats)
    if path is not None:
        parts.append(f"last good checkpoint: {path} at step {good_step}" if good_step is not None
                     else "no checkpoint written yet")
    parts.append("check the data, lower lr, or clip gradients (grad_clip)")
    return "; ".join(parts)


class _deferred_stop:
    """Within the block, SIGTERM and SIGINT only set `signum`; the loop saves and then stops.

    Outside the main thread (where handlers cannot be installed) signals keep their defaults.
    """

    signals = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self.signum, self.previous = 0, {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
