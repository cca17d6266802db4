"""Chapter 2's verdict rules (claims K1-K6 of the toy study), as functions a test can reach.

Each rule takes per-seed measurements (plain lists or arrays, one value per seed) and the chapter's
thresholds (`book/thresholds.yml`, key 02_toy_study) scaled by a factor `f` (the threshold sensitivity
recomputes every verdict at f = 0.5 and 2), and returns (parts, verdict): `parts` are ledger rows
(`eval.verdicts.part`: setting, verdict, effect, 95 % interval, minimum detectable effect, margin), the
verdict one class for the claim. Energy distances are compared as log ratios (Welch over seeds on the
logarithms, `toy_grid.compare`), shown as factors.

Keys of the per-seed dicts: `ed[(process, schedule, target)]` energy distances of the DDIM cells;
`ed_by_sampler[(schedule, target, sampler)]` those of the stochastic process.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from diffusion_study.eval import verdicts as rules
from diffusion_study.studies.toy_grid import compare

K1_TARGETS = ("x0", "prev")  # the targets a noise-free network can have
K5_TARGETS = ("eps", "x0", "prev")  # noise sampling, whole-step, single-step


def logs(values) -> list[float]:
    """log of positive per-seed values (floored at 1e-12)."""
    return np.log(np.maximum(np.asarray(values, dtype=float), 1e-12)).tolist()


def _fmt_interval(low: float, high: float, fmt: str = ".3g") -> str:
    return f"[{format(low, fmt)}, {format(high, fmt)}]"


def ratio_part(setting: str, comp: dict, quantity: str, margin: str, *, sign: int = 1,
               verdict: str | None = None, note: str = "") -> dict:
    """A ledger part for a comparison of logarithms (`toy_grid.compare`): the effect as the factor
    exp(sign * diff), its interval as factors, the minimum detectable effect as a factor beyond the margin."""
    low, high = sorted((math.exp(sign * comp["low"]), math.exp(sign * comp["high"])))
    mde = f"×{math.exp(comp['mde']):.3g}" if math.isfinite(comp["mde"]) else "—"
    effect = f"{quantity} ×{math.exp(sign * comp['diff']):.3g}" + (f"; {note}" if note else "")
    return rules.part(setting, comp["verdict"] if verdict is None else verdict, effect, interval=(low, high),
                      mde=mde, margin=margin)


def baseline_gate(log_baseline, log_trivial) -> tuple[bool, str]:
    """Does a baseline work? Its geometric-mean energy distance over seeds must lie below that of the trivial
    model (a Gaussian with the data's mean and covariance, one value per draw): a configuration that does
    not beat the Gaussian fit has not learned the mixture and is no baseline (chapter 2, K1).
    Returns (works, the reason with both numbers)."""
    b, t = math.exp(float(np.mean(log_baseline))), math.exp(float(np.mean(log_trivial)))
    works = b < t
    return works, f"gate: baseline {b:.3f} {'beats' if works else 'does not beat'} the Gaussian fit {t:.3f}"


def k1(ed: dict, log_trivial, schedules, tau: float, f: float = 1.0) -> tuple[list[dict], str]:
    """K1, "a noise-free process does not cover the space": per (schedule, target) the noise-free energy
    distance exceeds the stochastic one by more than exp(f tau), judged only where the stochastic baseline
    works (`baseline_gate`; else "inadequate model"). Verdict: `combine` of the parts."""
    parts = []
    for s in schedules:
        for t in K1_TARGETS:
            nf, st = ed.get(("noise_free", s, t)), ed.get(("stochastic", s, t))
            if nf is None or st is None:
                continue
            comp = compare(logs(nf), logs(st), f * tau)
            works, why = baseline_gate(logs(st), log_trivial)
            parts.append(ratio_part(f"{s}/{t}", comp, "energy distance, noise-free / stochastic",
                                    f"> ×{math.exp(f * tau):.3g}", verdict=rules.gate(comp["verdict"], works), note=why))
    return parts, rules.combine(p["verdict"] for p in parts) if parts else rules.NOT_TESTABLE


def k2(ed: dict, recovery: dict, schedules, targets, tau_ratio: float, tau_recover: float,
       f: float = 1.0) -> tuple[list[dict], str]:
    """K2, "a deterministic invertible process can cover the space and recover the data exactly".

    cover: per (schedule, target), the pairing model's energy distance is at most exp(f tau_ratio) times the
    stochastic one's (Welch on logs); recover: per pairing configuration, the mean distance between a
    training point and its reconstruction, in units of the data's scale (`recovery[(schedule, target)]`,
    per seed), lies below f tau_recover. Each family is decided with Holm (`decide_family`); "can" is
    existential, so each half is `exists` over its family and the claim `combine`s the two halves."""
    cover = {f"cover {s}/{t}": compare(logs(ed[("stochastic", s, t)]), logs(ed[("pairing", s, t)]), -f * tau_ratio)
             for s in schedules for t in targets if ("stochastic", s, t) in ed and ("pairing", s, t) in ed}
    if not cover or not recovery:
        return [], rules.NOT_TESTABLE
    classes = rules.decide_family([c["estimate"] for c in cover.values()], -f * tau_ratio)
    parts = [ratio_part(k, c, "energy distance, pairing / stochastic", f"< ×{math.exp(f * tau_ratio):.3g} (Holm)",
                        sign=-1, verdict=v) for (k, c), v in zip(cover.items(), classes)]
    rec = rules.judge_family({f"recover {s}/{t}": v for (s, t), v in recovery.items()}, f * tau_recover,
                             direction="below", unit="× data scale")
    for p in rec:
        p["margin"] += " (Holm)"
    halves = [rules.exists(classes), rules.exists(p["verdict"] for p in rec)]
    return parts + rec, rules.combine(halves)


def k3(ed_by_sampler: dict, targets, samplers, tau: float, f: float = 1.0) -> tuple[list[dict], str]:
    """K3, "the cosine schedule outperforms the linear one": per (target, sampler) of the stochastic process the
    linear schedule's energy distance exceeds the cosine one's by more than exp(f tau). `combine`."""
    parts = []
    for t in targets:
        for m in samplers:
            lin, cos = ed_by_sampler.get(("linear", t, m)), ed_by_sampler.get(("cosine", t, m))
            if lin is not None and cos is not None:
                parts.append(ratio_part(f"{t}/{m}", compare(logs(lin), logs(cos), f * tau),
                                        "energy distance, linear / cosine", f"> ×{math.exp(f * tau):.3g}"))
    return parts, rules.combine(p["verdict"] for p in parts) if parts else rules.NOT_TESTABLE


def correlation_mde(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest rank correlation distinguishable from a margin with n pairs, approximately: on Fisher's
    z scale Spearman's rho has se ~ 1.03 / sqrt(n - 3) (Fieller et al. 1957), so the detectable distance is
    (z_{1 - alpha/2} + z_power) se, returned on the correlation scale (tanh); inf for n <= 3."""
    if n <= 3:
        return math.inf
    z = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * 1.03 / math.sqrt(n - 3)
    return float(math.tanh(z))


def k4(share: dict, score_error: dict, sample_ed: dict, rank_interval, tau_bayes: float, tau_rank: float,
       f: float = 1.0) -> tuple[list[dict], str]:
    """K4, "the network approximates the score, which makes sampling work", one pair of parts per target
    (pooling targets hides within-target effects):
    - "conditional mean": the per-run share ||x0_hat - E[x0|x_t]||^2 / ||x0_hat - x0||^2 (`share[target]`,
      one value per run: schedules x seeds) lies below f tau_bayes;
    - "score error ranks with sample error": Spearman's rho between the runs' score error and their energy
      distance, within the target, exceeds f tau_rank (`rank_interval(a, b) -> (rho, low, high)`).
    Verdict: `combine` of all parts."""
    parts = []
    for t in share:
        parts.append(rules.judge_values(f"{t}: conditional mean", share[t], f * tau_bayes, direction="below"))
        rho, low, high = rank_interval(score_error[t], sample_ed[t])
        parts.append(rules.part(f"{t}: score error ranks with sample error", rules.decide(low, high, f * tau_rank),
                                f"Spearman {rho:.2f} over {len(share[t])} runs", interval=(low, high),
                                mde=correlation_mde(len(share[t])), margin=f"> {f * tau_rank:g}"))
    return parts, rules.combine(p["verdict"] for p in parts) if parts else rules.NOT_TESTABLE


def k5(ed_by_sampler: dict, schedules, samplers, tau: float, f: float = 1.0) -> tuple[list[dict], str]:
    """K5, "the sampling method changes the results markedly": per (schedule, sampler), the worst of noise
    sampling (eps), whole-step (x0) and single-step (prev) has an energy distance more than exp(f tau) times the
    best one's. `combine`."""
    parts = []
    for s in schedules:
        for m in samplers:
            eds = {t: logs(ed_by_sampler[(s, t, m)]) for t in K5_TARGETS if (s, t, m) in ed_by_sampler}
            if len(eds) < 2:
                continue
            worst, best = max(eds, key=lambda t: np.mean(eds[t])), min(eds, key=lambda t: np.mean(eds[t]))
            parts.append(ratio_part(f"{s}/{m}: {worst} vs {best}", compare(eds[worst], eds[best], f * tau),
                                    "energy distance, worst / best target", f"> ×{math.exp(f * tau):.3g}"))
    return parts, rules.combine(p["verdict"] for p in parts) if parts else rules.NOT_TESTABLE


SIGNATURES = {  # name: (what the per-seed value is, direction of the signature)
    "collapse": ("log(samples' median nearest-neighbour distance / the data's)", "below"),
    "bias": ("corr(start, sample) − the exact denoiser's", "above"),
    "low": ("0.05 − samples' low-density share", "above"),
}


def signature_margin(name: str, tau: float) -> float:
    """The margin of a K6 signature at threshold tau: collapse is a shrink by more than the share tau, i.e.
    log(1 - tau) on the log-ratio scale; bias and low-density deficit are differences beyond tau."""
    return math.log(1 - tau) if name == "collapse" else tau


def signature_families(values: dict[str, dict], taus: dict[str, float], f: float = 1.0) -> dict[str, list[dict]]:
    """K6's cells as families: {signature: [judge_family parts, one per cell]} for per-seed effects
    values[signature][cell], each family Holm-corrected over its cells."""
    return {name: rules.judge_family(cells, signature_margin(name, f * taus[name]), direction=SIGNATURES[name][1])
            for name, cells in values.items() if cells}


def k6(values: dict[str, dict], taus: dict[str, float], f: float = 1.0) -> tuple[list[dict], str]:
    """K6, "the failure signatures appear as stated": each signature appears when some cell shows it, its
    cells decided as one Holm family (`signature_families`); one ledger part per signature (its verdict
    `exists` over the family; effect: how many cells and which, with the strongest cell's interval and
    minimum detectable effect). The claim: `combine` of the three (each signature must appear)."""
    parts = []
    for name, family in signature_families(values, taus, f).items():
        verdict = rules.exists(p["verdict"] for p in family)
        found = [p["setting"] for p in family if p["verdict"] == rules.SUPPORTED]
        sign = -1 if SIGNATURES[name][1] == "below" else 1
        strongest = max(family, key=lambda p: sign * float(np.mean(p["interval"])))
        effect = (f"{len(found)} of {len(family)} cells (Holm)" + (f": {', '.join(found[:4])}" if found else "")
                  + (", ..." if len(found) > 4 else "") + f"; strongest {strongest['setting']} {strongest['effect']}")
        parts.append(rules.part(name, verdict, effect, interval=tuple(strongest["interval"]), mde=strongest["mde"],
                                margin=strongest["margin"] + " (Holm)"))
    return parts, rules.combine(p["verdict"] for p in parts) if parts else rules.NOT_TESTABLE


def effect_text(parts: list[dict], limit: int = 8) -> str:
    """A claim's effect line from its parts: 'setting: effect [low, high] (verdict)', '; '-joined."""
    shown = [f"{p['setting']}: {p['effect']} {_fmt_interval(*p['interval'])} ({p['verdict']})"
             if "interval" in p else f"{p['setting']}: {p['effect']} ({p['verdict']})" for p in parts[:limit]]
    return "; ".join(shown) + (f"; ... ({len(parts) - limit} more)" if len(parts) > limit else "")


def claim_record(verdict: str, parts: list[dict], evidence: str, conditions: str, sensitivity: dict) -> dict:
    """The claim record `book.results.write_result` takes, with the threshold sensitivity in the effect."""
    sens = " / ".join(sensitivity.values())
    return {"verdict": verdict, "evidence": evidence, "conditions": conditions, "parts": parts,
            "effect": effect_text(parts) + f" (thresholds ×0.5 / ×1 / ×2: {sens})"}


def signature_values(rows: dict, cells: dict, exact_corr: dict, data_nn: float) -> dict[str, dict[str, list]]:
    """K6's per-seed effects in every cell (process, schedule, target, sampler) of the chapter's summaries
    `rows[metric][cell index]["values"]`: {signature: {"p/s/t/m": values}} with collapse = log(the samples'
    median nearest-neighbour distance / data_nn, that of as many held-out points), bias = corr(start, sample)
    - exact_corr[(schedule, sampler)] and low = 0.05 - low-density share."""
    out = {"collapse": {}, "bias": {}, "low": {}}
    for (p, s, t, m), k in cells.items():
        label = f"{p}/{s}/{t}/{m}"
        out["collapse"][label] = np.log(np.maximum(rows["median_nn"][k]["values"], 1e-12) / data_nn).tolist()
        out["bias"][label] = (np.asarray(rows["start_end_corr"][k]["values"]) - exact_corr[s, m]).tolist()
        out["low"][label] = (0.05 - np.asarray(rows["low_density"][k]["values"])).tolist()
    return out


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def prose_numbers(claims: dict) -> dict[str, tuple]:
    """Numbers the chapter's prose quotes, read off its claim records: {glue name: (value, format)}.
    Counts of parts per class and their total for K1, K3, K5 and K2's two halves ("k2-cover-supported", ...);
    each claim's effect line ("effect-K1"); K3's smallest detectable factor; K5's smallest worst / best ratio;
    K4's per-target share and within-target rank correlation ("k4-share-eps", "k4-rho-eps")."""
    out = {}
    for cid, prefix in (("K1", ""), ("K2", "cover"), ("K2", "recover"), ("K3", ""), ("K5", "")):
        parts = [p for p in claims.get(cid, {}).get("parts", []) if p["setting"].startswith(prefix)]
        key = cid.lower() + (f"-{prefix}" if prefix else "")
        for verdict in (rules.SUPPORTED, rules.CONTRADICTED, rules.INADEQUATE):
            out[f"{key}-{verdict.split()[0]}"] = (sum(p["verdict"] == verdict for p in parts), "d")
        out[f"{key}-total"] = (len(parts), "d")
    for cid, claim in claims.items():
        out[f"effect-{cid}"] = (claim["effect"], "s")
    mdes = [_number(p["mde"].lstrip("×")) for p in claims.get("K3", {}).get("parts", []) if p["mde"] != "—"]
    out["k3-mde"] = (min(mdes, default=math.nan), ".3g")
    ratios = [_number(p["effect"].rsplit("×", 1)[1]) for p in claims.get("K5", {}).get("parts", [])]
    out["k5-ratio-min"] = (min(ratios, default=math.nan), ".0f")
    for p in claims.get("K4", {}).get("parts", []):
        target, question = p["setting"].split(": ")
        if question == "conditional mean":
            out[f"k4-share-{target}"] = (_number(p["effect"].split()[0]), ".2f")
        else:  # "Spearman rho over n runs"
            words = p["effect"].split()
            out[f"k4-rho-{target}"] = (_number(words[1]), ".2f")
            out["k4-n-runs"], out["k4-rho-mde"] = (int(words[3]), "d"), (correlation_mde(int(words[3])), ".2f")
    return out


def recovery_numbers(recovery: dict, scale: float) -> dict[str, tuple]:
    """K2's best-recovering pairing configuration for the prose: {glue name: (value, format)} with its mean
    recovery error in data scales ("k2-recovery-best"), in data units ("k2-recovery-best-units") and its name."""
    means = {k: float(np.mean(v)) for k, v in recovery.items()}
    best = min(means, key=means.get) if means else None
    return {"k2-recovery-best": (means[best] if best else math.nan, ".3f"),
            "k2-recovery-best-units": (means[best] * scale if best else math.nan, ".2f"),
            "k2-recovery-best-cell": ("/".join(best) if best else "-", "s")}
