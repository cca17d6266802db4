"""results: atomic JSON with provenance, claim verdict validation; ledger rendering."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_study.base import io as atomic_io
from diffusion_study.book.ledger import build_ledger, load_claims, overall_verdict
from diffusion_study.book.results import check_claims, read_results, write_result

CLAIM = {"verdict": "supported", "evidence": "fig-x", "effect": "z < 3", "conditions": "T=10"}


def test_write_result_round_trips_with_provenance(tmp_path):
    path = write_result(
        tmp_path / "ch", "ch", params={"T": 10, "out": tmp_path},
        metrics={"a": np.float64(1.5), "v": torch.tensor([1.0, 2.0]), "bad": float("nan")},
        claims={"L1": CLAIM}, wall_time_s=1.23456,
    )
    assert path == tmp_path / "ch" / "ch.json"
    (record,) = read_results(tmp_path)
    assert record["path"] == "ch/ch.json"
    assert record["params"] == {"T": 10, "out": str(tmp_path)}
    assert record["metrics"] == {"a": 1.5, "v": [1.0, 2.0], "bad": "nan"}
    assert record["claims"] == {"L1": CLAIM}
    prov = record["provenance"]
    for key in ("git_commit", "git_dirty", "python", "torch", "numpy", "device", "time_utc"):
        assert key in prov
    assert prov["torch"] == torch.__version__ and prov["wall_time_s"] == 1.235
    assert prov["time_utc"].endswith("+00:00")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    write_result(tmp_path, "r", {}, {"x": 1})
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(atomic_io.os, "replace", lambda a, b: replaced.append(b) or real_replace(a, b))
    write_result(tmp_path, "r", {}, {"x": 2})
    assert replaced == [tmp_path / "r.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == {"x": 2}


def test_failed_write_keeps_the_old_file(tmp_path):
    write_result(tmp_path, "r", {}, {"x": 1})
    with pytest.raises(TypeError):
        write_result(tmp_path, "r", {}, {"x": object()})
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize(
    "claims, match",
    [
        ({"l1": CLAIM}, "claim id"),
        ({"L1": {**CLAIM, "verdict": "yes"}}, "verdict must be one of"),
        ({"L1": {**CLAIM, "evidence": ""}}, "evidence"),
        ({"L1": {**CLAIM, "note": "x"}}, "unknown fields"),
    ],
)
def test_malformed_claims_are_rejected(claims, match):
    with pytest.raises(ValueError, match=match):
        check_claims(claims)


def test_read_results_of_missing_directory_is_empty(tmp_path):
    assert read_results(tmp_path / "nothing") == []


def _claims_file(tmp_path):
    path = tmp_path / "claims.yml"
    path.write_text(
        "groups:\n  - title: Notes\n    cite: key\n    claims:\n"
        "      - {id: L1, text: 'a | b'}\n      - {id: L2, text: second}\n"
    )
    return path


def test_ledger_lists_every_claim_with_verdict_or_not_yet_tested(tmp_path):
    write_result(tmp_path / "res" / "ch", "ch", {"profile": "smoke", "seed": 3}, {}, {"L1": CLAIM})
    text = build_ledger(tmp_path / "res", _claims_file(tmp_path))
    row_l1 = next(line for line in text.splitlines() if "**L1.**" in line)
    row_l2 = next(line for line in text.splitlines() if "**L2.**" in line)
    assert "a \\| b" in row_l1 and "| supported |" in row_l1
    assert "{numref}`fig-x`" in row_l1 and "profile smoke, seed 3" in row_l1
    assert "| not yet tested |" in row_l2


def test_ledger_rejects_unknown_claim_ids(tmp_path):
    write_result(tmp_path / "res", "ch", {}, {}, {"Z9": CLAIM})
    with pytest.raises(ValueError, match="Z9"):
        build_ledger(tmp_path / "res", _claims_file(tmp_path))


def test_overall_verdict():
    assert overall_verdict([]) == "not yet tested"
    assert overall_verdict([CLAIM, CLAIM]) == "supported"
    assert overall_verdict([CLAIM, {**CLAIM, "verdict": "not supported"}]) == "mixed"


def test_book_claim_list_has_every_claim_of_the_study():
    groups = load_claims(Path(__file__).resolve().parents[1] / "book" / "claims.yml")
    ids = [c["id"] for g in groups for c in g["claims"]]
    expected = [f"K{i}" for i in range(1, 7)] + [f"L{i}" for i in range(1, 7)] + [
        f"N{i}" for i in range(1, 9)]
    assert set(expected) <= set(ids)


def _committed_results():
    root = Path(__file__).resolve().parents[1]
    return sorted((root / "results").glob("*/*.json"))


@pytest.mark.parametrize("path", _committed_results(), ids=lambda p: p.parent.name)
def test_committed_results_come_from_committed_code(path):
    """A result readers cite must be reproducible from its commit: no code changes outside notebooks/ and
    results/ were uncommitted when it was made, and the commit is in this repository's history."""
    import subprocess

    prov = json.loads(path.read_text())["provenance"]
    assert prov.get("git_commit"), f"{path.name}: no commit recorded"
    stray = [f for f in prov.get("git_dirty_files", []) if not f.startswith(("notebooks/", "results/"))]
    assert not stray, f"{path.name} was produced with uncommitted changes to {stray}; commit, then re-execute"
    root = path.parents[2]
    known = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", prov["git_commit"], "HEAD"])
    assert known.returncode == 0, f"{path.name}: commit {prov['git_commit'][:7]} is not an ancestor of HEAD"
