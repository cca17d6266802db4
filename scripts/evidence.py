"""The evidence tier: train chapter 5's stored models in resumable slices (issue 20, item 1).

    python scripts/evidence.py                          # every config of studies.evidence.CONFIGS (then LONG_CONFIGS, MNIST_CONFIGS), to the end
    python scripts/evidence.py --slice-seconds 600 --budget-seconds 3600   # at most an hour now; rerun to go on
    python scripts/evidence.py --list                   # what is stored and what is left

Each slice trains one model for about --slice-seconds and checkpoints it under --work (not committed); a model
whose steps are done is evaluated on the digits' test split and stored under --store (artifacts/05_images/:
its weights, and a JSON record with its config and config hash, bits/dim, sha256 and provenance: commit,
machine, command, time, steps, wall time). Stopping at any point loses at most the current slice.
"""

import argparse
import shlex
import sys
import time

import torch

from diffusion_study.studies import evidence
from diffusion_study.training import store


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slice-seconds", type=float, default=600.0, help="training time per slice (default 600)")
    p.add_argument("--budget-seconds", type=float, default=None, help="stop starting slices after this long")
    p.add_argument("--store", default=str(evidence.STORE), help="the committed store (default artifacts/05_images)")
    p.add_argument("--work", default="runs/evidence", help="checkpoints between slices (not committed)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--list", action="store_true", help="list the configs, stored or not, and exit")
    p.add_argument("--only", default=None, help="only the configs whose name contains this text")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python scripts/evidence.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.list:
        for config in evidence.CONFIGS + evidence.LONG_CONFIGS + evidence.MNIST_CONFIGS:
            record = store.find(args.store, config)
            state = (f"stored: {record['results']['bits_per_dim']:.4f} bits/dim, {record['provenance']['created']}"
                     if record else "not stored")
            print(f"{evidence.name_of(config)}: {state}")
        return 0
    began = time.perf_counter()
    for config in evidence.CONFIGS + evidence.LONG_CONFIGS + evidence.MNIST_CONFIGS:
        if args.only is not None and args.only not in evidence.name_of(config):
            continue
        while True:
            if args.budget_seconds is not None and time.perf_counter() - began > args.budget_seconds:
                print("budget spent; rerun the same command to go on")
                return 0
            out = evidence.run_slice(config, args.store, args.work, slice_seconds=args.slice_seconds, command=command)
            print(f"{out['name']}: {'done' if out['done'] else 'at'} {out['steps']} / {config['steps']} steps"
                  + (f", {out['seconds']:.0f} s of training" if out["seconds"] is not None else " (stored)"), flush=True)
            if out["done"]:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
