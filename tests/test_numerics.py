"""The same numbers on any x86-64 machine with AVX2: importing the package pins torch's kernels, MKL's
and oneDNN's code paths (base/numerics.py). A machine is simulated by the variable torch reads to pick its
kernels (ATEN_CPU_CAPABILITY): an AVX-512 machine, an AVX2 one and one that runs the plain C++ kernels.

The control shows that the comparison can fail: without the pin, the same computation gives other bits
on the simulated machines (the normal sampler, softmax, convolution)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_study.base.numerics import OPT_OUT, PINNED, cpu_has_avx2, numerics_record

REPO = Path(__file__).resolve().parents[1]
needs_avx2 = pytest.mark.skipif(cpu_has_avx2() is False, reason="the pinned kernels need a CPU with AVX2")

# A small slice of what the chapters do: draw, train a step of an MLP, convolve, normalise, reduce.
PROBE = r"""
import hashlib, json, sys
if sys.argv[1] == "library":
    import diffusion_study  # noqa: F401  (pins the code paths)
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 64, generator=g)
net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.SiLU(), torch.nn.Linear(128, 64))
loss = (net(x) - x).pow(2).mean()
loss.backward()
img = torch.randn(4, 8, 16, 16, generator=g)
conv = torch.nn.functional.conv2d(img, torch.randn(16, 8, 3, 3, generator=g), padding=1)
out = {"randn": x, "softmax": x.softmax(-1), "grad": net[0].weight.grad, "conv": conv,
       "group_norm": torch.nn.functional.group_norm(conv, 4), "logsumexp": x.logsumexp(0)}
print(json.dumps({k: hashlib.sha256(v.detach().numpy().tobytes()).hexdigest()[:12] for k, v in out.items()}
                 | {"capability": torch.backends.cpu.get_cpu_capability()}))
"""


def run_probe(machine: str, *, library: bool, opt_out: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINNED and k != OPT_OUT}
    env["ATEN_CPU_CAPABILITY"] = machine
    if opt_out:
        env[OPT_OUT] = "1"
    done = subprocess.run([sys.executable, "-c", PROBE, "library" if library else "plain"], env=env,
                          capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


@needs_avx2
def test_the_library_gives_the_same_bits_whatever_kernels_the_machine_would_pick():
    runs = {machine: run_probe(machine, library=True) for machine in ("avx512", "avx2", "default")}
    assert {r.pop("capability") for r in runs.values()} == {"AVX2"}
    assert runs["avx512"] == runs["avx2"] == runs["default"]


@needs_avx2
def test_without_the_pin_the_same_computation_gives_other_bits():
    """The control: the machines differ, so the test above could have failed."""
    plain = run_probe("avx2", library=True, opt_out=True)
    scalar = run_probe("default", library=True, opt_out=True)
    assert plain.pop("capability") == "AVX2" and scalar.pop("capability") == "DEFAULT"
    differ = [k for k in plain if plain[k] != scalar[k]]
    assert "randn" in differ and len(differ) >= 3, differ


def test_results_record_the_numerics():
    record = numerics_record()
    assert set(PINNED) <= set(record) and {"cpu_capability", "threads", "reproducible_with_book"} <= set(record)
    assert record["ATEN_CPU_CAPABILITY"] == "avx2" and record["MKL_CBWR"] == PINNED["MKL_CBWR"]
    if cpu_has_avx2():
        assert record["cpu_capability"] == "AVX2" and record["reproducible_with_book"] is True
