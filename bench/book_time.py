"""Whole-book reproduction time at the default profile, per chapter.

Without BENCH_BOOK=1 (what `make bench` does by default): the last recorded times, read from each
chapter's results file (results/<chapter>/<chapter>.json, `provenance.wall_time_s`: the chapter's own
clock from its setup cell to its `write_result` call, i.e. its computation, without kernel start-up and
the cells after the results are written), with the commit, device and date of that run.

With BENCH_BOOK=1: every chapter is executed afresh at the default profile into a temporary folder
(`python -m diffusion_study.book.notebook execute --dest <tmp> notebooks/NN.ipynb`, the committed notebooks
and results untouched) and the wall time of each command is recorded (kernel start-up included).

    .venv/bin/python bench/book_time.py                  # recorded times (seconds)
    BENCH_BOOK=1 .venv/bin/python bench/book_time.py     # executes the book (about 10 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import common

REPO = common.REPO


def recorded() -> dict:
    chapters = {}
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        path = REPO / "results" / nb.stem / f"{nb.stem}.json"
        if not path.exists():
            chapters[nb.stem] = {"seconds": None, "source": f"no {path.relative_to(REPO)}"}
            continue
        rec = json.loads(path.read_text(encoding="utf-8"))
        prov = rec.get("provenance", {})
        chapters[nb.stem] = {"seconds": prov.get("wall_time_s"), "profile": rec.get("params", {}).get("profile"),
                             "git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"),
                             "git_dirty_files": prov.get("git_dirty_files"), "device": prov.get("device"),
                             "time_utc": prov.get("time_utc"),
                             "source": f"{path.relative_to(REPO)}: provenance.wall_time_s"}
    return chapters


def executed(timeout: float) -> dict:
    chapters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "diffusion_study.book.notebook", "execute", "--dest", tmp,
                                   str(nb.relative_to(REPO))], cwd=REPO, timeout=timeout)
            chapters[nb.stem] = {"seconds": time.perf_counter() - start, "profile": "cpu",
                                 "returncode": done.returncode,
                                 "source": "executed now: python -m diffusion_study.book.notebook execute --dest <tmp>"}
            print(f"{nb.stem}: {chapters[nb.stem]['seconds']:.0f} s (rc {done.returncode})", flush=True)
    return chapters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per chapter (BENCH_BOOK=1)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    run = os.environ.get("BENCH_BOOK") == "1"
    chapters = executed(args.timeout) if run else recorded()
    known = [c["seconds"] for c in chapters.values() if c["seconds"] is not None]
    payload = {"mode": "executed (BENCH_BOOK=1)" if run else "recorded (the chapters' results files)",
               "chapters": chapters, "total_seconds": sum(known) if known else None}
    for name, c in chapters.items():
        print(f"{name}: {c['seconds']} s ({c['source']})")
    common.write_result("book_time", payload, started, args.out, load)


if __name__ == "__main__":
    main()
