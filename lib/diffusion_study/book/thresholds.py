"""Pre-registered thresholds: every margin a verdict is judged by, in `book/thresholds.yml`.

A threshold chosen after seeing the result it judges is no test. The file keeps every
threshold in one place, and `changed_with_results` reads the git history for the commits that
change the thresholds file together with a result file (results/*/*.json): there must be none,
so that "fixed beforehand" can be checked (tests/test_thresholds.py).

    python -m diffusion_study.book.thresholds     # lists offending commits; exit status 1 if any
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]
THRESHOLDS = "book/thresholds.yml"
RESULTS = "results/*/*.json"
FIELDS = ("value", "unit", "claims", "means")


def read_thresholds(path: str | Path = _REPO / THRESHOLDS) -> dict[str, dict[str, dict]]:
    """{chapter: {name: {"value", "unit", "claims", "means"}}}; raise ValueError on a malformed entry."""
    import yaml

    chapters = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["chapters"]
    for chapter, entries in chapters.items():
        for name, entry in entries.items():
            missing = [f for f in FIELDS if f not in (entry or {})]
            if missing:
                raise ValueError(f"{path}: {chapter}.{name} lacks {missing}")
            if not isinstance(entry["value"], (int, float)) or isinstance(entry["value"], bool):
                raise ValueError(f"{path}: {chapter}.{name}: value must be a number, got {entry['value']!r}")
    return chapters


def load_thresholds(chapter: str, path: str | Path = _REPO / THRESHOLDS) -> dict[str, float]:
    """A chapter's thresholds as {name: value}, e.g. load_thresholds("04_ndm_2d")["nll"] == 0.02."""
    chapters = read_thresholds(path)
    if chapter not in chapters:
        raise KeyError(f"no thresholds for chapter {chapter!r} in {path} (known: {', '.join(chapters)})")
    return {name: float(entry["value"]) for name, entry in chapters[chapter].items()}


def changed_with_results(repo: str | Path = _REPO, thresholds: str = THRESHOLDS,
                         results: str = RESULTS) -> list[str]:
    """The commits (full hashes, newest first) that change `thresholds` and a file matching
    `results` together. Merge commits are skipped: each change is judged in the commit that
    made it. Raise RuntimeError when git cannot read the history."""
    done = subprocess.run(
        ["git", "-C", str(repo), "log", "--no-merges", "--no-renames", "--format=@%H", "--name-only",
         "--", thresholds, f":(glob){results}"],
        capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git log failed: {done.stderr.strip()}")
    offending, commit, files = [], None, set()

    def close() -> None:
        if commit and thresholds in files and len(files) > 1:
            offending.append(commit)

    for line in done.stdout.splitlines():
        if line.startswith("@"):
            close()
            commit, files = line[1:], set()
        elif line.strip():
            files.add(line.strip())
    close()
    return offending


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m diffusion_study.book.thresholds")
    parser.add_argument("--repo", default=_REPO, type=Path)
    args = parser.parse_args(argv)
    bad = changed_with_results(args.repo)
    for commit in bad:
        print(f"{commit}: changes {THRESHOLDS} together with results")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
