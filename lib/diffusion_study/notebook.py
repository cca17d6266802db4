"""Running the book's chapters: the first call of every notebook, and the executor behind `make`.

In a chapter (right after its `parameters` cell):

    cfg = setup_notebook(profile, seed, out_dir, sizes=SIZES, T=T)

From the shell (what `make book` and `make run` call):

    python -m diffusion_study.notebook execute notebooks/*.ipynb            # in place, default profile
    python -m diffusion_study.notebook execute --dest runs/smoke/notebooks -p profile smoke notebooks/*.ipynb
    python -m diffusion_study.notebook strip notebooks/*.ipynb               # drop per-run metadata

In the book's Sphinx configuration (`extensions`), this module keeps glued text as it was
glued: myst-nb reads a glued value's text back with `ast.literal_eval`, so the text "0.550"
would be pasted as 0.55 and "+1.15" as 1.15; see `paste_plain_text`.
"""

from __future__ import annotations

import argparse
import functools
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

    out_path = _writable_out_dir(Path(out_dir))
    shown = {"profile": profile, "seed": seed, "device": device, "threads": threads,
             "out_dir": str(out_path) if out_path != Path(out_dir).resolve() else str(out_dir), **resolved}
    print("\n".join(f"{k:>10} = {v!r}" for k, v in shown.items()))
    _glue_config(shown)
    return SimpleNamespace(**{**shown, "out_dir": out_path})


BOOK_BUILD_ENV = "DIFFUSION_STUDY_BOOK_BUILD"  # set by `execute` for the in-place book build only


def _writable_out_dir(out_dir: Path) -> Path:
    """`out_dir`, created; but a run that is not the book build never writes the committed results/:
    it is sent to runs/<name>-<UTC time>-<pid>/ instead (and says so)."""
    from .results import _REPO

    committed = (_REPO / "results").resolve()
    target = out_dir.resolve()
    if os.environ.get(BOOK_BUILD_ENV) != "1" and (target == committed or committed in target.parents):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = _REPO / "runs" / f"{out_dir.name}-{stamp}-{os.getpid()}"
        print(f"note: only the book build (make book) writes results/; this run writes to {target}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"out_dir {str(out_dir)!r} is not writable ({exc.strerror}); pass -p out_dir <folder>") from None
    return target


class _Plain(str):
    """A string glued without quotes: its repr, which myst-nb stores as text/plain, is the text.

    myst-nb reads text/plain back through `ast.literal_eval`, which would turn "0.550" into
    0.55; the book's Sphinx extension (`setup` below) pastes such text unchanged.
    """

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


# ----------------------------------------------------------------------------- the book (Sphinx)

def paste_plain_text(text: str, fmt_spec: str, _format=None) -> str:
    """The text {glue:text}`name` pastes for a glued text/plain `text` (myst-nb's rule, amended).

    myst-nb evaluates `text` with `ast.literal_eval` and pastes `str()` of the result, so a
    glued string literal loses its quotes, but a number glued as formatted text loses its
    format: "0.550" becomes 0.55, "+1.15" becomes 1.15, "1.0, 2.0" becomes a tuple in
    parentheses. Without a format spec (or with "s"), this pastes a string literal's value
    and any other text exactly as it was glued; a format spec with a numeric type ("{glue:text}`x:.2f`")
    is myst-nb's, unchanged.
    """
    if fmt_spec in ("", "s"):
        from ast import literal_eval

        try:
            value = literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            return text
        return value if isinstance(value, str) else text
    if _format is None:
        from myst_nb.core.variables import format_plain_text as _format
    return _format(text, fmt_spec)


_GLUE_MODULES = ("myst_nb.ext.glue.roles", "myst_nb.ext.glue.crossref")


def setup(app) -> dict[str, Any]:
    """Sphinx extension: glued text keeps its digits (`paste_plain_text`) in every glue role.

    myst-nb's roles call `format_plain_text` by the name they imported; each is replaced.
    A myst-nb without those names fails the build with a warning (the book builds with -W).
    """
    import importlib

    from sphinx.util import logging

    from myst_nb.core import variables

    original = getattr(variables, "format_plain_text", None)
    patched = []
    for name in _GLUE_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "format_plain_text", None) is not None and original is not None:
            module.format_plain_text = functools.partial(paste_plain_text, _format=original)
            patched.append(name)
    if len(patched) != len(_GLUE_MODULES):
        logging.getLogger(__name__).warning(
            "diffusion_study.notebook: myst-nb's glue roles no longer call format_plain_text "
            f"(patched {patched} of {list(_GLUE_MODULES)}); glued numbers may lose their format"
        )
    return {"parallel_read_safe": True, "parallel_write_safe": True}


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
    failed_dir: str | Path | None = None,
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
    # Only the in-place default-profile build may write the committed results/ (setup_notebook checks).
    book_build = dest is None and not parameters
    previous = os.environ.get(BOOK_BUILD_ENV)
    os.environ[BOOK_BUILD_ENV] = "1" if book_build else "0"
    try:
        papermill.execute_notebook(
            str(src), str(running), parameters=parameters or {},
            cwd=str(target.parent), progress_bar=False,
        )
    except PapermillExecutionError as exc:
        from .results import _REPO

        failed = Path(failed_dir if failed_dir is not None else _REPO / "runs" / "failed") / src.name
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
    finally:
        if previous is None:
            os.environ.pop(BOOK_BUILD_ENV, None)
        else:
            os.environ[BOOK_BUILD_ENV] = previous
    os.replace(running, target)
    strip_volatile_metadata(target)
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return target


def chapter_parameters(path: str | Path) -> tuple[list[tuple[str, Any, str]], dict[str, dict[str, Any]]]:
    """A chapter's parameters [(name, default, comment)] from its `parameters` cell, and its
    per-profile sizes {profile: {name: value}} from the `SIZES = {...}` literal of its setup cell."""
    import ast

    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = []
    for line in code[0].source.splitlines():
        match = re.match(r"\s*(\w+)\s*=\s*([^#]+?)\s*(?:#\s*(.*))?$", line)
        if match:
            params.append((match[1], ast.literal_eval(match[2]), match[3] or ""))
    known: dict[str, Any] = {}  # top-level constants of the setup cell (literals, dicts built from them)
    for cell in code[1:3]:
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:  # the chapter's own constants, evaluated without builtins
                    value = eval(compile(ast.Expression(node.value), "<sizes>", "eval"), {"__builtins__": {}}, known)
                except Exception:
                    continue
                known[node.targets[0].id] = value
    return params, known.get("SIZES", {})


def describe(path: str | Path) -> str:
    """The text `make help` shows for a chapter: each parameter, its default and per-profile values."""
    params, sizes = chapter_parameters(path)
    lines = [f"{Path(path).stem}: make run NB={Path(path).stem} PARAMS=\"-p NAME VALUE ...\" [PROFILE=smoke|cpu|gpu]"]
    for name, default, comment in params:
        by_profile = ", ".join(f"{p} {sizes[p][name]!r}" for p in PROFILES if name in sizes.get(p, {}))
        shown = f"default {default!r}" if default is not None or not by_profile else by_profile
        lines.append(f"  {name:<12} {shown}" + (f"  # {comment}" if comment else ""))
    return "\n".join(lines)


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
    de = sub.add_parser("describe", help="each chapter's parameters with their per-profile values")
    de.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "describe":
        for path in args.notebooks:
            print(describe(path))
        return 0
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
