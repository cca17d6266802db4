"""The evidence store: trained models kept in the repository with what made them (issue 20, item 1).

One stored model is two files under a store folder (e.g. artifacts/05_images/):

    <name>.pt    the model's state_dict (torch.save; loaded with weights_only=True)
    <name>.json  {"name", "config", "config_hash", "files": {"<name>.pt": sha256}, "provenance": {commit,
                  dirty, machine, python, torch, command, created, steps, wall_time_s}, "results": {...}}

`config_hash` is the sha256 of the config's canonical JSON (sorted keys), so a chapter can ask for the
stored model whose config matches its parameters (`find`) and train from scratch otherwise. Both files are
written atomically (`base.io.atomic_path`), the weights first, so a reader never sees a record whose weights
are missing or half written; `load` checks the weights' sha256 against the record before reading them.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from diffusion_study.base.io import atomic_path, write_text_atomic

_REPO = Path(__file__).resolve().parents[3]


def config_hash(config: dict[str, Any]) -> str:
    """sha256 (hex, first 16 digits) of the config's canonical JSON: sorted keys, no spaces, tuples as lists."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sha256_file(path: str | Path) -> str:
    """The file's sha256, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(*, steps: int, wall_time_s: float, command: str | None = None) -> dict[str, Any]:
    """Where and how a stored model was made: git commit (and whether tracked files differed from it), machine,
    versions, the command, the time, the optimizer steps and the training's wall time."""
    commit = _git("rev-parse", "HEAD")
    return {
        "commit": commit,
        "dirty": bool(_git("diff", "--name-only", "HEAD")) if commit else None,
        "machine": f"{socket.gethostname()} ({platform.machine()}, {platform.processor() or 'cpu'})",
        "python": platform.python_version(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": command if command is not None else " ".join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps": int(steps), "wall_time_s": float(wall_time_s),
    }


def save(store: str | Path, name: str, state_dict: dict, config: dict[str, Any], *, results: dict[str, Any],
         provenance: dict[str, Any]) -> dict[str, Any]:
    """Write <store>/<name>.pt (the state_dict) and <store>/<name>.json (the record); returns the record."""
    store = Path(store)
    weights = store / f"{name}.pt"
    with atomic_path(weights) as tmp:
        torch.save(state_dict, tmp)
    record = {"name": name, "config": config, "config_hash": config_hash(config),
              "files": {weights.name: sha256_file(weights)}, "provenance": provenance, "results": results}
    write_text_atomic(store / f"{name}.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def records(store: str | Path) -> list[dict[str, Any]]:
    """Every record in the store (sorted by name), each with its "path"; [] for a missing folder."""
    store = Path(store)
    if not store.is_dir():
        return []
    out = []
    for path in sorted(store.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        record["path"] = str(path)
        out.append(record)
    return out


def find(store: str | Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The record whose config hash matches `config`'s, or None."""
    wanted = config_hash(config)
    return next((r for r in records(store) if r.get("config_hash") == wanted), None)


def load(record: dict[str, Any]) -> dict:
    """The state_dict of a stored model, after checking its sha256 against the record (ValueError if it
    differs); read with torch.load(weights_only=True)."""
    folder = Path(record["path"]).parent
    (file, digest), = record["files"].items()
    path = folder / file
    actual = sha256_file(path)
    if actual != digest:
        raise ValueError(f"{path}: sha256 {actual} differs from the record's {digest}; the store is corrupt "
                         "or the weights were replaced without their record")
    return torch.load(path, map_location="cpu", weights_only=True)
