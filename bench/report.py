"""The targets of `make bench`, judged from the benchmarks' JSON files, as a markdown table.

`rows(results)` turns {benchmark name: its JSON} into one row per target (measured value, met /
missed / not run); `markdown(...)` renders them with the detail tables; `appendix_page(...)` wraps
that into the book's appendix page. Pure functions of the JSON: tests/test_bench.py runs them on
fake results.
"""

from __future__ import annotations

from diffusion_study.book.results import code_state

COMMANDS = {
    "sampler_step": ".venv/bin/python bench/sampler_step.py",
    "train_throughput": ".venv/bin/python bench/train_throughput.py",
    "train_throughput_cuda": "python bench/train_throughput.py --device cuda",
    "ensemble_vmap": ".venv/bin/python bench/ensemble_vmap.py",
    "likelihood_is": ".venv/bin/python bench/likelihood_is.py",
    "book_time": ".venv/bin/python bench/book_time.py",
}
BUDGET_S = 15 * 60


def _row(item, target, measured, ok, source, note=""):
    status = "not run" if ok is None else ("met" if ok else "missed")
    return {"item": item, "target": target, "measured": measured, "status": status, "source": source,
            "command": COMMANDS.get(source, "make bench"), "note": note}


def _missing(item, target, source, why):
    return _row(item, target, "-", None, source, why)


def _paired(ratios: dict, key: str) -> float:
    return ratios[key]["paired"]


def rows(results: dict, wall_s: float | None = None, failures: dict | None = None) -> list[dict]:
    failures = failures or {}
    out = []
    why = lambda name: failures.get(name, f"no bench/results/{name}.json")  # noqa: E731

    # 1. sampler overhead per step
    ss = results.get("sampler_step")
    for kind, bound, stretch in (("ddim", 0.5, 0.3), ("ddpm", 0.5, None)):
        target = f"{kind.upper()} step time <= {bound}x diffusers'" + (f" (stretch {stretch}x)" if stretch else "")
        if ss is None:
            out.append(_missing(f"1. sampler overhead, {kind.upper()}", target, "sampler_step", why("sampler_step")))
            continue
        vals = {part: _paired(ss[part]["ratios"], f"ours_{kind} / diffusers_{kind}") for part in ("toy", "image")}
        measured = (f"{vals['toy']:.2f}x on [10000, 2], {vals['image']:.2f}x on [64, 3, 32, 32] "
                    "(paired, 1 thread)")
        note = ""
        if stretch:
            note = "stretch " + ("met" if max(vals.values()) <= stretch else "missed")
        if kind == "ddpm":
            if "noise_floor_ratio" in ss["image"]:
                note = ("the noise draw alone (torch.randn of z's shape) is " + ", ".join(
                    f"{ss[p]['noise_floor_ratio']:.2f}x" for p in ("toy", "image")) + " diffusers' step (toy, image): "
                    "a floor for any sampler that draws the same noise; without it this library's step is "
                    + ", ".join(f"{ss[p]['ddpm_without_noise_ratio']:.2f}x" for p in ("toy", "image")) + " diffusers'")
        out.append(_row(f"1. sampler overhead, {kind.upper()}", target, measured,
                        max(vals.values()) <= bound, "sampler_step", note))

    # 2. training throughput
    tt = results.get("train_throughput")
    target = "CPU: samples/s >= 1.2x diffusers' (add_noise + UNet2DModel of matched size), same batch"
    if tt is None:
        out.append(_missing("2. training throughput, CPU", target, "train_throughput", why("train_throughput")))
    else:
        parts, ok, same = [], True, []
        for run in tt["runs"]:
            r = run["ratios_of_time"]
            if "lib / diffusers" not in r:
                ok = None
                parts.append(f"{run['size']}: diffusers unavailable")
                continue
            speed = 1 / _paired(r, "lib / diffusers")
            ok = ok and speed >= 1.2
            parts.append(f"{run['size']} (batch {run['shape'][0]}): {speed:.2f}x")
            if "lib / diffusers_same_net" in r:
                same.append(f"{run['size']} {1 / _paired(r, 'lib / diffusers_same_net'):.2f}x")
            if "lib / bare" in r:
                same.append(f"vs bare loop {1 / _paired(r, 'lib / bare'):.2f}x")
        note = ("with this library's U-Net inside diffusers' loop: " + ", ".join(same)) if same else ""
        out.append(_row("2. training throughput, CPU", target, "; ".join(parts), ok, "train_throughput", note))
    tc = results.get("train_throughput_cuda")
    target = "CUDA: this library's loop within 10% of a bare loop (bf16 and compile on/off)"
    if tc is None:
        out.append(_missing("2. training throughput, GPU", target, "train_throughput_cuda",
                            failures.get("train_throughput_cuda",
                                         "prepared, not run: no CUDA device where make bench ran")))
    else:
        parts, ok = [], True
        for run in tc["runs"]:
            ratio = _paired(run["ratios_of_time"], "lib / bare")
            ok = ok and ratio <= 1.10
            parts.append(f"{run['size']} bf16={'on' if run['bf16'] else 'off'} compile="
                         f"{'on' if run['compile'] else 'off'}: {ratio:.2f}")
        out.append(_row("2. training throughput, GPU", target, "time lib / bare: " + "; ".join(parts), ok,
                        "train_throughput_cuda", tc.get("device", "")))

    # 3. convention cross-check
    target = "DDIM and DDPM samples equal diffusers' to float32 tolerance ('linear', 'squaredcos_cap_v2')"
    if ss is None:
        out.append(_missing("3. convention cross-check", target, "sampler_step", why("sampler_step")))
    else:
        cc = ss["cross_check"]
        measured = "; ".join(f"{k}: DDIM {v['ddim_float32']:.1e}, DDPM {v['ddpm_float32']:.1e}" for k, v in cc.items())
        tol = min(v["tolerance"] for v in cc.values())
        out.append(_row("3. convention cross-check", target, measured + f" (max abs diff; tolerance {tol:g})",
                        all(v["agree"] for v in cc.values()), "sampler_step",
                        "index shift 1 (diffusers' timestep k = our step k + 1), 'trailing' spacing, "
                        "set_alpha_to_one=True, DDPM variance 'fixed_small'"))

    # 4. ensembles
    ev = results.get("ensemble_vmap")
    target = "ensemble >= 25x faster than the sequential loop, and no slower than torch.func vmap"
    if ev is None:
        out.append(_missing("4. toy-grid ensembles", target, "ensemble_vmap", why("ensemble_vmap")))
    else:
        loop, vmap = _paired(ev["speedups"], "loop / ensemble"), _paired(ev["speedups"], "vmap / ensemble")
        p = ev["parameters"]
        out.append(_row("4. toy-grid ensembles", target,
                        f"{loop:.1f}x faster than the loop, {vmap:.2f}x faster than vmap "
                        f"(G = {p['G']}, {p['steps']} steps)", loop >= 25 and vmap >= 1, "ensemble_vmap"))

    # 5. likelihood
    li = results.get("likelihood_is")
    target = "importance-sampled bits/dim within 1 standard error of the full T-step bound at <= 10% of its cost"
    if li is None:
        out.append(_missing("5. likelihood estimator", target, "likelihood_is", why("likelihood_is")))
    else:
        est = dict(sorted(((k, v) for k, v in li["estimators"].items() if k != "full"), key=lambda kv: int(kv[0][3:])))
        parts = [f"K={k[3:]}: cost {v['cost_ratio_paired']:.3f}, abs diff / SE median {v['abs_diff_over_stderr_median']:.2f} "
                 f"({v['within_1_stderr_rounds']}/{len(v['abs_diff_over_stderr'])} rounds within 1 SE)"
                 for k, v in est.items()]
        ok = any(v["cost_ratio_paired"] <= 0.10 and v["abs_diff_over_stderr_median"] <= 1 for v in est.values())
        full = li["estimators"]["full"]
        se_ratio = {k: sum(v["stderr"]) / sum(full["stderr"]) for k, v in est.items()}
        out.append(_row("5. likelihood estimator", target, "; ".join(parts), ok, "likelihood_is",
                        f"full bound {full['bits_per_dim'][0]:.3f} +- {full['stderr'][0]:.3f} bits/dim; the uniform "
                        "proposal's standard error is " + ", ".join(f"{v:.0f}x" for v in se_ratio.values())
                        + " the full bound's (K = " + ", ".join(k[3:] for k in se_ratio) + ")"))

    # 6. budget
    target = "make bench finishes in under 15 minutes on the 2-core machine"
    if wall_s is None:
        out.append(_row("6. make bench wall time", target, "-", None, "summary"))
    else:
        out.append(_row("6. make bench wall time", target, f"{wall_s / 60:.1f} min (benchmarks, without pip)",
                        wall_s < BUDGET_S, "summary"))
    return out


def _cell(text) -> str:
    """Text for a markdown table cell: a '|' would end the cell."""
    return str(text).replace("|", "\\|")


def _table(header: list[str], body: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


def details(results: dict) -> list[str]:
    lines = []
    ss = results.get("sampler_step")
    if ss:
        lines += ["", "### Sampler step (CPU, 1 thread, 50-step grid, eps = 0.1 z)", ""]
        body = []
        for part in ("toy", "image"):
            med = ss[part]["us_per_step_median"]
            for k in ("ddim", "ddpm"):
                body.append([f"{ss[part]['shape']}", k.upper(), f"{med[f'ours_{k}']:.1f}", f"{med[f'diffusers_{k}']:.1f}",
                             f"{_paired(ss[part]['ratios'], f'ours_{k} / diffusers_{k}'):.2f}"])
        lines += _table(["shape", "sampler", "this library, us/step", "diffusers, us/step", "paired ratio"], body)
        u = ss.get("unet")
        if u:
            m = u["ms_per_step_median"]
            lines += ["", f"With a small U-Net ({u['unet']['parameters']:,} parameters) on [64, 3, 32, 32], "
                      f"{u['threads']} threads, {u['steps']}-step grid: ms per step (network included), "
                      f"network alone {m['network_only']:.1f} ms.", ""]
            lines += _table(["sampler", "this library", "diffusers", "paired ratio"],
                            [[k.upper(), f"{m[f'ours_{k}']:.1f}", f"{m[f'diffusers_{k}']:.1f}",
                              f"{_paired(u['ratios'], f'ours_{k} / diffusers_{k}'):.2f}"] for k in ("ddim", "ddpm")])
        lines += ["", "Convention cross-check (max abs difference of the 50-step samples, values up to ~2):", ""]
        body = []
        for k, v in ss["cross_check"].items():
            err = (f"{v['ddim_float32_error_ours']:.2g} / {v['ddim_float32_error_diffusers']:.2g}"
                   if "ddim_float32_error_ours" in v else "-")
            body.append([k, f"{v['ours']!r}", v["index_shift"], f"{v['ddim_float32']:.2g}", f"{v['ddpm_float32']:.2g}",
                         f"{v['ddim_float64_our_tables']:.2g}", err, f"{v['ddim_float32_leading_spacing']:.2g}"])
        lines += _table(["diffusers beta_schedule", "ours", "index shift", "DDIM float32", "DDPM float32",
                         "DDIM float64, our tables", "DDIM float32 error vs float64: ours / diffusers'",
                         "DDIM, 'leading' spacing"], body)
    for name in ("train_throughput", "train_throughput_cuda"):
        tt = results.get(name)
        if not tt:
            continue
        lines += ["", f"### Training throughput ({tt.get('device', 'cpu')}, {tt.get('threads')} threads; samples/s, "
                  "median of interleaved rounds)", ""]
        variants = sorted({v for run in tt["runs"] for v in run["samples_per_s_median"]},
                          key=["lib", "bare", "diffusers", "diffusers_same_net", "ddpm_pytorch",
                               "ddpm_pytorch_same_net"].index)
        body = []
        for run in tt["runs"]:
            s = run["samples_per_s_median"]
            mem = run.get("peak_memory_MiB")
            body.append([f"{run['size']} {run['shape']}", "on" if run["bf16"] else "off",
                         "on" if run["compile"] else "off"]
                        + [f"{s[v]:.0f}" + (f" ({mem[v]:.0f} MiB)" if mem else "") if v in s else "-" for v in variants])
        lines += _table(["size", "bf16", "compile"] + variants, body)
        nets = {k: v for run in tt["runs"][:1] for k, v in run["networks"].items()}
        lines += ["", "Networks (first size): " + "; ".join(f"{k}: {v['network']} ({v['parameters']:,} parameters)"
                                                            for k, v in nets.items()) + "."]
        if tt.get("unavailable"):
            lines += ["", "Unavailable: " + "; ".join(f"{k}: {v}" for k, v in tt["unavailable"].items())]
    ev = results.get("ensemble_vmap")
    if ev:
        lines += ["", f"### Toy-grid ensembles (G = {ev['parameters']['G']}, {ev['parameters']['steps']} Adam steps "
                  f"each, batch 64, {ev['parameters']['threads']} thread)", ""]
        lines += _table(["variant", "seconds (median)", "seconds (min)"],
                        [[k, f"{v['median_s']:.2f}", f"{v['min_s']:.2f}"] for k, v in ev["results"].items()])
    li = results.get("likelihood_is")
    if li:
        p = li["parameters"]
        lines += ["", f"### Likelihood ({p['n_test']} test digits, {p['network']['parameters']:,}-parameter MLP, "
                  f"T = {p['T']})", ""]
        body = []
        for k, v in sorted(li["estimators"].items(), key=lambda kv: -1 if kv[0] == "full" else int(kv[0][3:])):
            body.append([k, f"{v['time']['median_s']:.2f}", ", ".join(f"{b:.4f}" for b in v["bits_per_dim"]),
                         ", ".join(f"{s:.4f}" for s in v["stderr"]),
                         "" if k == "full" else f"{v['cost_ratio_paired']:.3f}",
                         "" if k == "full" else ", ".join(f"{z:.2f}" for z in v["abs_diff_over_stderr"])])
        lines += _table(["estimator", "seconds (median)", "bits/dim per round", "standard error",
                         "cost / full (paired)", "abs diff / SE"], body)
    bt = results.get("book_time")
    if bt:
        lines += ["", f"### Whole book at the default profile ({bt['mode']})", ""]
        body = [[k, "-" if c["seconds"] is None else f"{c['seconds']:.0f}", code_state(c) if "git_dirty" in c else
                 (f"`{c['git_commit'][:7]}` (tree state not recorded)" if c.get("git_commit") else "no git commit recorded"),
                 c.get("time_utc") or "", c.get("device") or ""] for k, c in bt["chapters"].items()]
        total = bt.get("total_seconds")
        body.append(["total", "-" if total is None else f"{total:.0f}", "", "", ""])
        lines += _table(["chapter", "seconds", "code (commit, tree)", "run at (UTC)", "device"], body)
    lines += provenance(results)
    return lines


def provenance(results: dict) -> list[str]:
    """One row per benchmark result: the code it was made with, from its own JSON's provenance in the
    chapters' words (`diffusion_study.book.results.code_state`: the commit, and whether the tree had
    uncommitted changes and to how many files), when and where it ran."""
    body = []
    for name, result in sorted(results.items()):
        prov = result.get("provenance") or {}
        dirty = prov.get("git_dirty_files") or []
        files = ", ".join(f"`{f}`" for f in dirty[:4]) + (f" and {len(dirty) - 4} more" if len(dirty) > 4 else "")
        body.append([f"`bench/results/{name}.json`", code_state(prov), prov.get("time_utc") or "not recorded",
                     prov.get("device") or "not recorded", files or "-"])
    if not body:
        return []
    return ["", "### Provenance of each result", "",
            "Each result names the code it was measured with (its JSON's `provenance`); a result made from a tree "
            "with uncommitted changes says so, and lists the first of the changed files.", ""] + _table(
        ["result", "code (commit, tree)", "run at (UTC)", "device", "uncommitted changes"], body)


def markdown(results: dict, target_rows: list[dict], meta: dict, heading: str = "#") -> str:
    prov = meta.get("provenance") or {}
    lines = [f"{heading} Benchmarks: `make bench`", "",
             f"Run at {prov.get('time_utc', '?')} on {prov.get('device', '?')} ({prov.get('platform', '?')}), "
             f"code {code_state(prov)}, "
             f"torch {prov.get('torch', '?')}, "
             + ", ".join(f"{k} {v}" for k, v in (meta.get("peers") or {}).items())
             + f"; load average {meta.get('load_average', '?')}. Medians of interleaved rounds; ratios are "
               "paired (the median over rounds of the per-round ratio) and come from the same run.", ""]
    lines += _table(["item", "target", "measured", "status", "note"],
                    [[_cell(r["item"]), _cell(r["target"]), _cell(r["measured"]), f"**{r['status']}**", _cell(r["note"])]
                     for r in target_rows])
    lines += ["", "Each row's JSON (parameters, every timing, provenance) is in `bench/results/`; its command: "
              + ", ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in target_rows)) + "."]
    sub = heading + "#"
    lines += [line.replace("### ", sub + " ", 1) if line.startswith("### ") else line for line in details(results)]
    return "\n".join(lines) + "\n"


def appendix_page(summary_md: str) -> str:
    body = summary_md.split("\n", 1)[1]  # the page has its own title
    return ("(appendix-bench)=\n# Appendix: benchmarks\n\n"
            "What this library's samplers, training loop, ensembles and likelihood estimators cost next to "
            "their peers (diffusers, denoising-diffusion-pytorch, `torch.func`), and how long the book takes "
            "to reproduce. `make bench` installs the peers (the optional dependency group `bench`, never "
            "needed by `make test`), runs every benchmark with a time budget and writes this page; "
            "`bench/README.md` describes each script.\n" + body.replace("\n### ", "\n## ").replace("\n#### ", "\n### "))
