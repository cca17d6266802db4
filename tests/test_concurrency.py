"""Concurrent runs do not corrupt each other's files (issue 13, item 10).

`execute` runs a notebook into a temporary file named per process (`.<stem>.<pid>-<random>.running.ipynb`,
still matched by the book's exclude pattern `**/.*.running.ipynb`), strips it and moves it over the target
with os.replace; result JSON is written through a unique temporary file and os.replace too. The slow test
runs three processes at once on a tiny chapter-like notebook (written here, seconds per run): the in-place
"book build" of it, and two runs with new parameters into one other folder.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from diffusion_study.book import notebook

ROOT = Path(__file__).resolve().parents[1]

PARAMETERS = '''profile = "cpu"  # "smoke" | "cpu" | "gpu"
seed = 0
n = None  # points drawn
out_dir = "out"  # figures and results JSON (relative to the notebook)
'''
SETUP = '''import matplotlib.pyplot as plt
import numpy as np

from diffusion_study.book.notebook import setup_notebook
from diffusion_study.book.plotting import save_figure
from diffusion_study.book.results import write_result

SIZES = {"smoke": {"n": 50}, "cpu": {"n": 200}, "gpu": {"n": 200}}
cfg = setup_notebook(profile, seed, out_dir, sizes=SIZES, threads=1, n=n)
'''
WORK = '''x = np.random.default_rng(cfg.seed).normal(size=cfg.n)
fig, ax = plt.subplots()
ax.hist(x, bins=20)
save_figure(fig, "hist", cfg.out_dir)
write_result(cfg.out_dir, "tiny", {"seed": cfg.seed, "n": cfg.n}, {"mean": float(x.mean())})
print("finished seed", cfg.seed)
'''


def _chapter(folder: Path) -> Path:
    """A chapter-like notebook: a parameters cell, a setup cell with SIZES, a cell writing a figure and a result."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = json.loads((ROOT / "notebooks" / "01_elbo.ipynb").read_text())["metadata"]
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(WORK)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_running_files_are_named_per_run_and_excluded_from_the_book(tmp_path, monkeypatch):
    import papermill

    src = _chapter(tmp_path / "book")
    seen = []

    def fake(source, out, **kwargs):
        seen.append(Path(out))
        assert Path(out).exists()  # created (empty) by execute itself: the name is taken atomically
        shutil.copy(source, out)

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    dest = tmp_path / "runs" / "tiny.ipynb"
    for _ in range(2):
        notebook.execute(src, dest, {"seed": 1, "out_dir": str(tmp_path / "out")})
    notebook.execute(src)  # in place, like the book build
    assert len({p.name for p in seen}) == 3
    for path in seen:
        assert path.name.startswith(f".tiny.{os.getpid()}-") and path.name.endswith(".running.ipynb")
        assert path.match(".*.running.ipynb")  # book/_config.yml excludes "**/.*.running.ipynb"
        assert not path.exists()
    assert nbformat.read(dest, as_version=4).cells[0].source == PARAMETERS
    assert not list(tmp_path.rglob("*.running.ipynb")) and not list(tmp_path.rglob("*.tmp"))


def test_book_config_still_excludes_the_running_files():
    assert '"**/.*.running.ipynb"' in (ROOT / "book" / "_config.yml").read_text()


def test_a_stripped_notebook_is_replaced_whole(tmp_path):
    """`strip` rewrites through a temporary file and os.replace: a reader never sees half a notebook."""
    path = _chapter(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.metadata["papermill"] = {"duration": 1.0}
    nbformat.write(nb, path)
    before = os.stat(path).st_ino
    assert notebook.strip_volatile_metadata(path) == ["metadata.papermill"]
    assert os.stat(path).st_ino != before  # a new file moved into place, not the old one rewritten
    assert "papermill" not in nbformat.read(path, as_version=4).metadata
    assert list(tmp_path.iterdir()) == [path]


def _check_run(notebook_path: Path, out_dir: Path, seed: int) -> None:
    nb = nbformat.read(notebook_path, as_version=4)  # complete JSON, a valid notebook
    nbformat.validate(nb)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    assert any(f"finished seed {seed}" in o.get("text", "") for o in outputs)
    result = json.loads((out_dir / "tiny.json").read_text())
    assert result["params"] == {"seed": seed, "n": 50} and "provenance" in result
    png, pdf = (out_dir / "hist.png").read_bytes(), (out_dir / "hist.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.rstrip().endswith(b"IEND\xaeB`\x82")
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    import matplotlib.image

    assert matplotlib.image.imread(out_dir / "hist.png").ndim == 3


@pytest.mark.slow
@pytest.mark.slow  # > 5 s: make test-slow
def test_concurrent_runs_of_one_chapter_do_not_corrupt_each_other(tmp_path):
    src = _chapter(tmp_path / "book")
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(notebook.BOOK_BUILD_ENV, None)

    def start(*args):
        return subprocess.Popen([sys.executable, "-m", "diffusion_study.book.notebook", "execute", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    procs = [
        start(str(src)),  # the book build: in place, default parameters, out_dir "out" beside the notebook
        start("--dest", str(runs / "a"), "-p", "profile", "smoke", "-p", "seed", "1",
              "-p", "out_dir", str(runs / "a" / "out"), str(src)),
        start("--dest", str(runs / "b"), "-p", "profile", "smoke", "-p", "seed", "2",
              "-p", "out_dir", str(runs / "b" / "out"), str(src)),
        # into the same folder as the second run (the notebook there is either one, whole)
        start("--dest", str(runs / "a"), "-p", "profile", "smoke", "-p", "seed", "3",
              "-p", "out_dir", str(runs / "c" / "out"), str(src)),
    ]
    logs = [p.communicate(timeout=540)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log

    book = nbformat.read(src, as_version=4)
    assert "papermill" not in book.metadata  # executed, stripped, replaced in place
    assert json.loads((tmp_path / "book" / "out" / "tiny.json").read_text())["params"] == {"seed": 0, "n": 200}
    _check_run(runs / "b" / "tiny.ipynb", runs / "b" / "out", 2)
    seeds = [s for s in (1, 3) if "finished seed %d" % s in json.dumps(nbformat.read(runs / "a" / "tiny.ipynb", 4))]
    assert len(seeds) == 1  # the last of the two runs into runs/a, whole
    _check_run(runs / "a" / "tiny.ipynb", runs / ("a" if seeds == [1] else "c") / "out", seeds[0])
    _check_run(runs / "b" / "tiny.ipynb", runs / "b" / "out", 2)
    assert (runs / "a" / "out" / "tiny.json").exists() and (runs / "c" / "out" / "tiny.json").exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".running.ipynb", ".tmp"))]
    assert leftovers == []
