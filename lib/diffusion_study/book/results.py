"""Results as JSON files with provenance, and the claim verdicts the book's ledger reads.

A chapter ends with one `write_result(out_dir, name, params, metrics, claims)`; the file
`<out_dir>/<name>.json` holds

    {"name", "params", "metrics", "claims", "provenance": {git, versions, device, time}}

`claims` maps a claim id from the ledger (e.g. "L1") to a verdict record:

    {"verdict": "supported" | "not supported" | "mixed"            (empirical: could have come out either way)
              | "inadequate model"                                 (empirical, not judged: the models did not beat
                                                                      the chapter's baselines, `eval.adequacy`)
              | "verified identity" | "identity fails",             (a theorem checked against the library's
                                                                      own formulas: it can find a bug, not a wrong paper)
     "evidence": "fig-...",        # a figure/table label in the book (or a section label)
     "effect": "...",              # the measured effect with its interval, in words
     "conditions": "..."}          # profile, seeds, data
"""

from __future__ import annotations

import json
import math
import platform
import re
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffusion_study.base.io import write_text_atomic

EMPIRICAL_VERDICTS = ("supported", "not supported", "mixed", "inadequate model")  # the last: eval.adequacy.INADEQUATE
IDENTITY_VERDICTS = ("verified identity", "identity fails")
VERDICTS = EMPIRICAL_VERDICTS + IDENTITY_VERDICTS
CLAIM_FIELDS = ("verdict", "evidence", "effect", "conditions")
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
    return claims


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


def provenance(wall_time_s: float | None = None) -> dict[str, Any]:
    """Where and with what a result was made: git commit and dirty files, versions, device, time."""
    import numpy
    import torch

    commit = _git("rev-parse", "HEAD")
    changed = _git("diff", "--name-only", "HEAD")  # tracked files that differ from the commit
    untracked = _git("ls-files", "--others", "--exclude-standard")  # new files git does not ignore
    dirty_files = sorted(set((changed or "").splitlines() + (untracked or "").splitlines()) - {""})
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    return {
        "version": _version(),
        "git_commit": commit,
        "git_dirty": bool(dirty_files) if commit else None,
        "git_dirty_files": dirty_files[:20],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": device,
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
