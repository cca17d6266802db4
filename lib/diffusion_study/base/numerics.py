"""The same numbers on any x86-64 machine: pin the code paths that the CPU would otherwise choose.

Measured on this project's machines (tests/test_numerics.py): PyTorch picks its vectorised kernels by the
CPU (`torch.backends.cpu.get_cpu_capability()`: softmax, the normal sampler and more give other bits on an
AVX-512 machine than on an AVX2 one), MKL picks its GEMM code path by the CPU (conditional numerical
reproducibility, `MKL_CBWR`), oneDNN its convolution kernels (`ONEDNN_MAX_CPU_ISA`), and the thread count
changes the order of reductions. Each is pinned here, once, for every entry point (the package's
`__init__` calls `pin_numerics`, so the notebook kernels, the command line, the benchmarks and the tests
all pass through it before torch runs its first operation):

    ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=AVX2,STRICT, ONEDNN_MAX_CPU_ISA=AVX2   (and a fixed thread count,
                                                                             set by each chapter's setup)

AVX2 is the level that every x86-64 CPU of the last ten years has; one without it (or an ARM machine)
runs other kernels and may print other digits: `numerics_record()` says which, and it is written into
every results JSON, so a reader can tell. `DIFFUSION_STUDY_NATIVE_NUMERICS=1` opts out (native speed,
machine-dependent digits).
"""

from __future__ import annotations

import os
import warnings

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OPT_OUT = "DIFFUSION_STUDY_NATIVE_NUMERICS"


def pin_numerics() -> dict[str, str]:
    """Set the variables of `PINNED` in this process's environment (children inherit them), unless the
    opt-out variable is set; returns what was set. Must run before torch's first CPU operation: the
    kernels are chosen once per process."""
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return {}
    os.environ.update(PINNED)
    return dict(PINNED)


def numerics_record() -> dict[str, object]:
    """What decided this process's floating-point code paths, for a results JSON's provenance:
    the kernels torch actually uses, the pinned variables, the thread count and whether the CPU has AVX2."""
    import torch

    used = torch.backends.cpu.get_cpu_capability()
    record = {
        "cpu_capability": used,
        "pinned": os.environ.get(OPT_OUT, "") in ("", "0"),
        **{name: os.environ.get(name) for name in PINNED},
        "threads": torch.get_num_threads(),
        "cpu_has_avx2": cpu_has_avx2(),
    }
    record["reproducible_with_book"] = bool(record["pinned"] and used == "AVX2")
    return record


def cpu_has_avx2() -> bool | None:
    """True/False from /proc/cpuinfo on Linux; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx2" in line
    except OSError:
        return None
    return None


def warn_if_unpinned() -> None:
    """Warn (once per call) when this process's kernels are not the book's: the numbers may differ in
    their last digits from the committed ones."""
    record = numerics_record()
    if record["pinned"] and not record["reproducible_with_book"]:
        warnings.warn(f"torch runs {record['cpu_capability']} kernels, not AVX2 (the CPU lacks AVX2, or torch ran an "
                      "operation before diffusion_study was imported): numbers may differ from the book's in their "
                      "last digits", RuntimeWarning, stacklevel=2)
