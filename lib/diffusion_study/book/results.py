"""Results as JSON files with provenance, and the claim verdicts the book's ledger reads.

A chapter ends with one `write_result(out_dir, name, params, metrics, claims)`; the file
`<out_dir>/<name>.json` holds

    {"name", "params", "metrics", "claims", "provenance": {git, versions, device, time}}

`claims` maps a claim id from the ledger (e.g. "L1") to a verdict record:

    {"verdict": one of eval.verdicts.CLASSES:
                "supported" | "contradicted" | "inconclusive" | "mixed"     (empirical: could have come out
                | "not testable here" | "inadequate model"                   either way; eval.verdicts' rules)
                | "verified identity" | "identity fails" | "identity inconclusive"
                                                    (a theorem checked against the library's own formulas:
                                                     it can find a bug, not a wrong paper)
                or "not supported" (the old rule, which merged "contradicted" and "inconclusive"; kept so
                that results written before eval.verdicts still read),
     "evidence": "fig-...",        # a figure/table label in the book (or a section label)
     "effect": "...",              # the measured effect with its interval, in words
     "conditions": "...",          # profile, seeds, data
     # optional: the setting of this result ("2D", "digits"), its interval [low, high], its minimum
     # detectable effect at 80% power ("mde", a number or words), the margin it was judged by, and
     # "parts": one record per part and setting, each {"setting", "verdict", "effect"} plus the same
     # optional "interval", "mde", "margin" (eval.verdicts.part makes one); the ledger shows one row each.
     "setting": "...", "interval": [low, high], "mde": ..., "margin": "...", "parts": [...]}
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffusion_study.base.io import write_text_atomic
from diffusion_study.base.numerics import numerics_record
from diffusion_study.eval import verdicts

LEGACY_VERDICTS = ("not supported",)  # the old rule: "contradicted" or "inconclusive", not told apart
EMPIRICAL_VERDICTS = verdicts.EMPIRICAL + LEGACY_VERDICTS
IDENTITY_VERDICTS = verdicts.IDENTITY
VERDICTS = EMPIRICAL_VERDICTS + IDENTITY_VERDICTS
CLAIM_FIELDS = ("verdict", "evidence", "effect", "conditions", "setting", "interval", "mde", "margin", "parts")
PART_FIELDS = ("setting", "verdict", "effect", "interval", "mde", "margin")
_CLAIM_ID = re.compile(r"^[A-Z][0-9]+$")
_REPO = Path(__file__).resolve().parents[3]


def check_claims(claims: dict[str, dict] | None) -> dict[str, dict]:
    """Return `claims` with every record validated; raise ValueError on a malformed one."""
    claims = dict(claims or {})
    for cid, record in claims.items():
        if not _CLAIM_ID.match(str(cid)):
            raise ValueError(f"claim id must look like 'L1' or 'N4', got {cid!r}")
        if not isinstance(record, dict):
            raise ValueError(f"claim {cid}: record must be a dict, got {type(record).__name__}")
        unknown = set(record) - set(CLAIM_FIELDS)
        if unknown:
            raise ValueError(f"claim {cid}: unknown fields {sorted(unknown)}; valid: {CLAIM_FIELDS}")
        if record.get("verdict") not in VERDICTS:
            raise ValueError(
                f"claim {cid}: verdict must be one of {VERDICTS}, got {record.get('verdict')!r}"
            )
        if not record.get("evidence"):
            raise ValueError(f"claim {cid}: 'evidence' (a figure or table label) is required")
        _check_interval(f"claim {cid}", record.get("interval"))
        for k, part in enumerate(record.get("parts") or []):
            where = f"claim {cid}, part {k}"
            if not isinstance(part, dict) or set(part) - set(PART_FIELDS):
                raise ValueError(f"{where}: a part is a dict with fields from {PART_FIELDS}")
            if not part.get("setting"):
                raise ValueError(f"{where}: 'setting' (where the part was measured) is required")
            if part.get("verdict") not in VERDICTS:
                raise ValueError(f"{where}: verdict must be one of {VERDICTS}, got {part.get('verdict')!r}")
            _check_interval(where, part.get("interval"))
    return claims


def _check_interval(where: str, interval) -> None:
    if interval is None:
        return
    if not (isinstance(interval, (list, tuple)) and len(interval) == 2):
        raise ValueError(f"{where}: 'interval' must be [low, high], got {interval!r}")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version() -> str | None:
    """The installed diffusion_study version (pyproject.toml), or None when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffusion_study")
    except PackageNotFoundError:
        return None


DIRTY_FILES_KEPT = 20  # provenance keeps the names of at most this many changed files


def code_state(prov: dict[str, Any], markdown: bool = True, full: bool = False) -> str:
    """The one description of the code a result was made with, for every page that states it
    (the status page, the cite page, the figures' BibTeX): "`448b647`", "`448b647` with
    uncommitted changes to 3 files" (20 or more: "to 20+ files"), or "no git commit recorded".
    `markdown=False`: the hash without backquotes (BibTeX); `full`: all 40 digits of it."""
    commit = prov.get("git_commit")
    if not commit:
        return "no git commit recorded"
    shown = commit if full else commit[:7]
    short = f"`{shown}`" if markdown else shown
    if not prov.get("git_dirty"):
        return short
    n = len(prov.get("git_dirty_files") or [])
    if not n:
        return f"{short} with uncommitted changes"
    count = f"{n}+" if n >= DIRTY_FILES_KEPT else str(n)
    return f"{short} with uncommitted changes to {count} file{'s' if count != '1' else ''}"


CODE_STATE_ENV = "DIFFUSION_STUDY_CODE_STATE"  # set by a book build: the tree's state when the build began


def git_code_state() -> dict[str, Any]:
    """{"commit", "dirty_files"} of the working tree now: the commit and the files that differ from it."""
    commit = _git("rev-parse", "HEAD")
    changed = _git("diff", "--name-only", "HEAD")  # tracked files that differ from the commit
    untracked = _git("ls-files", "--others", "--exclude-standard")  # new files git does not ignore
    return {"commit": commit,
            "dirty_files": sorted(set((changed or "").splitlines() + (untracked or "").splitlines()) - {""})}


def provenance(wall_time_s: float | None = None) -> dict[str, Any]:
    """Where and with what a result was made: git commit and dirty files, versions, device, time.

    Inside a book build the commit and dirty files are those of the tree when the build began
    (`CODE_STATE_ENV`, set by `book.notebook execute`): the chapters executed before this one rewrite
    their notebooks and results while it runs, which are the build's outputs, not its code."""
    import json

    import numpy
    import torch

    state = json.loads(os.environ[CODE_STATE_ENV]) if os.environ.get(CODE_STATE_ENV) else git_code_state()
    commit, dirty_files = state["commit"], state["dirty_files"]
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    return {
        "version": _version(),
        "git_commit": commit,
        "git_dirty": bool(dirty_files) if commit else None,
        "git_dirty_files": dirty_files[:DIRTY_FILES_KEPT],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": device,
        "numerics": numerics_record(),
        "hostname": socket.gethostname(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
    }


def _plain(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths and tuples to JSON-ready values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays/scalars, torch tensors
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def write_page(text: str, out: Path | None) -> None:
    """A generated page: to `out` (its folder created) or, without one, to standard output."""
    if out is None:
        import sys

        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write `payload` as JSON to `path` via a temporary file and os.replace (never half-written)."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_result(
    out_dir: str | Path,
    name: str,
    params: dict,
    metrics: dict,
    claims: dict[str, dict] | None = None,
    *,
    wall_time_s: float | None = None,
) -> Path:
    """Write `<out_dir>/<name>.json` with params, metrics, claim verdicts and provenance."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ValueError(f"result name must be a plain file stem, got {name!r}")
    payload = {
        "name": name,
        "params": _plain(params),
        "metrics": _plain(metrics),
        "claims": _plain(check_claims(claims)),
        "provenance": provenance(wall_time_s),
    }
    return write_json_atomic(Path(out_dir) / f"{name}.json", payload)


def read_results(directory: str | Path) -> list[dict]:
    """Read every result JSON under `directory` (recursively), sorted by path.

    Each record gets a "path" key (relative to `directory`). A missing directory gives [].
    """
    directory = Path(directory)
    records = []
    for path in sorted(directory.rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or "provenance" not in record:
            continue  # not a result file
        record["path"] = path.relative_to(directory).as_posix()
        records.append(record)
    return records
