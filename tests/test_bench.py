"""The benchmarks' report (bench/report.py) and cross-check (bench/crosscheck.py) on small inputs.

Fast, and without the peers: the cross-check test is skipped when diffusers is not installed
(`make bench` installs it; `make test` never needs it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ratio(p):
    return {"paired": p, "of_medians": p, "of_minima": p}


def fake_results(ddim=0.4, ddpm=0.45, lib_vs_diffusers=0.7, loop=30.0, vmap=1.5, cost=0.05, z=0.5, agree=True):
    cc = {"ours": "linear", "index_shift": 1, "ddim_float32": 2e-6, "ddpm_float32": 2e-6,
          "ddim_float64_our_tables": 4e-15, "ddim_float32_leading_spacing": 4e-3, "tolerance": 1e-4, "agree": agree}
    part = lambda shape: {"shape": shape, "us_per_step_median": {"ours_ddim": 40.0, "diffusers_ddim": 100.0,  # noqa: E731
                                                                 "ours_ddpm": 45.0, "diffusers_ddpm": 100.0},
                          "ratios": {"ours_ddim / diffusers_ddim": _ratio(ddim),
                                     "ours_ddpm / diffusers_ddpm": _ratio(ddpm)},
                          "noise_floor_ratio": 0.3, "ddpm_without_noise_ratio": 0.2}
    run = lambda size: {"size": size, "shape": [16, 1, 8, 8], "bf16": False, "compile": False,  # noqa: E731
                        "networks": {"lib": {"network": "UNet", "parameters": 1000},
                                     "diffusers": {"network": "UNet2DModel", "parameters": 1050}},
                        "samples_per_s_median": {"lib": 100.0, "diffusers": 70.0}, "peak_memory_MiB": None,
                        "ratios_of_time": {"lib / diffusers": _ratio(lib_vs_diffusers), "lib / bare": _ratio(1.01)}}
    est = {"bits_per_dim": [4.5], "stderr": [0.2], "time": {"median_s": 0.1}, "cost_ratio_paired": cost,
           "abs_diff_over_stderr": [z], "abs_diff_over_stderr_median": z, "within_1_stderr_rounds": int(z <= 1)}
    return {
        "sampler_step": {"toy": part([10000, 2]), "image": part([64, 3, 32, 32]),
                         "cross_check": {"linear": cc, "squaredcos_cap_v2": {**cc, "ours": "cosine"}}},
        "train_throughput": {"device": "cpu", "threads": 2, "runs": [run("digits"), run("32x32")]},
        "ensemble_vmap": {"parameters": {"G": 100, "steps": 100, "threads": 1},
                          "speedups": {"loop / ensemble": _ratio(loop), "vmap / ensemble": _ratio(vmap)},
                          "results": {"ensemble": {"median_s": 0.3, "min_s": 0.3}}},
        "likelihood_is": {"parameters": {"n_test": 297, "T": 1000, "network": {"parameters": 5000}},
                          "estimators": {"full": {**est, "stderr": [0.02], "time": {"median_s": 1.0}},
                                         "is_50": est}},
        "book_time": {"mode": "recorded", "total_seconds": 10.0,
                      "chapters": {"01_elbo": {"seconds": 10.0, "git_commit": "abc1234", "time_utc": "t",
                                               "device": "cpu"}}},
    }


def _status(rows, prefix):
    return [r["status"] for r in rows if r["item"].startswith(prefix)]


def test_targets_met_on_good_results():
    report = _module("report")
    rows = report.rows(fake_results(), wall_s=600)
    assert {r["status"] for r in rows if "GPU" not in r["item"]} == {"met"}
    assert _status(rows, "2. training throughput, GPU") == ["not run"]


@pytest.mark.parametrize("change, item", [
    ({"ddim": 0.6}, "1. sampler overhead, DDIM"),
    ({"ddpm": 0.55}, "1. sampler overhead, DDPM"),
    ({"lib_vs_diffusers": 0.9}, "2. training throughput, CPU"),  # 1.11x < 1.2x
    ({"agree": False}, "3. convention cross-check"),
    ({"loop": 20.0}, "4. toy-grid ensembles"),
    ({"vmap": 0.9}, "4. toy-grid ensembles"),
    ({"cost": 0.2}, "5. likelihood estimator"),
    ({"z": 1.5}, "5. likelihood estimator"),
])
def test_each_target_can_be_missed(change, item):
    report = _module("report")
    rows = report.rows(fake_results(**change), wall_s=600)
    assert _status(rows, item) == ["missed"]
    assert report.rows(fake_results(), wall_s=16 * 60)[-1]["status"] == "missed"


def test_missing_results_are_not_run_and_say_why():
    report = _module("report")
    rows = report.rows({}, failures={"sampler_step": "over its budget of 300 s: stopped"})
    assert {r["status"] for r in rows} == {"not run"}
    assert rows[0]["note"] == "over its budget of 300 s: stopped"


def test_markdown_and_appendix_page():
    report = _module("report")
    results = fake_results()
    rows = report.rows(results, wall_s=600)
    md = report.markdown(results, rows, {"provenance": {"git_commit": "0123456789", "device": "cpu"},
                                         "peers": {"diffusers": "0.42"}, "load_average": "1.0"})
    assert md.startswith("# Benchmarks")
    assert "| item | target | measured | status | note |" in md
    assert md.count("**met**") == len(rows) - 1 and "**not run**" in md
    assert "0123456" in md and "diffusers 0.42" in md
    page = report.appendix_page(md)
    assert page.startswith("(appendix-bench)=\n# Appendix: benchmarks")
    assert page.count("\n# ") == 1 and "\n## Sampler step" in page  # one title; sections one level down


def test_cross_check_agrees_with_diffusers_on_a_small_batch():
    pytest.importorskip("diffusers")
    crosscheck = _module("crosscheck")
    for schedule in ("linear", "squaredcos_cap_v2"):
        out = crosscheck.cross_check(schedule, steps=50, shape=(64, 2))
        assert out["index_shift"] == 1 and out["grids_match_with_shift_1"]
        assert out["agree"], out
        assert out["ddim_float64_our_tables"] < 1e-10
        assert out["ddim_float32_leading_spacing"] > 10 * out["ddim_float32"]  # another grid
