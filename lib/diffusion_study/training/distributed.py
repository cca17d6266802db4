"""Data-parallel helpers: process-group setup under torchrun, a global batch split over ranks,
and a likelihood evaluation sharded over ranks.

- `setup()` reads torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE) and joins the process
  group (NCCL on CUDA, gloo on the CPU); without it, one process.
- `shard_draws(rank, world)`: within the block every random draw of `diffusion_study.base.rng` whose
  leading dim is the local batch B is drawn for the global batch world * B from the same
  generator and sliced to this rank's rows, so a loss computed on a rank's slice sees exactly the
  noise and times that a one-process run on the global batch gives those rows
  (`train.train(..., draws="global")` uses it).
- `sharded_bound`: bits/dim of a test set, its batches dealt round-robin over the ranks, each
  batch with its own generator seeded from (seed, batch index), so the per-example values do not
  depend on the number of ranks; sums, squares and counts are all_reduced (mean and standard
  error). It runs the unwrapped module, never a DistributedDataParallel wrapper, and only
  fixed-step estimators (the discrete bound on a grid, the continuous bound by Monte Carlo).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from diffusion_study.base import rng
from diffusion_study.base.args import positive_int
from diffusion_study.core.objectives import VLBTerms, nats_to_bits_per_dim


@dataclass(frozen=True)
class Context:
    """Where this process runs: rank of world, the device it drives, and whether it joined a group."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    initialised: bool

    @property
    def main(self) -> bool:
        """True on rank 0 (the one that writes files and prints)."""
        return self.rank == 0


def setup(device: str | None = None, timeout_s: float = 1800.0) -> Context:
    """Join torchrun's process group if WORLD_SIZE > 1 is set, else run as one process.

    device: 'cpu', 'cuda' or None (CUDA when available). Under torchrun with CUDA each rank
    drives cuda:LOCAL_RANK (set before init_process_group) and uses NCCL; on the CPU gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {kind!r}; valid choices: 'cpu', 'cuda'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch.cuda.is_available() is False; use --device cpu")
    dev = torch.device("cuda", local) if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(dev)
    if world == 1:
        return Context(0, 1, 0, dev, False)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": dev} if kind == "cuda" else {}))
    return Context(dist.get_rank(), dist.get_world_size(), local, dev, True)


def teardown(ctx: Context) -> None:
    """Leave the process group joined by `setup` (nothing for one process)."""
    if ctx.initialised and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    """Wait for every rank (nothing for one process)."""
    if ctx.world > 1:
        dist.barrier()


# --------------------------------------------------------------------------- a global batch


@contextlib.contextmanager
def shard_draws(rank: int, world: int):
    """Within the block, rng.randn / rand / randint of shape [B, ...] draw [world * B, ...] from
    the generator and return rows rank * B .. (rank + 1) * B - 1 (0-dim draws are left alone).

    Every rank must make the same sequence of draws (the same loss on equal local batch sizes).
    The draw is sliced on the generator's device before it moves to the data's. Not thread-safe:
    it swaps the module's functions for the duration of the block.
    """
    if world == 1:
        yield
        return
    saved = rng.randn, rng.rand, rng.randint

    def widen(shape):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape:
            return shape, ...
        n = shape[0]
        return (world * n,) + shape[1:], slice(rank * n, (rank + 1) * n)

    def randn(shape, like: Tensor, generator=None) -> Tensor:
        full, mine = widen(shape)
        out = torch.randn(full, generator=generator, dtype=like.dtype, device=rng._device(generator) or like.device)
        return out[mine].to(like.device)

    def rand(shape, like: Tensor, generator=None, dtype=torch.float64) -> Tensor:
        full, mine = widen(shape)
        out = torch.rand(full, generator=generator, dtype=dtype, device=rng._device(generator) or like.device)
        return out[mine].to(like.device)

    def randint(low: int, high: int, shape, like: Tensor, generator=None) -> Tensor:
        full, mine = widen(shape)
        out = torch.randint(low, high, full, generator=generator, device=rng._device(generator) or like.device)
        return out[mine].to(like.device)

    rng.randn, rng.rand, rng.randint = randn, rand, randint
    try:
        yield
    finally:
        rng.randn, rng.rand, rng.randint = saved


# --------------------------------------------------------------------------- sharded evaluation


@dataclass(frozen=True)
class ShardedBits:
    """A bound in bits/dim over n examples (all ranks): mean, standard error over examples, the
    mean of each term (prior, diffusion, decoder) and this rank's per-example totals [n_rank]."""

    mean: float
    stderr: float
    n: int
    terms: dict[str, float]
    local: Tensor

    def as_dict(self) -> dict:
        return {"bits_per_dim": self.mean, "stderr": self.stderr, "n": self.n, "terms": dict(self.terms)}

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.terms.items())
        return f"{self.mean:.4f} +- {self.stderr:.4f} bits/dim (n={self.n}; {parts})"


def batch_seed(seed: int, index: int) -> int:
    """Seed of evaluation batch `index`'s generator: a 63-bit hash of (seed, index)."""
    return int.from_bytes(hashlib.sha256(f"eval/{seed}/{index}".encode()).digest()[:8], "little") >> 1


@torch.no_grad()
def sharded_bound(model: nn.Module, data: Tensor, bound: Callable[[nn.Module, Tensor, torch.Generator], VLBTerms],
                  *, batch_size: int, seed: int = 0, max_batches: int | None = None,
                  device: torch.device | None = None, decoder=None) -> ShardedBits:
    """The bound `bound(model, x, generator) -> VLBTerms` (each [b] nats) over data [N, C, H, W], in bits/dim.

    The data are cut into batches of `batch_size` (the first `max_batches` of them if given);
    batch j goes to rank j mod world and uses a CPU generator seeded `batch_seed(seed, j)`, so each
    example's value is the same on any number of ranks. Sums of the per-example totals, their
    squares, the terms and the count are all_reduced in float64 (one collective). `model` must be
    the plain module (a DistributedDataParallel wrapper is refused: its forward would try to
    synchronise buffers and expects a backward). `decoder.check` (grid, range) runs on each shard.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError("evaluate the unwrapped module (train.unwrap(model)), not a DistributedDataParallel wrapper")
    batch_size = positive_int("batch_size", batch_size)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    device = device or next(model.parameters()).device
    batches = list(range(math.ceil(len(data) / batch_size)))
    if max_batches is not None:
        batches = batches[: positive_int("max_batches", max_batches)]
    dims = math.prod(data.shape[1:])
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # n, sum, sum of squares, three terms
    local = []
    was_training = model.training
    model.eval()
    try:
        for j in batches[rank::world]:
            x = data[j * batch_size:(j + 1) * batch_size].to(device)
            if decoder is not None:
                decoder.check(x)
            terms = bound(model, x, torch.Generator().manual_seed(batch_seed(seed, j)))
            bits = torch.stack([nats_to_bits_per_dim(v.double(), dims) for v in terms], -1)  # [b, 3]
            total = bits.sum(-1)
            sums += torch.cat([torch.tensor([len(x)], dtype=torch.float64, device=device),
                               total.sum()[None], (total ** 2).sum()[None], bits.sum(0)])
            local.append(total.cpu())
    finally:
        model.train(was_training)
    if world > 1:
        dist.all_reduce(sums)
    n, s, s2, *term_sums = sums.cpu().tolist()
    if n == 0:
        raise ValueError("no examples to evaluate (empty data or max_batches)")
    mean = s / n
    var = max(s2 - n * mean**2, 0.0) / (n - 1) if n > 1 else math.nan
    terms = {k: v / n for k, v in zip(VLBTerms._fields, term_sums)}
    return ShardedBits(mean, math.sqrt(var / n) if n > 1 else math.nan, int(n), terms,
                       torch.cat(local) if local else torch.zeros(0, dtype=torch.float64))
