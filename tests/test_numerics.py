"""The same numbers on any x86-64 machine with AVX2: importing the package pins torch's kernels, MKL's
and oneDNN's code paths (base/numerics.py). A machine is simulated by the variable torch reads to pick its
kernels (ATEN_CPU_CAPABILITY): an AVX-512 machine, an AVX2 one and one that runs the plain C++ kernels.

The control shows that the comparison can fail: without the pin, the same computation gives other bits
on the simulated machines (the normal sampler, softmax, convolution)."""

from __future__ import annotations

import json
import os
import re
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


def _compared_outputs(path: Path) -> list[str]:
    """What nbval compares in an executed notebook: every code cell's text outputs (streams, text/plain,
    HTML, glued text), images left out as nbval leaves them out."""
    import nbformat

    texts = []
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "text" in out:
                texts.append(out["text"])
            for mime, value in out.get("data", {}).items():
                if "image" not in mime:
                    texts.append(f"{mime}: {value}")
    return texts


def _numbers(tree, path="") -> dict:
    """The results JSON flattened to {path: value}, without the machine's clock (wall times) and paths."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if not re.search(r"seconds|wall|out_dir|time_utc", key)
                for k, v in _numbers(value, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{path}/{i}").items()}
    return {path: tree}


@needs_avx2
@pytest.mark.slow
def test_a_chapter_executes_to_the_same_outputs_on_two_simulated_machines(tmp_path):
    """Chapter 2 at the smoke profile (it trains, samples and scores ensembles), executed as the book
    executes it, with the environment of an AVX-512 machine and of one without vector kernels."""
    import papermill

    chapter = REPO / "notebooks" / "02_toy_study.ipynb"
    runs = {}
    for machine in ("avx512", "default"):
        saved = {k: os.environ.get(k) for k in [*PINNED, "ATEN_CPU_CAPABILITY"]}
        for k in PINNED:
            os.environ.pop(k, None)
        os.environ["ATEN_CPU_CAPABILITY"] = machine  # what the kernel process inherits
        try:
            out = tmp_path / machine
            out.mkdir()
            papermill.execute_notebook(str(chapter), str(out / chapter.name), cwd=str(chapter.parent),
                                       progress_bar=False, parameters={"profile": "smoke", "out_dir": str(out)})
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        result = json.loads((out / "02_toy_study.json").read_text())
        result.pop("provenance", None)
        texts = [t.replace(str(out), "<out_dir>") for t in _compared_outputs(out / chapter.name)]
        runs[machine] = (texts, result)
    (texts_a, result_a), (texts_b, result_b) = runs["avx512"], runs["default"]
    flat_a, flat_b = _numbers(result_a), _numbers(result_b)
    assert flat_a.keys() == flat_b.keys()
    assert [k for k in flat_a if flat_a[k] != flat_b[k]] == []
    assert len(texts_a) == len(texts_b) and [i for i, (a, b) in enumerate(zip(texts_a, texts_b)) if a != b] == []
