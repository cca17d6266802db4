"""results: atomic JSON with provenance, claim verdict validation; ledger rendering."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_study.base import io as base_io
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
    monkeypatch.setattr(base_io.os, "replace", lambda a, b: replaced.append(b) or real_replace(a, b))
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
    write_result(tmp_path / "res" / "01_ch", "01_ch", {"profile": "smoke", "seed": 3}, {}, {"L1": CLAIM})
    text = build_ledger(tmp_path / "res", _claims_file(tmp_path))
    row_l1 = next(line for line in text.splitlines() if "**L1.**" in line)
    row_l2 = next(line for line in text.splitlines() if "**L2.**" in line)
    assert "a \\| b" in row_l1 and '<span class="verdict verdict-supported">supported</span>' in row_l1
    assert "{numref}`fig-x`" in row_l1 and "*(ch. 1)*" in row_l1
    assert "verdict-not-yet-tested" in row_l2
    # the conditions are given once per chapter, below the tables, not in the rows
    assert "profile smoke, seed 3" not in row_l1
    assert "**ch. 1** (`01_ch`; profile smoke, seed 3" in text and "T=10" in text.split("## Conditions")[1]


def test_ledger_rejects_unknown_claim_ids(tmp_path):
    write_result(tmp_path / "res", "ch", {}, {}, {"Z9": CLAIM})
    with pytest.raises(ValueError, match="Z9"):
        build_ledger(tmp_path / "res", _claims_file(tmp_path))


def test_overall_verdict():
    assert overall_verdict([]) == "not yet tested"
    assert overall_verdict([CLAIM, CLAIM]) == "supported"
    assert overall_verdict([CLAIM, {**CLAIM, "verdict": "contradicted"}]) == "mixed"
    assert overall_verdict([CLAIM, {**CLAIM, "verdict": "inconclusive"}]) == "inconclusive"
    assert overall_verdict([CLAIM, {**CLAIM, "verdict": "not supported"}]) == "mixed"  # old rule


def test_parts_are_validated():
    from diffusion_study.eval.verdicts import part

    ok = {"L1": {**CLAIM, "parts": [part("2D", "inconclusive", "0.1 ± 0.3", interval=(-0.2, 0.4), mde=0.5)]}}
    assert check_claims(ok) == ok
    for bad, match in (({"setting": "", "verdict": "supported", "effect": ""}, "setting"),
                       ({"setting": "2D", "verdict": "yes", "effect": ""}, "verdict"),
                       ({"setting": "2D", "verdict": "supported", "note": ""}, "fields"),
                       ({"setting": "2D", "verdict": "supported", "interval": [1.0]}, "interval")):
        with pytest.raises(ValueError, match=match):
            check_claims({"L1": {**CLAIM, "parts": [bad]}})


def test_ledger_has_one_row_per_part_and_setting_with_interval_and_mde(tmp_path):
    from diffusion_study.eval.verdicts import part

    parts = [part("checkerboard", "contradicted", "+0.010 +- 0.012 nats", interval=(-0.002, 0.022), mde=0.015,
                  margin="-0.02 nats"),
             part("two moons", "inconclusive", "0.046 +- 0.023", interval=(0.023, 0.069), mde=0.03)]
    write_result(tmp_path / "res" / "04_a", "04_a", {}, {}, {"L1": {**CLAIM, "parts": parts}})
    write_result(tmp_path / "res" / "05_b", "05_b", {}, {}, {"L1": {**CLAIM, "verdict": "mixed", "setting": "digits"}})
    text = build_ledger(tmp_path / "res", _claims_file(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith("| **L1")]
    assert len(rows) == 3
    assert "*(checkerboard)*" in rows[0] and "verdict-contradicted" in rows[0]
    assert "[−0.002, 0.022]" in rows[0] and "| 0.015 |" in rows[0] and "margin −0.02 nats" in rows[0]
    assert "*(two moons)*" in rows[1] and "verdict-inconclusive" in rows[1] and "±" in rows[1]
    assert "*(digits)*" in rows[2] and rows[2].endswith("| — | — |")
    assert "**3 claims" not in text and "**2 claims in 4 rows**" in text


def test_ledger_sections_follow_the_chapters(tmp_path):
    path = tmp_path / "claims.yml"
    path.write_text("groups:\n  - {title: First, cite: a, claims: [{id: K1, text: k}]}\n"
                    "  - {title: Second, cite: b, claims: [{id: L1, text: l}]}\n")
    write_result(tmp_path / "res" / "01_a", "01_a", {}, {}, {"L1": CLAIM})
    write_result(tmp_path / "res" / "02_b", "02_b", {}, {}, {"K1": CLAIM})
    text = build_ledger(tmp_path / "res", path)
    assert text.index("## Second") < text.index("## First")


@pytest.mark.parametrize("ascii_, uni", [
    ("0.570 +- 0.014", "0.570 ± 0.014"),
    ("||x0_hat - E[x0|x_t]||^2 / ||x0_hat - x0||^2", "‖x̂₀ − E[x₀ | xₜ]‖² / ‖x̂₀ − x₀‖²"),
    ("linear/x0 x92.5 [40.5, 211]", "linear/x0 ×92.5 [40.5, 211]"),
    ("(thresholds x0.5 / x1 / x2: mixed)", "(thresholds ×0.5 / ×1 / ×2: mixed)"),
    ("whole-step (x0)", "whole-step (x₀)"),
    ("w=0 -> w=8: -142", "w=0 → w=8: −142"),
    ("MLPs width 64 x 3; 10x the shape", "MLPs width 64 × 3; 10× the shape"),
    ("< 1e-12", "< 1e-12"),
])
def test_effects_are_shown_in_unicode(ascii_, uni):
    from diffusion_study.book.ledger import unicode_text

    assert unicode_text(ascii_) == uni


def test_the_books_ledger_has_no_ascii_stand_ins():
    root = Path(__file__).resolve().parents[1]
    text = build_ledger(root / "results", root / "book" / "claims.yml")
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert rows
    for stand_in in ("+-", "||", "^2", "->"):
        assert not any(stand_in in row for row in rows), stand_in
    assert (root / "book" / "_static" / "verdicts.css").exists()
    css = (root / "book" / "_static" / "verdicts.css").read_text()
    from diffusion_study.book.ledger import BADGE_ORDER, _slug

    for verdict in BADGE_ORDER:
        assert f"span.verdict-{_slug(verdict)} " in css, verdict


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


def test_a_book_build_records_the_code_as_it_was_when_the_build_began(monkeypatch):
    """Chapters executed earlier in the same build rewrite their notebooks and results (outputs, not code):
    a chapter's provenance reads the state the runner recorded before the first chapter started."""
    from diffusion_study.book.results import CODE_STATE_ENV, provenance

    monkeypatch.setenv(CODE_STATE_ENV, json.dumps({"commit": "a" * 40, "dirty_files": []}))
    prov = provenance()
    assert prov["git_commit"] == "a" * 40 and prov["git_dirty"] is False and prov["git_dirty_files"] == []
