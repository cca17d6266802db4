"""Running the book's chapters: the first call of every notebook, and the executor behind `make`.

In a chapter (right after its `parameters` cell):

    cfg = setup_notebook(profile, seed, out_dir, sizes=SIZES, T=T)

From the shell (what `make book` and `make run` call):

    python -m diffusion_study.book.notebook execute notebooks/*.ipynb            # in place, default profile
    python -m diffusion_study.book.notebook execute --dest runs/smoke/notebooks -p profile smoke notebooks/*.ipynb
    python -m diffusion_study.book.notebook strip notebooks/*.ipynb               # drop per-run metadata
    python -m diffusion_study.book.notebook check -p T -5 notebooks/01_elbo.ipynb  # check parameters only (< 1 s)

`execute` and `check` refuse a bad parameter before any kernel starts, in one line naming it, its
value and the valid range (the chapter's parameters cell, SIZES and LIMITS say what is valid);
`setup_notebook` repeats the check inside the kernel for runs through plain papermill or JupyterLab.

In the book's Sphinx configuration (`extensions`), this module keeps glued text as it was
glued: myst-nb reads a glued value's text back with `ast.literal_eval`, so the text "0.550"
would be pasted as 0.55 and "+1.15" as 1.15; see `paste_plain_text`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from diffusion_study.base.args import positive_int, writable_folder
from diffusion_study.base.io import write_text_atomic
from diffusion_study.book.parameters import (
    PROFILES,
    ParameterError,
    check_chapter_parameters,
    parse_scalar,
)

DEFAULT_PROFILE = "cpu"


def setup_notebook(
    profile: str,
    seed: int,
    out_dir: str | Path,
    sizes: dict[str, dict[str, Any]],
    threads: int = 2,
    limits: dict[str, Any] | None = None,
    **overrides: Any,
) -> SimpleNamespace:
    """Validate a chapter's parameters, fix seeds and threads, set the figure style; print and return the config.

    `sizes[profile]` gives the profile's sizes; each keyword in `overrides` whose value is
    not None replaces the profile's value (so `papermill -p T 4000` wins over the profile).
    Every value is checked first (`validation.check_chapter_parameters`, with the chapter's
    `limits`, e.g. LIMITS = {"elbo_T": (2, None)}): a bad one raises ParameterError naming it,
    its value and the valid range, before any work; so does a parameter papermill injected that
    the chapter's parameters cell does not declare. A list given as text ("[0, 3]") is read as
    the list. The returned namespace has profile, seed, out_dir (a Path, created), device,
    threads and every size as attributes. Inside a kernel each of these values is also glued as
    `cfg-<name>`, so captions can state them: {glue:text}`cfg-T`.
    """
    __tracebackhide__ = True
    try:
        unknown = _unknown_injected_parameters()
        if unknown:
            name, value = next(iter(unknown.items()))
            declared = ", ".join(["profile", "seed", "out_dir", *overrides])
            raise ParameterError(f"parameter {name} = {value}: unknown; this chapter's parameters are {declared}", name)
        import torch  # after the cheap checks; needed for profile 'gpu'

        values = {"profile": profile, "seed": seed, "out_dir": out_dir, **overrides}
        declared = {"profile": "cpu", "seed": 0, "out_dir": "", **{k: None for k in overrides}}
        checked = check_chapter_parameters(values, declared, sizes, limits, cuda_available=torch.cuda.is_available)
        out_path = _writable_out_dir(Path(out_dir))
    except ParameterError as exc:
        raise ParameterError(f"{exc}; the notebook stopped in its setup cell, before any work", exc.name) from None
    missing = [p for p in PROFILES if p not in sizes]
    if missing:
        raise ValueError(f"sizes must give every profile; missing {missing}")
    unknown = set(overrides) - set(sizes[profile])
    if unknown:
        raise ValueError(f"overrides {sorted(unknown)} are not sizes of profile {profile!r}")
    seed = checked["seed"]
    threads = positive_int("threads", threads)
    resolved = dict(sizes[profile])
    resolved.update({k: checked[k] for k in overrides if checked[k] is not None})
    device = "cuda" if profile == "gpu" else "cpu"

    import numpy as np

    from diffusion_study.book.plotting import set_style

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    set_style()

    shown = {"profile": profile, "seed": seed, "device": device, "threads": threads,
             "out_dir": str(out_path) if out_path != Path(out_dir).resolve() else str(out_dir), **resolved}
    print("\n".join(f"{k:>10} = {v!r}" for k, v in shown.items()))
    _glue_config(shown)
    return SimpleNamespace(**{**shown, "out_dir": out_path})


def _assignments(source: str) -> dict[str, str]:
    """{name: value as written} of the top-level `name = value` lines of a cell ({} if it does not parse)."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return {}
    return {node.targets[0].id: ast.get_source_segment(source, node.value) or "?" for node in body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}


def unknown_injected_parameters(history: list[str]) -> dict[str, str]:
    """The parameters papermill injected that the chapter does not declare: {name: value as written}.

    `history` is the kernel's list of executed cell sources (IPython's `In`). papermill runs its
    injected cell ("# Parameters" first) right after the chapter's `parameters` cell; a name assigned
    there but not in the cell before is a parameter the chapter does not have (papermill only warns).
    """
    for i in range(1, len(history)):
        if history[i].startswith("# Parameters\n"):
            declared = _assignments(history[i - 1])
            if "profile" not in declared:  # the cell before is not a chapter's parameters cell
                return {}
            return {k: v for k, v in _assignments(history[i]).items() if k not in declared}
    return {}


def _unknown_injected_parameters() -> dict[str, str]:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    if shell is None:
        return {}
    history = shell.user_ns.get("In")
    return unknown_injected_parameters(list(history)) if isinstance(history, list) else {}


BOOK_BUILD_ENV = "DIFFUSION_STUDY_BOOK_BUILD"  # set by `execute` for the in-place book build only


def _writable_out_dir(out_dir: Path) -> Path:
    """`out_dir`, created; but a run that is not the book build never writes the committed results/:
    it is sent to runs/<name>-<UTC time>-<pid>/ instead (and says so)."""
    from diffusion_study.book.results import _REPO

    committed = (_REPO / "results").resolve()
    target = out_dir.resolve()
    if os.environ.get(BOOK_BUILD_ENV) != "1" and (target == committed or committed in target.parents):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = _REPO / "runs" / f"{out_dir.name}-{stamp}-{os.getpid()}"
        print(f"note: only the book build (make book) writes results/; this run writes to {target}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        import tempfile

        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=target))  # unique: runs sharing out_dir never collide
    except OSError as exc:
        raise ParameterError(f"parameter out_dir = {str(out_dir)!r}: is not writable ({exc.strerror}); "
                             "pass -p out_dir <folder>", "out_dir") from None
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

    from myst_nb.core import variables
    from sphinx.util import logging

    original = getattr(variables, "format_plain_text", None)
    patched = []
    for name in _GLUE_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "format_plain_text", None) is not None and original is not None:
            module.format_plain_text = functools.partial(paste_plain_text, _format=original)
            patched.append(name)
    if len(patched) != len(_GLUE_MODULES):
        logging.getLogger(__name__).warning(
            "diffusion_study.book.notebook: myst-nb's glue roles no longer call format_plain_text "
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
        text = nbformat.writes(nb)
        write_text_atomic(path, text if text.endswith("\n") else text + "\n")
    return removed


READING_TAGS = ("hide-input", "remove-input", "remove-cell")
_GLUE_RECORD = "application/papermill.record/"


def reading_tag(cell) -> str | None:
    """The tag a code cell needs so the page reads prose first (chapter sources: every code cell but the
    parameters cell is folded away), or None when it has one already: "remove-cell" for a cell that shows
    nothing once executed (only glued values, which the prose quotes: myst-nb keeps glue from removed
    cells), "hide-input" (a fold the reader can open) for every other."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    if cell.get("cell_type") != "code" or "parameters" in tags or tags & set(READING_TAGS):
        return None
    visible = [o for o in cell.get("outputs", [])
               if not (o.get("output_type") == "display_data" and all(k.startswith(_GLUE_RECORD) for k in o.get("data", {})))]
    return "remove-cell" if not visible else "hide-input"


def tag_for_reading(path: str | Path) -> int:
    """Give every code cell of the executed notebook at `path` its `reading_tag`, in place; how many changed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    changed = 0
    for cell in nb.cells:
        tag = reading_tag(cell)
        if tag is not None:
            cell.metadata.setdefault("tags", []).append(tag)
            changed += 1
    if changed:
        text = nbformat.writes(nb)
        write_text_atomic(path, text if text.endswith("\n") else text + "\n")
    return changed


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

    The parameters are checked first, against the chapter's parameters cell, SIZES and LIMITS
    (`check_parameters`), in well under a second and before any kernel starts: a bad one raises
    ParameterError "parameter T = -5: must be an integer >= 1 (01_elbo); no notebook was run".
    With `dest` None the notebook is executed in place: it runs into a temporary file beside
    `src` (named per process, so two runs never share it) that replaces `src` only on success,
    so a failing run never overwrites a committed notebook (the failed copy is kept under
    `failed_dir`, named per run). The result is stripped of per-run metadata before it
    replaces the target. Raises NotebookFailed naming the notebook and cell on an error.
    """
    import tempfile

    src = Path(src)
    target = src if dest is None else Path(dest)
    # Only the in-place default-profile build may write the committed results/ (setup_notebook checks).
    book_build = dest is None and not parameters
    try:
        parameters = check_parameters(src, parameters or {}, cwd=target.parent, book_build=book_build)
    except ParameterError as exc:
        raise ParameterError(f"{exc} ({src.stem}); no notebook was run", exc.name) from None

    import papermill
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}-", suffix=".running.ipynb", dir=target.parent)
    os.close(fd)
    running = Path(name)
    start = time.perf_counter()
    print(f"executing {src} -> {target} {parameters or ''}", flush=True)
    previous = os.environ.get(BOOK_BUILD_ENV)
    os.environ[BOOK_BUILD_ENV] = "1" if book_build else "0"
    try:
        papermill.execute_notebook(
            str(src), str(running), parameters=parameters, cwd=str(target.parent), progress_bar=False,
        )
    except PapermillExecutionError as exc:
        from diffusion_study.book.results import _REPO

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        failed = Path(failed_dir if failed_dir is not None else _REPO / "runs" / "failed")
        failed = failed / f"{src.stem}-{stamp}-{os.getpid()}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(running, failed)
        if exc.ename == "ParameterError":  # the chapter's own check in its setup cell: one line says it all
            raise NotebookFailed(f"{exc.evalue} ({src.stem}); the executed notebook: {failed}") from None
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
    try:
        strip_volatile_metadata(running)
        tag_for_reading(running)
        os.replace(running, target)
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return target


def _code_cells(path: str | Path) -> list[str]:
    """The sources of a notebook's code cells, read as plain JSON (nbformat takes seconds to import)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    sources = [c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return ["".join(s) if isinstance(s, list) else s for s in sources]


def chapter_spec(path: str | Path) -> tuple[list[tuple[str, Any, str]], dict[str, dict[str, Any]], dict[str, Any]]:
    """A chapter's parameters [(name, default, comment)] from its `parameters` cell, and from the
    top-level constants of its setup cell its per-profile sizes `SIZES = {profile: {name: value}}`
    and its extra bounds `LIMITS = {name: (low, high)}` ({} when it declares none)."""
    import ast

    code = _code_cells(path)
    params = []
    for line in (code[0] if code else "").splitlines():
        match = re.match(r"\s*(\w+)\s*=\s*([^#]+?)\s*(?:#\s*(.*))?$", line)
        if match:
            params.append((match[1], ast.literal_eval(match[2]), match[3] or ""))
    known: dict[str, Any] = {}  # top-level constants of the setup cell (literals, dicts built from them)
    for source in code[1:3]:
        try:
            body = ast.parse(source).body
        except SyntaxError:
            continue
        for node in body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:  # the chapter's own constants, evaluated without builtins
                    value = eval(compile(ast.Expression(node.value), "<sizes>", "eval"), {"__builtins__": {}}, known)
                except Exception:
                    continue
                known[node.targets[0].id] = value
    return params, known.get("SIZES", {}), known.get("LIMITS", {})


def chapter_parameters(path: str | Path) -> tuple[list[tuple[str, Any, str]], dict[str, dict[str, Any]]]:
    """A chapter's parameters [(name, default, comment)] from its `parameters` cell, and its
    per-profile sizes {profile: {name: value}} from the `SIZES = {...}` literal of its setup cell."""
    params, sizes, _ = chapter_spec(path)
    return params, sizes


def _cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch (seconds) where no GPU device node exists."""
    import glob

    if not (glob.glob("/dev/nvidia*") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg")):
        return False
    import torch

    return torch.cuda.is_available()


def check_parameters(path: str | Path, parameters: dict[str, Any], *, cwd: str | Path | None = None,
                     book_build: bool = False) -> dict[str, Any]:
    """Check `parameters` for the chapter at `path` without running it; return them in the form the
    chapter uses ("[0, 3]" read as a list), or raise ParameterError naming the bad one, its value and
    the valid range. Checks the names against the parameters cell, every value against its default,
    SIZES and LIMITS (`validation.check_chapter_parameters`), profile 'gpu' against the machine, and
    that out_dir (relative to `cwd`, the kernel's working directory; default the notebook's folder)
    can be created and written (nothing is created). Takes well under a second: torch is imported
    only for profile 'gpu' on a machine with a GPU device."""
    params, sizes, limits = chapter_spec(path)
    resolved = check_chapter_parameters(parameters, params, sizes, limits, cuda_available=_cuda_available)
    out_dir = resolved.get("out_dir")
    if out_dir is not None:
        from diffusion_study.book.results import _REPO

        base = Path(cwd) if cwd is not None else Path(path).parent
        target = Path(os.path.abspath(base / out_dir))
        committed = Path(os.path.abspath(_REPO / "results"))
        if not book_build and (target == committed or committed in target.parents):
            target = _REPO / "runs"  # setup_notebook sends such a run to runs/<name>-<time>-<pid>/
        why = writable_folder(target)
        if why:
            raise ParameterError(f"parameter out_dir = {str(out_dir)!r}: is not writable ({why}); "
                                 "pass -p out_dir <folder>", "out_dir")
    return {name: resolved[name] for name in parameters}


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
    """Parse a `-p NAME VALUE` value as papermill's -p does (None, booleans, numbers, else text); a list
    parameter's text ("[16, 64]") is read as YAML by the check, which knows the parameter is a list."""
    return parse_scalar(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.book.notebook")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute notebooks (in place unless --dest)")
    ex.add_argument("notebooks", nargs="+", type=Path)
    ex.add_argument("--dest", type=Path, help="folder for the executed copies")
    ex.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="chapters executed at once, each in its own process (default: 2, or 1 on one core)")
    ck = sub.add_parser("check", help="check parameters against each chapter without running it (< 1 s)")
    ck.add_argument("notebooks", nargs="+", type=Path)
    ck.add_argument("--cwd", type=Path, help="the kernel's working directory (out_dir is relative to it)")
    for command in (ex, ck):  # papermill's parameter options, so `make run`'s PARAMS can be checked as given
        command.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
        command.add_argument("-r", "--parameter-raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                             help="a parameter kept as text")
        command.add_argument("-y", "--parameters-yaml", action="append", default=[], metavar="YAML",
                             help="parameters as a YAML mapping")
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
    params.update(dict(args.parameter_raw))
    for text in args.parameters_yaml:
        import yaml

        try:
            mapping = yaml.safe_load(text)
        except yaml.YAMLError:
            mapping = None
        if not isinstance(mapping, dict):
            print(f"error: -y takes a YAML mapping such as 'gap_Ts: [16, 64]', got {text!r}", file=sys.stderr)
            return 1
        params.update(mapping)
    if args.command == "check":
        for path in args.notebooks:
            try:
                check_parameters(path, params, cwd=args.cwd)
            except ParameterError as exc:
                print(f"error: {exc} ({path.stem})", file=sys.stderr)
                return 1
        return 0
    # every chapter's parameters first: a bad value fails at once, not after the chapters before it ran
    for path in args.notebooks:
        dest = None if args.dest is None else args.dest / path.name
        try:
            check_parameters(path, params, cwd=(path if dest is None else dest).parent,
                             book_build=dest is None and not params)
        except ParameterError as exc:
            print(f"error: {exc} ({path.stem}); no notebook was run", file=sys.stderr)
            return 1
    # every chapter records the code it ran with as the tree was when the build began (results.provenance)
    from diffusion_study.book.results import CODE_STATE_ENV, git_code_state

    os.environ.setdefault(CODE_STATE_ENV, json.dumps(git_code_state()))
    jobs = positive_int("--jobs", args.jobs)
    if jobs == 1 or len(args.notebooks) == 1:
        return max(_execute_one(path, args.dest, params) for path in args.notebooks)
    # Chapters in parallel, each in its own process and kernel: every chapter fixes its own thread count
    # (setup_notebook), so running two at once changes their wall time, never their numbers.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        codes = list(pool.map(_execute_one, args.notebooks, [args.dest] * len(args.notebooks),
                              [params] * len(args.notebooks)))
    return max(codes)


def _execute_one(path: Path, dest_dir: Path | None, params: dict) -> int:
    """`execute` one notebook for the command line: 0, or 1 after printing the error in one block."""
    dest = None if dest_dir is None else dest_dir / path.name
    try:
        execute(path, dest, params)
    except (NotebookFailed, ParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:  # e.g. a --dest that cannot be written
        print(f"error: {path.stem}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
