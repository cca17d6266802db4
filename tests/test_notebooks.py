"""The chapters: conventions, committed outputs re-checked by nbval, and smoke runs.

- every notebook starts with a `parameters` cell defining profile="cpu", seed and out_dir;
- committed notebooks carry no per-run metadata (papermill timings, execution timestamps);
- nbval re-executes a copy of each committed notebook (in a temporary folder, so its
  figures and results do not land in results/) and compares every output;
- each notebook runs through papermill at the smoke profile with a non-default seed.
"""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from diffusion_study.book.notebook import reading_tag, volatile_metadata

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[!.]*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


def _parameters(nb) -> dict:
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in cell.metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no chapters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_convention(path):
    params = _parameters(nbformat.read(path, as_version=4))
    assert params.get("profile") == "cpu", "the committed default profile is 'cpu'"
    assert isinstance(params.get("seed"), int)
    assert isinstance(params.get("out_dir"), str)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_executed_and_has_no_volatile_metadata(path):
    nb = nbformat.read(path, as_version=4)
    assert volatile_metadata(nb) == [], "run `make book` (or python -m diffusion_study.book.notebook strip)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code if c.source.strip()), "commit the executed notebook"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code), (
        "the committed notebook is the default-profile run: no injected parameters"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_chapter_reads_prose_first(path):
    """Every code cell but the parameters cell is folded (hide-input) or, when it shows nothing, removed from
    the page; `make book` tags them (book.notebook.tag_for_reading)."""
    nb = json.loads(path.read_text())
    untagged = [i for i, c in enumerate(nb["cells"]) if reading_tag(c) is not None]
    assert untagged == [], f"code cells {untagged} show their source on the page: run make book"


def test_reading_tags_fold_code_and_remove_glue_only_cells():
    glue_only = {"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "display_data", "data": {"application/papermill.record/text/plain": "3"}}]}
    printing = {"cell_type": "code", "metadata": {}, "outputs": [{"output_type": "stream", "text": "x"}]}
    parameters = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": []}
    assert [reading_tag(c) for c in (glue_only, printing, parameters)] == ["remove-cell", "hide-input", None]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbval_reproduces_committed_outputs(path, tmp_path):
    copy = tmp_path / "notebooks" / path.name
    copy.parent.mkdir()
    shutil.copy(path, copy)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(copy)],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, f"nbval failed for {path.name}:\n{done.stdout[-8000:]}\n{done.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_smoke_profile_with_non_default_parameters(path, tmp_path):
    out_dir = tmp_path / "out"
    papermill.execute_notebook(
        str(path), str(tmp_path / path.name), cwd=str(path.parent), progress_bar=False,
        parameters={"profile": "smoke", "seed": 1, "out_dir": str(out_dir)},
    )
    written = sorted(p.name for p in out_dir.iterdir())
    assert any(n.endswith(".png") for n in written) and any(n.endswith(".pdf") for n in written)
    result = json.loads((out_dir / f"{path.stem}.json").read_text())
    assert result["params"]["profile"] == "smoke" and result["params"]["seed"] == 1


def test_a_run_outside_the_book_build_never_writes_the_committed_results(tmp_path, monkeypatch, capsys):
    """setup_notebook sends a run whose out_dir is results/<chapter> to runs/ unless the book build runs it."""
    from diffusion_study.book import notebook

    monkeypatch.delenv(notebook.BOOK_BUILD_ENV, raising=False)
    committed = ROOT / "results" / "01_elbo"
    redirected = notebook._writable_out_dir(committed)
    assert redirected.parent == ROOT / "runs" and redirected.name.startswith("01_elbo-")
    assert "only the book build" in capsys.readouterr().out
    redirected.rmdir()
    monkeypatch.setenv(notebook.BOOK_BUILD_ENV, "1")
    assert notebook._writable_out_dir(committed) == committed.resolve()
    assert notebook._writable_out_dir(tmp_path / "mine") == (tmp_path / "mine").resolve()


def test_an_unwritable_out_dir_is_refused_with_its_name(tmp_path):
    from diffusion_study.book import notebook

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="out_dir .* is not writable"):
        notebook._writable_out_dir(blocker / "sub")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_make_help_lists_every_parameter_with_its_profile_values(path):
    from diffusion_study.book.notebook import chapter_parameters, describe

    params, sizes = chapter_parameters(path)
    text = describe(path)
    for name, default, _ in params:
        assert f"  {name} " in text
        if default is None:  # set by the profile: every profile must give it
            assert all(name in sizes[p] for p in ("smoke", "cpu", "gpu")), name


def test_make_run_folders_are_unique_and_take_the_profile():
    makefile = (ROOT / "Makefile").read_text()
    run = makefile[makefile.index("\nrun:"):makefile.index("\nhelp:")]
    assert "mktemp -d runs/" in run and "-p profile $(PROFILE)" in run
