"""`make bench`: every benchmark with a time budget, then the targets table and the book's appendix page.

Runs each script below as its own process (a crash or an overrun costs that benchmark only), each
writing bench/results/<name>.json; then judges the targets (`report.py`) and writes
bench/results/summary.json, bench/results/summary.md and book/appendix_bench.md.

    .venv/bin/python bench/run_all.py                  # what `make bench` runs after installing the peers
    .venv/bin/python bench/run_all.py --only sampler_step ensemble_vmap
    .venv/bin/python bench/run_all.py --report-only    # rewrite the tables from the JSON files

On a machine with CUDA the GPU training benchmark (`train_throughput.py --device cuda`) runs too;
BENCH_BOOK=1 makes `book_time.py` execute the whole book instead of reading the recorded times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common
import report

# name, script arguments, time budget (s) on the 2-core machine
BENCHMARKS = [  # worst case (every budget used up) 14 minutes; timings stop adding rounds at 0.6 x budget
    ("sampler_step", ["bench/sampler_step.py"], 200),
    ("train_throughput", ["bench/train_throughput.py"], 240),
    ("ensemble_vmap", ["bench/ensemble_vmap.py"], 150),
    ("likelihood_is", ["bench/likelihood_is.py"], 200),
    ("book_time", ["bench/book_time.py"], 60),
]
CUDA = ("train_throughput_cuda", ["bench/train_throughput.py", "--device", "cuda"], 1500)  # 24 compilations
PAGE = common.REPO / "book" / "appendix_bench.md"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(name: str, argv: list[str], budget: float) -> str | None:
    """Run one benchmark; None on success, else why it failed."""
    print(f"== {name} (budget {budget:.0f} s)", flush=True)
    start = time.perf_counter()
    budget = budget * (1e6 if os.environ.get("BENCH_BOOK") == "1" and name == "book_time" else 1)
    try:
        extra = [] if name == "book_time" else ["--budget", f"{0.6 * budget:.0f}"]  # rounds stop early past it
        done = subprocess.run([sys.executable, *argv, *extra], cwd=common.REPO, timeout=budget)
    except subprocess.TimeoutExpired:
        return f"over its budget of {budget:.0f} s: stopped"
    print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return None if done.returncode == 0 else f"failed (exit {done.returncode})"


def load(names) -> dict:
    out = {}
    for name in names:
        path = common.RESULTS / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def write_reports(results: dict, wall_s: float | None, failures: dict, meta: dict | None = None) -> list[dict]:
    """Judge the targets and write the summary and the appendix page; `meta` (provenance, peers, load average):
    the run's own, given when the report is rewritten from a stored run (--report-only), else measured now."""
    target_rows = report.rows(results, wall_s, failures)
    meta = meta or {"provenance": common.provenance(wall_s), "peers": common.peer_versions(),
                    "load_average": ", ".join(f"{v:.1f}" for v in os.getloadavg())}
    md = report.markdown(results, target_rows, meta)
    common.write_json_atomic(common.RESULTS / "summary.json",
                             common._plain({"targets": target_rows, "failures": failures, "wall_time_s": wall_s,
                                            "benchmarks": sorted(results), **meta}))
    (common.RESULTS / "summary.md").write_text(md, encoding="utf-8")
    PAGE.write_text(report.appendix_page(md), encoding="utf-8")
    for r in target_rows:
        print(f"{r['status']:8s} {r['item']}: {r['measured']}")
    print(f"wrote bench/results/summary.md, summary.json and {PAGE.relative_to(common.REPO)}")
    return target_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [b[0] for b in BENCHMARKS] + [CUDA[0]]
    parser.add_argument("--only", nargs="+", choices=names, help="run these benchmarks only (the report reads all)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    failures = {}
    wall, meta = None, None
    if not args.report_only:
        todo = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
        if cuda_available():
            if not args.only or CUDA[0] in args.only:
                todo.append(CUDA)
        else:
            failures[CUDA[0]] = "prepared, not run: no CUDA device where make bench ran"
        for name, argv, budget in todo:
            why = run(name, argv, budget)
            (common.RESULTS / f"{name}.stale.json").unlink(missing_ok=True)
            if why:
                failures[name] = why
                stale = common.RESULTS / f"{name}.json"
                if stale.exists():  # an older result would pass for this run's
                    stale.rename(stale.with_suffix(".stale.json"))
        wall = time.perf_counter() - started if not args.only else None
    else:
        summary = common.RESULTS / "summary.json"
        if summary.exists():
            old = json.loads(summary.read_text(encoding="utf-8"))
            wall, failures = old.get("wall_time_s"), old.get("failures", {})
            # the stored run's provenance: a rewritten report describes that run, not this moment's tree
            meta = {k: old[k] for k in ("provenance", "peers", "load_average") if k in old} or None
    write_reports(load(names), wall, failures, meta)
    print(f"make bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
