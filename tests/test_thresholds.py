"""Pre-registered thresholds: one file, every entry complete, never changed in a commit with the results it judges."""

import shutil
import subprocess
from pathlib import Path

import pytest
from diffusion_study.book.ledger import load_claims
from diffusion_study.book.thresholds import (
    changed_with_results,
    load_thresholds,
    read_thresholds,
)

ROOT = Path(__file__).resolve().parents[1]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def test_every_threshold_is_complete_and_judges_known_claims():
    known = {c["id"] for g in load_claims(ROOT / "book" / "claims.yml") for c in g["claims"]}
    chapters = read_thresholds(ROOT / "book" / "thresholds.yml")
    assert chapters
    for chapter, entries in chapters.items():
        assert (ROOT / "notebooks" / f"{chapter}.ipynb").exists(), chapter
        for name, entry in entries.items():
            assert set(entry["claims"]) <= known, (chapter, name)
            assert entry["unit"] and entry["means"], (chapter, name)


def test_a_chapter_loads_its_thresholds_by_name():
    assert load_thresholds("04_ndm_2d")["nll"] == 0.02
    with pytest.raises(KeyError, match="no thresholds"):
        load_thresholds("99_nothing")


def test_a_malformed_threshold_is_rejected(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text("chapters:\n  01_x:\n    a: {value: '0.1', unit: u, claims: [L1], means: m}\n")
    with pytest.raises(ValueError, match="number"):
        read_thresholds(path)
    path.write_text("chapters:\n  01_x:\n    a: {value: 0.1}\n")
    with pytest.raises(ValueError, match="lacks"):
        read_thresholds(path)


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


@needs_git
def test_a_threshold_changed_in_the_same_commit_as_its_results_is_found(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    _commit(tmp_path, {"book/thresholds.yml": "a: 1\n"}, "thresholds first")
    _commit(tmp_path, {"results/01_x/01_x.json": "{}\n"}, "then results")
    _commit(tmp_path, {"results/01_x/fig.png": "x", "book/thresholds.yml": "a: 1\nb: 2\n"}, "a figure is no result")
    bad = _commit(tmp_path, {"results/01_x/01_x.json": "{\"a\": 1}\n", "book/thresholds.yml": "a: 2\n"},
                  "threshold moved with the result")
    _commit(tmp_path, {"results/01_x/01_x.json": "{\"a\": 2}\n"}, "results again")
    assert changed_with_results(tmp_path) == [bad]


@needs_git
def test_no_commit_of_this_repository_changes_a_threshold_with_its_results():
    try:
        offending = changed_with_results(ROOT)
    except RuntimeError as exc:  # not a git checkout (e.g. an sdist)
        pytest.skip(str(exc))
    assert offending == [], f"thresholds changed together with results in {offending}"
