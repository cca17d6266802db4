"""Shared pieces of the benchmarks that `bench/run_all.py` (`make bench`) runs.

Timing discipline (every benchmark): the compared variants run in the same process, interleaved
(every variant once per round, the order rotated each round, after untimed warm-up rounds);
reported are medians and minima over rounds and, from the same run, ratios of medians and paired
ratios (the median over rounds of the per-round ratio: a burst of load from other jobs slows a
whole round, so it cancels in that round's ratio). On a shared machine the paired ratio is the
one to read.

Each benchmark writes bench/results/<name>.json through `write_result`: its parameters, every
timing, the peers' versions and the provenance of `diffusion_study.book.results.provenance` (git
commit and dirty files, versions, device, time), plus the machine's load average.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO / "lib") not in sys.path:
    sys.path.insert(0, str(REPO / "lib"))

from diffusion_study.book.results import provenance, write_json_atomic

PEERS = {"diffusers": "diffusers", "denoising_diffusion_pytorch": "denoising-diffusion-pytorch"}


def peer_versions() -> dict:
    """{distribution: version or 'unavailable: <reason>'} for the optional peers (`pip install -e .[bench]`)."""
    out = {}
    for module, dist in PEERS.items():
        try:
            from importlib.metadata import version

            importlib.import_module(module)
            out[dist] = version(dist)
        except Exception as exc:  # noqa: BLE001 - a peer may fail to import for any reason
            out[dist] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    return out


def have(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001
        return False


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


DEADLINE = None  # time.perf_counter() value after which `interleaved` stops adding rounds (set by `budget`)
MIN_ROUNDS = 3


def add_run_arguments(parser, *, repeats: int | None = None, threads: int | None = None) -> None:
    """The options every benchmark script shares: --budget (see `budget`) and --out (the result JSON);
    with `repeats` / `threads` also --repeats (timed rounds) and --threads (torch's intra-op threads)."""
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which timings stop adding rounds (at least 3 each; run_all sets it)")
    parser.add_argument("--out", default=None)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds")
    if threads is not None:
        parser.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")


def start_run(args) -> tuple[float, tuple]:
    """Apply --budget and --threads; return (perf_counter at the start, load average at the start)."""
    import torch

    budget(args.budget)
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
    return time.perf_counter(), os.getloadavg()


def diffusers_loop(scheduler, eps, x, T: int, generator=None, time_dtype=None):
    """diffusers' sampling loop around `eps(z, time)`: its timestep k is fed to the model as our time (k + 1) / T
    (in `time_dtype`, float64 by default); DDIM gets eta = 0, DDPM the generator."""
    import torch

    z = x
    for t in scheduler.timesteps:
        tau = torch.full(x.shape[:1], (int(t) + 1) / T, dtype=time_dtype or torch.float64)
        kwargs = {"eta": 0.0} if generator is None else {"generator": generator}
        z = scheduler.step(eps(z, tau), t, z, return_dict=False, **kwargs)[0]
    return z


def budget(seconds: float | None) -> None:
    """Let this process's interleaved timings stop early (after MIN_ROUNDS timed rounds) once `seconds`
    have passed: on a loaded machine a benchmark reports fewer rounds instead of overrunning."""
    global DEADLINE
    DEADLINE = None if seconds is None else time.perf_counter() + seconds


def interleaved(fns: dict, repeats: int, *, warmup: int = 1, per: float = 1.0, device="cpu") -> dict:
    """{name: [seconds / per, one per timed round]}: every fn once per round, the order rotated each
    round; `warmup` untimed rounds first. Past the `budget` deadline it stops after MIN_ROUNDS timed rounds."""
    names = list(fns)
    out = {name: [] for name in names}
    for r in range(warmup + repeats):
        if DEADLINE is not None and r >= warmup + min(MIN_ROUNDS, repeats) and time.perf_counter() > DEADLINE:
            print(f"  (time budget reached: {r - warmup} timed rounds of {repeats})", flush=True)
            break
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            if r >= warmup:
                out[name].append((time.perf_counter() - start) / per)
    return out


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "seconds": list(seconds)}


def paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[r] / b[r]."""
    return statistics.median(x / y for x, y in zip(a, b))


def ratios(raw: dict, pairs: list[tuple[str, str]]) -> dict:
    """{'a / b': {'paired', 'of_medians', 'of_minima'}} for each pair of variants timed in one run."""
    out = {}
    for a, b in pairs:
        if a in raw and b in raw:
            out[f"{a} / {b}"] = {"paired": paired(raw[a], raw[b]),
                                 "of_medians": statistics.median(raw[a]) / statistics.median(raw[b]),
                                 "of_minima": min(raw[a]) / min(raw[b])}
    return out


def write_result(name: str, payload: dict, started: float, out: str | Path | None = None,
                 load_start: tuple | None = None) -> Path:
    """bench/results/<name>.json (or `out`) with the payload, peers, command, load average and provenance."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    record = {"benchmark": name, "command": " ".join([Path(sys.executable).name] + sys.argv),
              **payload, "peers": peer_versions(),
              "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg(),
                                         "note": "other jobs share the machine's cores"},
              "provenance": provenance(time.perf_counter() - started)}
    write_json_atomic(path, _plain(record))
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return path


def _plain(value):
    """JSON-ready: floats that are not finite become strings, tuples lists, tensors numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
