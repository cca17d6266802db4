"""One training loop for every model in the book: Adam, EMA, progress bar, checkpoint + resume.

The run is a function of `seed`: batches are drawn from one torch.Generator, and the same
generator is handed to the loss for its noise and times, so an interrupted run resumed from
its checkpoint ends bitwise equal to an uninterrupted one (on the same machine).

    loss_fn(model, batch, generator) -> Tensor[B]        (one model)
    loss_fn(model, batch, generator) -> Tensor[G, B]     (an EnsembleMLP of G members)

e.g. `lambda net, x, g: simple_loss(net, process, x, generator=g)`.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from diffusion_study.validation import positive_int, probability

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]


@dataclass
class TrainResult:
    """model and ema (None when disabled) after training; losses: [steps] or [steps, G], the
    per-step mean loss over the batch (per member for an ensemble), including steps done
    before a resume; resumed_from: the step the run started at (0 for a fresh run)."""

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


def train(model: nn.Module, loss_fn: LossFn, data: Tensor, *, steps: int, batch_size: int,
          lr: float = 1e-3, ema_decay: float | None = 0.999, seed: int = 0,
          checkpoint_path: str | Path | None = None, checkpoint_every: int = 1000,
          progress: bool = True, grad_clip: float | None = None) -> TrainResult:
    """Train `model` in place with Adam for `steps` optimizer steps in total.

    data: [N, ...]; each step draws indices uniformly with replacement, [B] for one model or
    [G, B] when the model has a `members` attribute G (EnsembleMLP), so each member sees its
    own batches. The loss is averaged over B and summed over G: member g's gradient is the
    gradient of its own mean loss. `grad_clip` clips the global gradient norm (not allowed for
    an ensemble, where it would couple the members).

    With `checkpoint_path`, {model, ema, optimizer, step, generator state, losses, config} is
    written atomically every `checkpoint_every` steps and at the end; if the file exists the run
    resumes from it (its config must match). An interrupted run loses at most the steps since
    the last checkpoint; `steps` is the total, so rerunning the same call finishes the job.
    """
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if ema_decay is not None:
        ema_decay = probability("ema_decay", ema_decay)
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
    members = getattr(model, "members", None)
    if members is not None and grad_clip is not None:
        raise ValueError("grad_clip would couple the members of an ensemble; use grad_clip=None")
    if data.ndim < 1 or len(data) == 0:
        raise ValueError(f"data must be a non-empty tensor [N, ...], got shape {tuple(data.shape)}")

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    ema = copy.deepcopy(model).requires_grad_(False).eval() if ema_decay is not None else None
    index_shape = (batch_size,) if members is None else (members, batch_size)
    config = {"batch_size": batch_size, "lr": float(lr), "ema_decay": ema_decay, "seed": seed,
              "members": members, "data_size": len(data)}
    history: list[Tensor] = []
    start = 0

    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["config"] != config:
            raise ValueError(f"checkpoint {path} was written with {state['config']}, "
                             f"this run has {config}; use another checkpoint_path")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history = list(state["losses"].unbind(0))
        start = int(state["step"])
        if start > steps:
            raise ValueError(f"checkpoint {path} is at step {start}, beyond steps={steps}")

    def save(step: int) -> None:
        _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "ema": ema.state_dict() if ema is not None else None, "step": step,
                      "generator": generator.get_state(), "losses": _stack(history, members),
                      "config": config}, path)

    began = time.perf_counter()
    model.train()
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", dynamic_ncols=True)
    for step in range(start, steps):
        index = torch.randint(len(data), index_shape, generator=generator)
        loss = loss_fn(model, data[index].to(device), generator)  # [B] or [G, B]
        if loss.shape != index_shape:
            raise ValueError(f"loss_fn must return per-example losses {index_shape}, "
                             f"got {tuple(loss.shape)}")
        optimizer.zero_grad(set_to_none=True)
        loss.mean(-1).sum().backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if ema is not None:
            _ema_update(ema, model, ema_decay_at(step, ema_decay))
        history.append(loss.detach().mean(-1).cpu())  # [] or [G]
        bar.update(1)
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{history[-1].mean().item():.4g}", refresh=False)
        if path is not None and ((step + 1) % checkpoint_every == 0 or step == steps - 1):
            save(step + 1)
    bar.close()
    return TrainResult(model, ema, _stack(history, members), steps, start,
                       time.perf_counter() - began)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter; buffers copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _stack(history: list[Tensor], members: int | None) -> Tensor:
    if history:
        return torch.stack(history)
    return torch.zeros((0,) if members is None else (0, members))


def _atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temporary file in the same directory, then os.replace: a crash mid-write
    never leaves a truncated checkpoint at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
