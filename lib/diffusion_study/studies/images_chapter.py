"""Chapter 5's logic: which models it judges, where they come from, and how their numbers become verdicts.

- `chapter_configs(...)`: {label: [config per seed]} of the store's kind (`evidence.digits_config`); with the
  store's sizes they are `evidence.CONFIGS` (+ `LONG_CONFIGS`), so the chapter loads instead of training.
- `obtain(config, store_dir)`: the stored model of a config (no training) or, if none is stored, one trained
  from scratch (`Run`); `None` for a config that may not be trained here (the long runs).
- `evaluate_runs`: the test bits/dim of every run, re-evaluated from its weights ({label: [S]}).
- `gates` / `combine_gates`: the adequacy gate of each label against the chapter's baselines, and of a part
  that rests on several labels.
- `curve_rows`, `plateau`: the training curves ([step, test bits/dim]) and the last 1000 steps' improvement.
- `bench_rounds`: seconds per optimizer step of several models, interleaved round by round (the cost ratio).
- `n1_parts`, `n3_parts`, `n2_parts`, `n5_parts`, `n8_parts`: the parts of each claim (ledger rows).
- `headline_rows`, `provenance_rows`: the chapter's tables.

Shapes: per-seed values [S] (one per seed, seeds paired across labels); curves [[step, bits/dim], ...].
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
import torch

from diffusion_study.core.objectives import DiscretizedGaussianDecoder
from diffusion_study.eval import verdicts as rules
from diffusion_study.nets.classifiers import frechet_distance as frechet
from diffusion_study.eval.adequacy import adequate, gated
from diffusion_study.eval.stats import mean_interval
from diffusion_study.studies import evidence, ndm_images
from diffusion_study.training import store
from diffusion_study.training.loop import train

DDPM, NDM = "DDPM, T = 1000", "NDM, T = 1000"
DDPM_FEW, NDM_FEW = "DDPM, T = 10", "NDM, T = 10"
SCALAR, WIDE = "NDM with scalar F, T = 1000", "wider DDPM, T = 1000"
DDPM_LONG, NDM_LONG = "DDPM, T = 1000, long", "NDM, T = 1000, long"
PAPER_COST = {"parameters": 2.0, "time": 2.3}  # the paper's NDM / DDPM parameters and its reviewers' training time


def chapter_configs(*, steps: int, batch_size: int, base: int, seeds, lr: float = 2e-3,
                    controls: bool = True, long_factor: int = 3) -> dict[str, list[dict]]:
    """{label: [config per seed]}: DDPM and NDM at T = 1000 and T = 10 (the paper's few-step experiment); with
    `controls` the scalar-F NDM and a wider DDPM (base x 3/2: at least NDM's parameters) at T = 1000; the long
    runs (long_factor x steps) at T = 1000. At the store's sizes these are `evidence.CONFIGS` + `LONG_CONFIGS`."""
    def cfgs(kind, T, n=steps, width=base):
        return [evidence.digits_config(kind, T, n, base=width, batch_size=batch_size, lr=lr, seed=s) for s in seeds]

    out = {DDPM: cfgs("ddpm", 1000), NDM: cfgs("ndm", 1000), DDPM_FEW: cfgs("ddpm", 10), NDM_FEW: cfgs("ndm", 10)}
    if controls:
        out[SCALAR] = cfgs("ndm-scalar", 1000)
        out[WIDE] = cfgs("ddpm", 1000, width=base * 3 // 2)
    out[DDPM_LONG] = cfgs("ddpm", 1000, long_factor * steps)
    out[NDM_LONG] = cfgs("ndm", 1000, long_factor * steps)
    return out


class Run(NamedTuple):
    """One model of the chapter: the EMA model, its training curve [[step, test bits/dim]], its store record
    (None when trained here), the training's wall time in s and where it came from ('stored' or 'trained')."""

    model: torch.nn.Module
    curve: list
    record: dict | None
    seconds: float
    source: str


def obtain(config: dict, store_dir=evidence.STORE, *, may_train: bool = True, curve_points: int = 4) -> Run | None:
    """The stored model of `config` (weights checked against their sha256), or, when none is stored and
    `may_train`, the model trained from scratch on the config's bound (curve at `curve_points` even steps);
    None when not stored and not `may_train`."""
    record = store.find(store_dir, config)
    if record is not None:
        return Run(evidence.load_model(record), record["results"].get("curve", []), record, record["provenance"]["wall_time_s"],
                   "stored")
    if not may_train:
        return None
    model, schedule, data = evidence.build(config)
    loss = ndm_images.bound_loss(schedule.grid(config["T"]), DiscretizedGaussianDecoder(data.levels))
    curve, every = [], max(1, config["steps"] // curve_points)

    def record_curve(step, net, ema):
        curve.append([step, evidence.evaluate(ema, config, schedule, data)["bits_per_dim"]])

    res = train(model, loss, data.train, steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"],
                ema_decay=config["ema_decay"], seed=config["seed"], progress=False, callback=record_curve,
                callback_every=every)
    return Run(res.ema.eval(), curve, None, res.seconds, "trained")


def evaluate_runs(runs: dict[str, list[Run | None]], configs: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    """{label: [S] test bits/dim} re-evaluated from the weights on the config's bound (fixed generator); labels
    with a missing run are left out."""
    out = {}
    for label, rs in runs.items():
        if all(r is not None for r in rs):
            out[label] = np.array([evidence.evaluate(r.model, c)["bits_per_dim"] for r, c in zip(rs, configs[label])])
    return out


def gates(bpd: dict[str, np.ndarray], baselines: dict[str, float]) -> dict[str, tuple[bool, str]]:
    """{label: (passed, reason)}: every seed of the label below every baseline (`eval.adequacy.adequate`)."""
    return {label: adequate(v, baselines, name=label, unit="bits/dim") for label, v in bpd.items()}


def combine_gates(gate_of: dict[str, tuple[bool, str]], labels) -> tuple[bool, str]:
    """The gate of a part resting on several labels: passed when all passed; the failed ones' reasons (or all
    reasons when all passed). A label without a gate (not stored) fails with that reason."""
    found = [gate_of.get(label, (False, f"{label} not stored")) for label in labels]
    failed = [why for ok, why in found if not ok]
    return (not failed, "; ".join(failed or [why for _, why in found]))


# ---------------------------------------------------------------------------------------
# Training curves and cost
# ---------------------------------------------------------------------------------------


def at_step(curve, step: float) -> float:
    """Test bits/dim of a curve [[step, bits/dim], ...] at `step`, linear between its points; nan before its first
    point or after its last."""
    c = np.asarray(curve, dtype=float).reshape(-1, 2)
    if len(c) == 0 or step < c[0, 0] or step > c[-1, 0]:
        return math.nan
    return float(np.interp(step, c[:, 0], c[:, 1]))


def plateau(curve, window: int = 1000) -> float:
    """How much the last `window` steps improved the test bits/dim (bits/dim per `window` steps, positive =
    still improving); nan when the curve is shorter than the window."""
    c = np.asarray(curve, dtype=float).reshape(-1, 2)
    if len(c) == 0:
        return math.nan
    before = at_step(c, c[-1, 0] - window)
    return before - float(c[-1, 1])


def bench_rounds(configs: dict[str, dict], *, rounds: int = 5, steps: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Seconds per optimizer step of each config's model (its bound, batch and learning rate), measured in
    interleaved rounds (each round times every model, in an order rotated by round, after one untimed step), so
    a change of the machine's load hits all models alike: {label: [rounds] s/step}."""
    setups = {}
    for label, config in configs.items():
        model, schedule, data = evidence.build(config)
        loss = ndm_images.bound_loss(schedule.grid(config["T"]), DiscretizedGaussianDecoder(data.levels))
        setups[label] = (model.train(), loss, data.train, config, torch.optim.Adam(model.parameters(), lr=config["lr"]))
    gen = torch.Generator().manual_seed(seed)
    out = {label: [] for label in configs}
    labels = list(configs)

    def step(label):
        model, loss, x, config, opt = setups[label]
        batch = x[torch.randint(len(x), (config["batch_size"],), generator=gen)]
        value = loss(model, batch, gen).mean()
        opt.zero_grad()
        value.backward()
        opt.step()

    for label in labels:
        step(label)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            t0 = time.perf_counter()
            for _ in range(steps):
                step(label)
            out[label].append((time.perf_counter() - t0) / steps)
    return {label: np.array(v) for label, v in out.items()}


# ---------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------


def _missing(setting: str, why: str) -> dict:
    return rules.part(setting, rules.NOT_TESTABLE, why)


def margin_family(values: dict[str, Any], margins: dict[str, float], *, direction: str = "below", unit: str = "",
                  fmt: str = ".3f") -> list[dict]:
    """Holm-corrected parts {setting: per-seed values} each against its own margin (`decide_family` on
    values - margin, support 0): the ledger rows with the parts' own intervals and minimum detectable effects.
    A setting whose values are None is "not testable here"."""
    live = {k: np.asarray(v, dtype=float) for k, v in values.items() if v is not None}
    classes = dict(zip(live, rules.decide_family([rules.estimate(v - margins[k]) for k, v in live.items()], 0.0,
                                                 direction=direction))) if live else {}
    return [rules.judge_values(k, live[k], margins[k], direction=direction, verdict=classes[k], unit=unit, fmt=fmt)
            if k in live else _missing(k, "models not available here (not stored, or not run at these sizes)") for k in values]


def gate_parts(parts: list[dict], gate_for: dict[str, tuple[bool, str]]) -> list[dict]:
    """Each part's verdict through its gate (`gate_for[setting]`; no entry: no gate): "inadequate model" when the
    gate failed (the effect says so; the chapter's table of gates gives the numbers); a part that is "not
    testable here" stays so."""
    out = []
    for p in parts:
        g = gate_for.get(p["setting"], (True, ""))
        if p["verdict"] == rules.NOT_TESTABLE or g[0]:
            out.append(p)
        else:
            out.append({**p, "verdict": gated(p["verdict"], g), "effect": f"{p['effect']} (a model failed the gate)"})
    return out


def n1_parts(bpd: dict[str, np.ndarray], gate_of: dict, delta: float, *, matched: dict[str, np.ndarray] | None = None,
             steps: int = 4000, long_steps: int = 12000) -> list[dict]:
    """N1 (NDM reaches a better likelihood than DDPM): NDM - DDPM bits/dim per seed below -delta, one part per
    bound (T = 10, T = 1000, T = 1000 at the long budget) in one Holm family; then NDM at DDPM's wall time
    (`matched`: {bound label: [S] differences}, None = not testable) and the controls (NDM against the scalar-F
    NDM and against the wider DDPM), a second family. Each part gated on the models it compares."""
    diff = lambda a, b: bpd[a] - bpd[b] if a in bpd and b in bpd else None  # noqa: E731
    main = {f"T = 10, {steps} steps": (NDM_FEW, DDPM_FEW), f"T = 1000, {steps} steps": (NDM, DDPM),
            f"T = 1000, {long_steps} steps": (NDM_LONG, DDPM_LONG)}
    parts = margin_family({k: diff(*ab) for k, ab in main.items()}, {k: -delta for k in main}, unit="bits/dim")
    ctrl = {"against the scalar-F NDM (a learned schedule)": (NDM, SCALAR),
            "against the wider DDPM (more parameters)": (NDM, WIDE)}
    more = {**{f"matched wall time, {k}": v for k, v in (matched or {}).items()}, **{k: diff(*ab) for k, ab in ctrl.items()}}
    parts += margin_family(more, {k: -delta for k in more}, unit="bits/dim") if more else []
    gate_for = {k: combine_gates(gate_of, ab) for k, ab in {**main, **ctrl}.items()}
    gate_for.update({f"matched wall time, {k}": combine_gates(gate_of, ab) for k, ab in main.items()})
    return gate_parts(parts, gate_for)


def matched_time(bpd: dict[str, np.ndarray], runs: dict[str, list[Run]], ratio: dict[str, float],
                 steps: int) -> dict[str, np.ndarray | None]:
    """NDM at DDPM's wall time: {bound: [S] NDM bits/dim on its curve at steps / ratio (the cost ratio per step
    measured in the bench) minus DDPM's at `steps`}; None where a curve does not reach that step."""
    out = {}
    for bound, (n, d) in {f"T = 10, {steps} steps": (NDM_FEW, DDPM_FEW), f"T = 1000, {steps} steps": (NDM, DDPM)}.items():
        key = "T = 10" if n == NDM_FEW else "T = 1000"
        at = np.array([at_step(r.curve, steps / ratio[key]) for r in runs.get(n, [])])
        out[bound] = at - bpd[d] if d in bpd and at.size and np.isfinite(at).all() else None
    return out


def n3_parts(bpd: dict[str, np.ndarray], log_fd: dict[str, np.ndarray], gate_of: dict, delta: float,
             ratio: float) -> list[dict]:
    """N3 (NDM does better with few steps), one Holm family on the T = 10 models: the bound (NDM - DDPM bits/dim
    below -delta) and the sample quality on their 10-step grid (log FD ratio NDM / DDPM below -log(1 + ratio))."""
    values = {"T = 10 bound (bits/dim)": bpd[NDM_FEW] - bpd[DDPM_FEW] if NDM_FEW in bpd and DDPM_FEW in bpd else None,
              "T = 10 samples, log Frechet ratio": log_fd.get("T = 10")}
    margins = {"T = 10 bound (bits/dim)": -delta, "T = 10 samples, log Frechet ratio": -math.log1p(ratio)}
    g = combine_gates(gate_of, (NDM_FEW, DDPM_FEW))
    parts = margin_family(values, margins)
    for p in parts:
        if "samples" in p["setting"] and "margin" in p:
            p["margin"] = f"< −log(1 + {ratio:g}) = −{math.log1p(ratio):.3f}"
    return gate_parts(parts, {k: g for k in values})


def n2_parts(log_fd: dict[str, np.ndarray], gate_of: dict, ratio: float) -> list[dict]:
    """N2 (sample quality comparable to DDPM): two-sided equivalence of log(FD NDM / FD DDPM) per seed within
    +-log(1 + ratio), for the T = 1000 and the T = 10 models."""
    pairs = {"T = 1000": (NDM, DDPM), "T = 10": (NDM_FEW, DDPM_FEW)}
    margin = f"within ±log(1 + {ratio:g}) = ±{math.log1p(ratio):.3f} (equivalence, 90% interval)"
    parts = [{**rules.judge_equivalence(f"{k}, log Frechet ratio", log_fd[k], math.log1p(ratio)), "margin": margin}
             if k in log_fd else _missing(f"{k}, log Frechet ratio", "no samples") for k in pairs]
    return gate_parts(parts, {f"{k}, log Frechet ratio": combine_gates(gate_of, ab) for k, ab in pairs.items()})


def n5_parts(width: dict[str, np.ndarray], gate_of: dict, thr: float) -> list[dict]:
    """N5 (F simplifies the images: thicker strokes): the stroke-width ratio F(x, 0.5) / x per seed above 1 + thr
    for each NDM ({label: [S]}), and NDM's ratio minus the scalar-F control's above thr (a learned schedule alone
    cannot widen strokes: its ratio is 1)."""
    settings = {f"{k}: stroke width ratio": width[k] for k in (NDM_FEW, NDM) if k in width}
    margins = {k: 1 + thr for k in settings}
    if SCALAR in width and NDM in width:
        settings["NDM minus scalar-F NDM, width ratio"] = width[NDM] - width[SCALAR]
        margins["NDM minus scalar-F NDM, width ratio"] = thr
    parts = margin_family(settings, margins, direction="above")
    gate_for = {f"{NDM_FEW}: stroke width ratio": combine_gates(gate_of, [NDM_FEW]),
                f"{NDM}: stroke width ratio": combine_gates(gate_of, [NDM]),
                "NDM minus scalar-F NDM, width ratio": combine_gates(gate_of, [NDM, SCALAR])}
    return gate_parts(parts, gate_for)


def n8_parts(param_ratio: float, time_ratios: np.ndarray, tol: float) -> list[dict]:
    """N8 (about 2x parameters, about 2.3x training time): the parameter ratio within a factor 1 + tol of 2
    (counted, no interval), and the bench's per-round NDM / DDPM time ratios: equivalence of log(ratio / 2.3)
    within +-log(1 + tol)."""
    off = abs(math.log(param_ratio / PAPER_COST["parameters"]))
    params = rules.part("parameters (counted)", rules.SUPPORTED if off < math.log1p(tol) else rules.CONTRADICTED,
                        f"{param_ratio:.2f}x", margin=f"within x{1 + tol:g} of 2")
    logs = np.log(np.asarray(time_ratios, dtype=float) / PAPER_COST["time"])
    t = rules.judge_equivalence("time per step (bench rounds), log(ratio / 2.3)", logs, math.log1p(tol))
    t["margin"] = f"within ±log(1 + {tol:g}) = ±{math.log1p(tol):.3f} (equivalence, 90% interval)"
    return [params, t]


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def direction_text(values, fmt: str = ".3f") -> str:
    """'mean [low, high], NDM closer' (interval below 0), 'NDM farther' (above 0) or 'no clear direction' (the
    interval holds 0) for per-seed log-ratios NDM / DDPM of a distance."""
    iv = mean_interval(values)
    side = "NDM closer" if iv.high < 0 else "NDM farther" if iv.low > 0 else "no clear direction"
    return f"{mean_text(values, fmt)}, {side}"


def per_seed(values, fmt: str = ".3f") -> str:
    """'v1, v2, v3' of per-seed values."""
    return ", ".join(format(float(v), fmt) for v in values)


def mean_text(values, fmt: str = ".3f") -> str:
    """'mean [low, high]' of the 95% t-interval over seeds."""
    iv = mean_interval(values)
    return f"{iv.mean:{fmt}} [{iv.low:{fmt}}, {iv.high:{fmt}}]"


def headline_rows(bpd: dict[str, np.ndarray], gate_of: dict, sources: dict[str, str]) -> list[list[str]]:
    """One row per label: label, where its models come from, per-seed bits/dim, mean [95% interval], gate."""
    return [[label, sources.get(label, "?"), per_seed(v), mean_text(v), "passed" if gate_of[label][0] else "failed"]
            for label, v in bpd.items()]


def provenance_rows(runs: dict[str, list[Run | None]]) -> list[list]:
    """One row per stored model: label and seed, command, the commit it started from, machine, date, steps,
    training wall time in hours."""
    rows = []
    for label, rs in runs.items():
        for r in rs:
            if r is None or r.record is None:
                continue
            p, c = r.record["provenance"], r.record["config"]
            rows.append([f"{label}, seed {c['seed']}", p["command"], (p.get("commit_at_start") or p["commit"] or "?")[:10],
                         p["machine"], p["created"][:10], f"{p['steps']:,}", f"{p['wall_time_s'] / 3600:.2f}"])
    return rows


# ---------------------------------------------------------------------------------------
# Measurements the notebook calls
# ---------------------------------------------------------------------------------------


def plateau_rows(curves: dict[str, list], thr: float, window: int = 1000) -> list[list]:
    """One row per label: label, the last `window` steps' improvement per seed (bits/dim), and "levelled off"
    when every seed improved by less than `thr`, "still improving" when any improved by more, "too short"
    when a curve is shorter than the window."""
    rows = []
    for label, cs in curves.items():
        gain = np.array([plateau(c, window) for c in cs])
        state = ("too short" if not np.isfinite(gain).all() else "levelled off" if (gain < thr).all()
                 else "still improving")
        rows.append([label, per_seed(gain), state])
    return rows


def cost_ratios(seconds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"T = 1000", "T = 10": [rounds] NDM / DDPM seconds per step, round by round} from `bench_rounds`."""
    return {"T = 1000": seconds[NDM] / seconds[DDPM], "T = 10": seconds[NDM_FEW] / seconds[DDPM_FEW]}


@torch.no_grad()
def sample_fd(runs: dict[str, list[Run]], grids: dict[str, torch.Tensor], features, ref: torch.Tensor,
              start: torch.Tensor, levels: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Frechet distance (`nets.classifiers.frechet_distance`) of each model's samples to the reference features
    ref [M, F], {label: [S]}, for the labels of `grids` ({label: sampling grid}), all from the same starting
    noise start [N, C, H, W]; and the first seed's first 10 samples {label: [10, C, H, W]}."""
    from diffusion_study.nets.classifiers import frechet_distance

    fd, tiles = {}, {}
    for label, grid in grids.items():
        vals = []
        for i, r in enumerate(runs[label]):
            x = ndm_images.final_sample(r.model, start, grid, levels, generator=torch.Generator().manual_seed(seed + i))
            vals.append(frechet_distance(features(x), ref))
            if i == 0:
                tiles[label] = x[:10]
        fd[label] = np.array(vals)
    return fd, tiles


def transform_table(runs: dict[str, list[Run]], labels, x: torch.Tensor, times) -> dict[str, dict[str, np.ndarray]]:
    """{label: {measure: [S, len(times)] ratio of measure(F(x, t)) to measure(x)}} (`ndm_images.transform_measures`)."""
    out = {}
    for label in labels:
        per = [ndm_images.transform_measures(r.model, x, times) for r in runs[label]]
        out[label] = {name: np.stack([p[name].cpu().numpy() for p in per]) for name in ndm_images.MEASURES}
    return out


def effect_line(parts: list[dict]) -> str:
    """A claim's effect text from its parts: 'setting: effect (verdict)', '; '-joined."""
    return "; ".join(f"{p['setting']}: {p['effect']} ({p['verdict']})" for p in parts)


def claim(parts: list[dict], evidence: str, conditions: str, sensitivity: dict) -> dict:
    """The claim record `book.results.write_result` takes: the verdict is `combine` of the parts (as the ledger
    combines them), the effect names each part and the verdict at half, once and twice the threshold."""
    sens = ", ".join(f"{k}: {v}" for k, v in sensitivity.items())
    return {"verdict": rules.combine(p["verdict"] for p in parts), "evidence": evidence, "conditions": conditions,
            "parts": parts, "effect": f"{effect_line(parts)}; threshold x0.5 / x1 / x2: {sens}"}


def parameter_count(model) -> int:
    """All parameters of x_hat and F (trainable or not: an EMA copy counts the same as the model it averages)."""
    return sum(p.numel() for part in (model.net, model.process) for p in part.parameters())


def stored_mnist(store_dir=evidence.STORE, configs=None) -> list[list[str]]:
    """Rows [model, test bits/dim re-evaluated, adequacy gate] of the reduced-MNIST models (`evidence.MNIST_CONFIGS`)
    that are stored, then the per-pixel histogram and mixture baselines of that data set; [] when none is stored
    (nothing is trained here, and no data set is loaded)."""
    configs = getattr(evidence, "MNIST_CONFIGS", []) if configs is None else configs
    found = [(c, r) for c in configs for r in [store.find(store_dir, c)] if r is not None]
    if not found:
        return []
    _, _, data = evidence.build(found[0][0])
    base = ndm_images.image_baselines(data.train, data.test, data.levels)
    rows = []
    for c, r in found:
        bpd = evidence.evaluate(evidence.load_model(r), c)["bits_per_dim"]
        rows.append([f"{c['kind'].upper()} ({c['dataset']}, seed {c['seed']})", f"{bpd:.3f}",
                     "passed" if adequate(bpd, base)[0] else "failed"])
    return rows + [[name, f"{v:.3f}", "—"] for name, v in base.items()]
