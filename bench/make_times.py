"""Wall time of the project's own commands on a clean clone, as a newcomer runs them.

Clones HEAD into a temporary folder (uncommitted changes are not there: commit first), then runs each
make target there in turn and records its wall time with the machine's load average before and after
(other jobs share the cores; the figures are only comparable at a similar load). The first target also
pays for the virtual environment (`pip install -e .`, from pip's cache when it is warm).

    .venv/bin/python bench/make_times.py test-fast test     # -> bench/results/make_times.json
    .venv/bin/python bench/make_times.py --keep book        # the clone is kept to look at
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common

REPO = common.REPO
BUDGETS_S = {"test-fast": 120, "test": 600, "book": 900}  # what the README promises on 2 cores


def time_target(clone: str, target: str) -> dict:
    load = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(["make", target], cwd=clone, env={**os.environ, "CI": os.environ.get("CI", "true")})
    seconds = time.perf_counter() - start
    record = {"seconds": round(seconds, 1), "returncode": done.returncode, "load_before": load,
              "load_after": os.getloadavg(), "budget_s": BUDGETS_S.get(target)}
    print(f"make {target}: {seconds:.0f} s (rc {done.returncode})", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="make targets, run in this order in one clone")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    common.add_run_arguments(parser)
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    clone = tempfile.mkdtemp(prefix="make-times-")
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), clone], check=True)
        results = {target: time_target(clone, target) for target in args.targets}
    finally:
        if args.keep:
            print(f"clone kept: {clone}")
        else:
            shutil.rmtree(clone, ignore_errors=True)
    payload = {"commit": head, "cores": os.cpu_count(), "targets": results,
               "note": "a clean clone of the commit; the first target also creates .venv (pip cache warm)"}
    common.write_result("make_times", payload, started, args.out, load)
    sys.exit(max(r["returncode"] for r in results.values()))


if __name__ == "__main__":
    main()
