"""Running the book's chapters: the first call of every notebook, and the executor behind `make`.

In a chapter (right after its `parameters` cell):

    cfg = setup_notebook(profile, seed, out_dir, sizes=SIZES, T=T)

From the shell (what `make book` and `make run` call):

    python -m diffusion_study.notebook execute notebooks/*.ipynb            # in place, default profile
    python -m diffusion_study.notebook execute --dest runs/smoke/notebooks -p profile smoke notebooks/*.ipynb
    python -m diffusion_study.notebook strip notebooks/*.ipynb               # drop per-run metadata
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .validation import choose, positive_int

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"


def setup_notebook(
    profile: str,
    seed: int,
    out_dir: str | Path,
    sizes: dict[str, dict[str, Any]],
    threads: int = 2,
    **overrides: Any,
) -> SimpleNamespace:
    """Validate a chapter's parameters, fix seeds and threads, set the figure style; print and return the config.

    `sizes[profile]` gives the profile's sizes; each keyword in `overrides` whose value is
    not None replaces the profile's value (so `papermill -p T 4000` wins over the profile).
    The returned namespace has profile, seed, out_dir (a Path, created), device, threads
    and every size as attributes. Inside a kernel each of these values is also glued as
    `cfg-<name>`, so captions can state them: {glue:text}`cfg-T`.
    """
    import numpy as np
    import torch

    from .plotting import set_style

    choose("profile", profile, PROFILES)
    missing = [p for p in PROFILES if p not in sizes]
    if missing:
        raise ValueError(f"sizes must give every profile; missing {missing}")
    unknown = set(overrides) - set(sizes[profile])
    if unknown:
        raise ValueError(f"overrides {sorted(unknown)} are not sizes of profile {profile!r}")
    seed = int(seed)
    threads = positive_int("threads", threads)
    resolved = dict(sizes[profile])
    resolved.update({k: v for k, v in overrides.items() if v is not None})

    if profile == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("profile 'gpu' needs a CUDA device; use profile 'cpu' on this machine")
    device = "cuda" if profile == "gpu" else "cpu"

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    set_style()

    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    shown = {"profile": profile, "seed": seed, "device": device, "threads": threads,
             "out_dir": str(out_dir), **resolved}
    print("\n".join(f"{k:>10} = {v!r}" for k, v in shown.items()))
    _glue_config(shown)
    return SimpleNamespace(**{**shown, "out_dir": out_path})


class _Plain(str):
    """A string glued without quotes (myst-nb pastes a value's repr)."""

    def __repr__(self) -> str:
        return str(self)


def glue_number(name: str, value: float, fmt: str) -> None:
    """Glue `value` formatted with `fmt` (e.g. ".3f") under `name` as plain text, so the prose shows
    exactly the digits printed beside it (a no-op outside a kernel)."""
    glue_text(name, format(value, fmt))


def glue_text(name: str, text: str) -> None:
    """Glue `text` under `name` so that {glue:text}`name` shows it without quotes (no-op outside a kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is not None:
        from myst_nb import glue

        glue(name, _Plain(text), display=False)


def _glue_config(values: dict[str, Any]) -> None:
    """Inside a kernel, glue every config value as `cfg-<name>` for captions and prose."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    from myst_nb import glue

    for key, value in values.items():
        glue(f"cfg-{key}", _Plain(value) if isinstance(value, str) else value, display=False)


# ----------------------------------------------------------------------------- metadata

_VOLATILE_NOTEBOOK_KEYS = ("papermill",)
_VOLATILE_CELL_KEYS = ("papermill", "execution")


def volatile_metadata(nb) -> list[str]:
    """List the per-run metadata entries (papermill timings, execution timestamps) in `nb`."""
    found = [f"metadata.{k}" for k in _VOLATILE_NOTEBOOK_KEYS if k in nb.metadata]
    for i, cell in enumerate(nb.cells):
        found += [f"cells[{i}].metadata.{k}" for k in _VOLATILE_CELL_KEYS if k in cell.metadata]
    return found


def strip_volatile_metadata(path: str | Path) -> list[str]:
    """Remove per-run metadata from the notebook at `path` in place; return what was removed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    removed = volatile_metadata(nb)
    if removed:
        for k in _VOLATILE_NOTEBOOK_KEYS:
            nb.metadata.pop(k, None)
        for cell in nb.cells:
            for k in _VOLATILE_CELL_KEYS:
                cell.metadata.pop(k, None)
        nbformat.write(nb, str(path))
    return removed


# ----------------------------------------------------------------------------- execution

class NotebookFailed(RuntimeError):
    """A chapter raised while executing; the message names the notebook and the cell."""


def execute(
    src: str | Path,
    dest: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    failed_dir: str | Path = "runs/failed",
) -> Path:
    """Execute notebook `src` with papermill, working directory = the output's folder.

    With `dest` None the notebook is executed in place: it runs into a temporary file beside
    `src` that replaces `src` only on success, so a failing run never overwrites a committed
    notebook (the failed copy is kept under `failed_dir`). The result is stripped of per-run
    metadata. Raises NotebookFailed naming the notebook and cell on an error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    src = Path(src)
    target = src if dest is None else Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    running = target.with_name(f".{target.stem}.running.ipynb")
    start = time.perf_counter()
    print(f"executing {src} -> {target} {parameters or ''}", flush=True)
    try:
        papermill.execute_notebook(
            str(src), str(running), parameters=parameters or {},
            cwd=str(target.parent), progress_bar=False,
        )
    except PapermillExecutionError as exc:
        failed = Path(failed_dir) / src.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(running, failed)
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(exc.traceback or []))
        raise NotebookFailed(
            f"{src}: cell {exc.cell_index} (execution count {exc.exec_count}) raised "
            f"{exc.ename}: {exc.evalue}\n{trace}\n"
            f"the executed notebook with its traceback: {failed}"
        ) from None
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    os.replace(running, target)
    strip_volatile_metadata(target)
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return target


def _parse_value(text: str) -> Any:
    """Parse a `-p NAME VALUE` value the way papermill's command line does (YAML scalars)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.notebook")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute notebooks (in place unless --dest)")
    ex.add_argument("notebooks", nargs="+", type=Path)
    ex.add_argument("--dest", type=Path, help="folder for the executed copies")
    ex.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                    metavar=("NAME", "VALUE"))
    st = sub.add_parser("strip", help="remove per-run metadata in place")
    st.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "strip":
        for path in args.notebooks:
            removed = strip_volatile_metadata(path)
            print(f"{path}: removed {len(removed)} volatile metadata entries")
        return 0
    params = {name: _parse_value(value) for name, value in args.parameter}
    for path in args.notebooks:
        dest = None if args.dest is None else args.dest / path.name
        try:
            execute(path, dest, params)
        except NotebookFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
