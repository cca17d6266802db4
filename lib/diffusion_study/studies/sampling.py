"""Chapter 3's measurements: sampler sweeps, DDIM inversion, guidance sweeps and their summaries.

Everything takes ensembles: x: [G, N, *event] with G independent models (seeds) sampled in one
call, so every measurement comes back per seed, [..., G], for `stats.mean_interval`.
Samplers are named once here (`SAMPLERS`); wall times are measured around each call and
returned beside the quality, never printed (they vary from run to run).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from diffusion_study.core.ode import ode_solve
from diffusion_study.core.samplers import ddim_invert, ddim_sample, reverse_sampler
from diffusion_study.eval import verdicts as rules
from diffusion_study.eval.stats import mean_interval

# The chapter's samplers: names of `core.samplers.REVERSE_SAMPLERS` (each states its reverse variance) -> label.
SAMPLERS: dict[str, str] = {
    "ddpm-beta": "DDPM ancestral ($\\sigma_t^2 = \\beta_t$)",
    "ddpm-beta-tilde": "DDPM ancestral ($\\tilde\\beta_t$, DDIM $\\eta = 1$)",
    "ddim-eta0.5": "DDIM $\\eta = 0.5$",
    "ddim": "DDIM $\\eta = 0$",
}


def run_sampler(name: str, model, x: Tensor, steps: int, extra_args: dict | None = None, generator=None):
    """(samples shaped like x, seconds) of reverse sampler `name` on `steps` evenly spaced steps of the model's schedule."""
    sampler = reverse_sampler(name)
    times = model.process.schedule.grid(steps)
    started = time.perf_counter()
    out = sampler(model, x, times, extra_args, generator=generator)
    return out, time.perf_counter() - started


@dataclass
class Sweep:
    """quality[name][k]: per-seed metric [G] at steps[k]; nfe[name][k]: model calls; seconds[name][k]: wall time."""

    steps: dict[str, list[int]] = field(default_factory=dict)
    quality: dict[str, list[np.ndarray]] = field(default_factory=dict)
    nfe: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, steps: int, quality, nfe: int, seconds: float) -> None:
        for store, value in ((self.steps, steps), (self.quality, np.asarray(quality, dtype=float)),
                             (self.nfe, nfe), (self.seconds, seconds)):
            store.setdefault(name, []).append(value)

    def at(self, name: str, steps: int) -> np.ndarray:
        """The per-seed metric [G] of sampler `name` at `steps`."""
        return self.quality[name][self.steps[name].index(steps)]

    def to_dict(self) -> dict:
        return {"steps": self.steps, "quality": {k: [q.tolist() for q in v] for k, v in self.quality.items()},
                "nfe": self.nfe, "seconds": self.seconds}


def sampler_sweep(model, x_T: Tensor, steps: list[int], metric: Callable[[Tensor], np.ndarray], *,
                  names=tuple(SAMPLERS), seed: int = 0, extra_args: dict | None = None,
                  sweep: Sweep | None = None) -> Sweep:
    """Every named sampler at every number of steps from the same start x_T [G, N, *event]; metric(samples) -> [G].

    The noise of the stochastic samplers comes from a generator seeded with `seed` for every run.
    """
    sweep = sweep or Sweep()
    for name in names:
        for n in steps:
            samples, seconds = run_sampler(name, model, x_T, n, extra_args, torch.Generator().manual_seed(seed))
            sweep.add(name, n, metric(samples), n, seconds)
    return sweep


def ode_sweep(model, x_T: Tensor, configs: dict[str, list[dict]], metric: Callable[[Tensor], np.ndarray], *,
              sweep: Sweep | None = None, extra_args: dict | None = None) -> Sweep:
    """Probability-flow ODE samplers: configs = {name: [ode_solve keyword dicts, with 'steps' for fixed-step ones]}.

    The 'steps' entry of a fixed-step config is the number of equal steps in t (model calls: stages x steps);
    an adaptive config records its tolerance as its 'steps' key in the sweep (`rtol`)."""
    sweep = sweep or Sweep()
    for name, runs in configs.items():
        for kw in runs:
            kw = dict(kw)
            steps = kw.pop("steps", None)
            times = model.process.schedule.grid(steps) if steps else torch.tensor([1.0, 0.0], dtype=torch.float64)
            started = time.perf_counter()
            solution = ode_solve(model, x_T, times, extra_args, **kw)
            sweep.add(name, steps or kw.get("rtol"), metric(solution.z), solution.nfe, time.perf_counter() - started)
    return sweep


def inversion_error(model, x: Tensor, steps: list[int], extra_args: dict | None = None) -> np.ndarray:
    """RMS of decode(encode(x)) - x per seed, [len(steps), G]: DDIM inversion then DDIM (eta = 0) on the same grid.

    x: [G, N, *event]; the RMS is over examples and event dims.
    """
    out = []
    for n in steps:
        times = model.process.schedule.grid(n)
        latent = ddim_invert(model, x, times, extra_args)
        back = ddim_sample(model, latent, times, extra_args, eta=0.0)
        out.append((back - x).double().pow(2).flatten(1).mean(1).sqrt().numpy())
    return np.stack(out)


class EnergyDistanceTo:
    """x -> energy distance of x: [*batch, N, D] to a fixed reference y: [M, D], [*batch] as numpy.

    The same V-statistic as `metrics.energy_distance`, 2 E|X-Y| - E|X-X'| - E|Y-Y'|, with the reference's own term
    E|Y-Y'| computed once instead of per call and per batch member (it is the M^2 part of the cost).
    """

    def __init__(self, reference: Tensor):
        self.reference = reference.double()
        self.self_term = float(torch.cdist(self.reference, self.reference).mean())

    def __call__(self, x: Tensor) -> np.ndarray:
        x = x.double()
        xy = torch.cdist(x, self.reference.expand(x.shape[:-2] + self.reference.shape)).mean((-2, -1))
        xx = torch.cdist(x, x).mean((-2, -1))
        return np.atleast_1d((2 * xy - xx - self.self_term).numpy())


# ---------------------------------------------------------------------------------------------
# Guidance: precision against diversity, per class
# ---------------------------------------------------------------------------------------------


def class_blocks(labels_per_class: int, K: int, G: int) -> Tensor:
    """Requested labels [G, K * n]: class c in columns c n .. (c + 1) n - 1 for every member."""
    return torch.arange(K).repeat_interleave(labels_per_class).expand(G, -1).clone()


def precision(predicted: Tensor, requested: Tensor) -> np.ndarray:
    """Share of samples whose predicted class is the requested one, per seed: [G, N] -> [G]."""
    return (predicted == requested).double().mean(-1).numpy()


def within_class_spread(features: Tensor, K: int) -> np.ndarray:
    """sqrt(trace Cov) of each requested class's samples, averaged over classes: features [G, K n, F] -> [G]."""
    blocks = features.double().unflatten(1, (K, -1))  # [G, K, n, F]
    centred = blocks - blocks.mean(2, keepdim=True)
    return centred.pow(2).sum(-1).mean(-1).sqrt().mean(-1).numpy()


def held_out_distance(features: Tensor, held_out: list[Tensor], K: int) -> np.ndarray:
    """Energy distance of each class's samples to that class's held-out data, averaged over classes: [G].

    features: [G, K n, F]; held_out[c]: [M_c, F]."""
    blocks = features.double().unflatten(1, (K, -1))
    return np.mean([EnergyDistanceTo(held_out[c])(blocks[:, c]) for c in range(K)], axis=0)


# ---------------------------------------------------------------------------------------------
# Summaries and verdicts
# ---------------------------------------------------------------------------------------------


def relative_rms(estimate: Tensor, exact: Tensor) -> float:
    """||estimate - exact|| / ||exact|| over all entries (float64)."""
    estimate, exact = estimate.double(), exact.double()
    return float((estimate - exact).pow(2).sum().sqrt() / exact.pow(2).sum().sqrt())


def log_ratio(a, b) -> np.ndarray:
    """log(a / b) per seed."""
    return np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float))


def interval_text(values, fmt: str = ".3f", scale: float = 1.0) -> str:
    """'mean ± half-width' of the 95% interval over seeds (values multiplied by `scale`)."""
    iv = mean_interval(np.asarray(values, dtype=float) * scale)
    return f"{format(iv.mean, fmt)} ± {format(iv.half_width, fmt.replace('+', ''))}"


def ratio_text(log_values, fmt: str = ".2f") -> str:
    """A log-ratio interval shown as a ratio: 'exp(mean) [exp(low), exp(high)]'."""
    iv = mean_interval(log_values)
    return f"{format(math.exp(iv.mean), fmt)} [{format(math.exp(iv.low), fmt)}, {format(math.exp(iv.high), fmt)}]"


def tile_images(rows: list[Tensor], pad: float = -1.0) -> Tensor:
    """A grid image from rows of images: rows[r]: [C, H, W] (C images of H x W) -> [R (H + 2), C (W + 2)], padded with
    `pad` (-1: the background of images in [-1, 1])."""
    padded = [torch.cat([torch.nn.functional.pad(im, (1, 1, 1, 1), value=pad) for im in row], 1) for row in rows]
    return torch.cat(padded, 0)


# ---------------------------------------------------------------------------------------------
# Digits models from the evidence store (chapter 5's DDPM, T = 1000)
# ---------------------------------------------------------------------------------------------


class StoredEnsemble(torch.nn.Module):
    """Stored models, one per seed, as the chapter's ensemble: x0_hat(z [G, N, D], t) -> [G, N, D].

    Member g sees z[g] reshaped to [N, *image_shape]; t is one time (0-dim) or of the batch shape [G, N]
    (then member g sees t[g]). Unconditional: y must be None. event_dims = 1 (flat images)."""

    event_dims = 1

    def __init__(self, members, process, image_shape=(1, 8, 8)):
        super().__init__()
        self.members, self.process, self.image_shape = torch.nn.ModuleList(members), process, tuple(image_shape)

    def batch_shape(self, z: Tensor) -> tuple[int, ...]:
        return tuple(z.shape[:-1])

    def forward(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
        if y is not None:
            raise ValueError("StoredEnsemble: the stored models are unconditional (no labels)")
        if z.shape[0] != len(self.members):
            raise ValueError(f"StoredEnsemble: z has {z.shape[0]} members, the ensemble {len(self.members)}")
        t = torch.as_tensor(t)
        out = [m(z[g].reshape(-1, *self.image_shape), t if t.ndim == 0 else t[g].reshape(-1))
               for g, m in enumerate(self.members)]
        return torch.stack(out).reshape(z.shape)


def stored_digits_configs(n_seeds: int, T: int, logsnr_max: float, logsnr_min: float) -> list[dict] | None:
    """The evidence store's DDPM digits configs (chapter 5, 4000 steps) of the first n_seeds seeds at these
    settings, or None when the store was not trained at them (T, log-SNR ends) or has too few seeds."""
    from diffusion_study.studies import evidence

    configs = [c for c in evidence.CONFIGS if c["kind"] == "ddpm" and c["base"] == 16 and c["T"] == T
               and c["logsnr_max"] == logsnr_max and c["logsnr_min"] == logsnr_min]
    return configs[:n_seeds] if len(configs) >= n_seeds else None


def load_stored_digits(configs: list[dict], store_dir=None):
    """(stored Denoisers [G], bits/dim per seed [G] on the test split as stored) for the configs; FileNotFoundError
    naming the missing model when the store lacks one."""
    from diffusion_study.studies import evidence
    from diffusion_study.training import store

    store_dir = store_dir or evidence.STORE
    models, bpd = [], []
    for config in configs:
        record = store.find(store_dir, config)
        if record is None:
            raise FileNotFoundError(f"{evidence.name_of(config)} is not in {store_dir}: run scripts/evidence.py, "
                                    "or set digits_models = 'train'")
        models.append(evidence.load_model(record))
        bpd.append(record["results"]["bits_per_dim"])
    return models, np.array(bpd)


def on_process(models, process, ensemble: bool = True):
    """The stored Denoisers' networks on another process of the same log-SNR (e.g. the T-step grid), as a
    StoredEnsemble (or a list when ensemble is False)."""
    from diffusion_study.core.denoiser import Denoiser

    members = [Denoiser(m.net, process, prediction=m.prediction, clip=m.clip) for m in models]
    return StoredEnsemble(members, process) if ensemble else members


# ---------------------------------------------------------------------------------------------
# L5: DDIM against DDPM, as ledger rows
# ---------------------------------------------------------------------------------------------

INVERSION_TOLERANCE = {"toy_exact": 0.01, "toy_trained": 0.05, "digits": 0.03}  # RMS: a tenth of the data's scale or finer


IDENTITY_CHECK = " (identity check)"  # marks a row whose verdict comes from an identity, not from an interval
_AS_EMPIRICAL = {rules.VERIFIED: rules.SUPPORTED, rules.FAILS: rules.CONTRADICTED,
                 rules.IDENTITY_INCONCLUSIVE: rules.INCONCLUSIVE}


def determinism_row(setting: str, run_a: Tensor, run_b: Tensor) -> dict:
    """"DDIM (eta = 0) is deterministic": two runs from the same x_T with different generators, checked as an
    identity (largest absolute difference, tolerance 0: bitwise). The ledger combines a claim's parts with one
    rule and cannot mix identity classes with empirical ones, so the row carries the identity's outcome as the
    claim's class (verified -> supported, fails -> contradicted) and says it is an identity check."""
    err = float((run_a.double() - run_b.double()).abs().max())
    verdict = _AS_EMPIRICAL[rules.identity(err, 0.0)]
    return rules.part(setting + IDENTITY_CHECK, verdict, f"largest |difference| {err:.1e}", margin="= 0 (bitwise)")


def l5_rows(sweeps: dict, baseline: dict, steps: list[int], threshold: float, factor: float = 1.0,
            reference: str = "ddpm-beta-tilde") -> list[dict]:
    """L5's empirical rows per data set {key: label}: sweeps[key] a Sweep, baseline[key] the per-seed quality [G]
    of a baseline sampler (the Gaussian fit). Distances: lower is better; every effect a log-ratio per seed.

    - "uses DDPM training unchanged": DDIM at the most steps, on the DDPM-trained network, beats the baseline:
      log(baseline / DDIM) > log(1 + factor threshold);
    - "matches DDPM at many steps": log(DDIM / DDPM) at the most steps within +-log(1 + factor threshold) (TOST)."""
    cut, top, rows = math.log(1 + factor * threshold), max(steps), []
    for key, sweep in sweeps.items():
        rows.append(rules.judge_values(f"{key}: DDIM on the DDPM-trained network beats the Gaussian fit",
                                       log_ratio(baseline[key], sweep.at("ddim", top)), cut, unit="log-ratio"))
        rows.append(rules.judge_equivalence(f"{key}: DDIM matches DDPM at {top} steps",
                                            log_ratio(sweep.at("ddim", top), sweep.at(reference, top)), cut,
                                            unit="log-ratio"))
    return rows


def l5_extension_rows(sweeps: dict, few: int, threshold: float, factor: float = 1.0,
                      reference: str = "ddpm-beta-tilde") -> list[dict]:
    """The DDIM paper's claim (not the lecture notes'): DDIM beats DDPM at `few` steps, log(DDPM / DDIM) > log(1 + t)."""
    cut = math.log(1 + factor * threshold)
    return [rules.judge_values(f"{key}: DDIM beats DDPM at {few} steps (extension)",
                               log_ratio(sweep.at(reference, few), sweep.at("ddim", few)), cut, unit="log-ratio")
            for key, sweep in sweeps.items()]


def gate_rows(rows: list[dict], gates: dict) -> list[dict]:
    """Rows whose setting starts with a key of gates {prefix: (passed, reason)} become "inadequate model" when that
    gate failed, the reason added to their effect; identity checks (which hold or fail whatever the model's
    quality) and rows of no gate are kept."""
    out = []
    for row in rows:
        gate = next((g for prefix, g in gates.items() if row["setting"].startswith(prefix)), None)
        if gate is None or gate[0] or row["verdict"] in rules.IDENTITY or IDENTITY_CHECK in row["setting"]:
            out.append(row)
        else:
            out.append({**row, "verdict": rules.INADEQUATE, "effect": f"{row['effect']} ({gate[1]})"})
    return out


def verdict_of(rows: list[dict]) -> str:
    """`combine` of the rows' classes, identities and empirical rows apart: an identity row that fails makes the
    claim "contradicted", an inconclusive one "inconclusive"; verified identities add nothing."""
    empirical = [r["verdict"] for r in rows if r["verdict"] not in rules.IDENTITY]
    identities = [r["verdict"] for r in rows if r["verdict"] in rules.IDENTITY]
    extra = [rules.CONTRADICTED if v == rules.FAILS else rules.INCONCLUSIVE for v in identities if v != rules.VERIFIED]
    if not empirical and not extra:
        return rules.SUPPORTED if identities else rules.NOT_TESTABLE
    return rules.combine(empirical + extra)


# ---------------------------------------------------------------------------------------------
# L6: guidance in 2D against the exact guided sampler
# ---------------------------------------------------------------------------------------------


def support_level(log_prob, reference: Tensor, mass: float) -> float:
    """The log-density level below which lies `mass` of the law (its `mass` quantile over reference draws [M, D])."""
    return float(torch.quantile(log_prob(reference.double()), mass))


def _log_density(log_prob, x: Tensor) -> Tensor:
    """log_prob ([M, D] -> [M]) of x [*batch, D] -> [*batch]."""
    return log_prob(x.double().reshape(-1, x.shape[-1])).reshape(x.shape[:-1])


def out_of_support(log_prob, samples: Tensor, level: float) -> np.ndarray:
    """Share of samples [G, N, D] whose log-density is below `level` (outside the support), per seed [G]."""
    return (_log_density(log_prob, samples) < level).double().mean(-1).numpy()


def coverage(samples: Tensor, labels: Tensor, held_out: list[Tensor], radius: list[float], keep: Tensor) -> np.ndarray:
    """Share of each class's held-out points [M_c, D] with a kept (in-support) guided sample of that class within
    radius[c], averaged over classes, per seed: samples [G, N, D], labels [G, N], keep [G, N] bool -> [G].
    Samples outside the support never cover anything, so leaving it cannot raise coverage."""
    out = np.zeros((samples.shape[0], len(held_out)))
    for g in range(samples.shape[0]):
        for c, ref in enumerate(held_out):
            mine = samples[g][(labels[g] == c) & keep[g]].double()
            if len(mine):
                out[g, c] = (torch.cdist(ref.double(), mine).min(1).values < radius[c]).double().mean()
    return out.mean(1)


def coverage_radius(held_out: list[Tensor], fresh: list[Tensor]) -> list[float]:
    """Per class, the median distance from a held-out point to its nearest fresh point of the class: a sampler
    drawing as many points as `fresh` from the true class law covers about half of the held-out points."""
    return [float(torch.cdist(h.double(), f.double()).min(1).values.median()) for h, f in zip(held_out, fresh)]


def guidance_measures(samples: dict, labels: Tensor, posterior, log_prob, level: float, held_out, radius) -> dict:
    """{method: {"precision", "out", "coverage"}: [scales, G]} from samples[(method, w)] [G, N, 2] in scale order.

    precision: share of samples whose exact posterior's most probable class is the requested one; out: share
    outside the support; coverage: `coverage` of the in-support samples."""
    rec: dict = {}
    for (method, _), x in samples.items():
        predicted = posterior(x.reshape(-1, x.shape[-1])).argmax(-1).reshape(x.shape[:-1])
        keep = _log_density(log_prob, x) >= level
        r = rec.setdefault(method, {"precision": [], "out": [], "coverage": []})
        r["precision"].append(precision(predicted, labels))
        r["out"].append((~keep).double().mean(-1).numpy())
        r["coverage"].append(coverage(x, labels, held_out, radius, keep))
    return {m: {k: np.stack(v) for k, v in r.items()} for m, r in rec.items()}


def largest_in_support_scale(measures: dict, scales: list[float], max_out: float, reference: str = "exact") -> int:
    """Index of the largest scale up to which the `reference` sampler's (the exact guided sampler's) mean share of
    samples outside the support stays <= max_out (0 at least): the scales where guidance itself stays on the data."""
    out = measures[reference]["out"]
    k = 0
    while k + 1 < len(scales) and out[k + 1].mean() <= max_out:
        k += 1
    return k


def l6_rows(measures: dict, k: int, w_max: float, thresholds: dict, grad_error: np.ndarray,
            factor: float = 1.0) -> list[dict]:
    """L6's rows, judged from w = 0 to scale index k (w = w_max, the largest in support), per guidance method:

    - precision rises by more than f * thresholds["precision"]; "not testable here" when precision at w = 0
      already lies within that gain of 1 (at its ceiling: nothing left to rise);
    - coverage falls by more than f * thresholds["coverage"] (relative);
    - the trained classifier-free difference acts as grad log p(y | x): relative error per seed [G] below
      f * thresholds["gradient"]."""
    tp, tc, tg = (factor * thresholds[n] for n in ("precision", "coverage", "gradient"))
    rows = []
    for method, m in measures.items():
        name = f"2D {method}, w = 0 to {w_max:g}"
        p0 = m["precision"][0]
        if k == 0:
            rows.append(rules.part(f"{name}: precision rises", rules.NOT_TESTABLE, "no scale above 0 stays in the support"))
        elif p0.mean() >= 1 - tp:
            rows.append(rules.part(f"{name}: precision rises", rules.NOT_TESTABLE,
                                   f"precision at w = 0 is {p0.mean():.3f}: at its ceiling"))
        else:
            rows.append(rules.judge_values(f"{name}: precision rises", m["precision"][k] - p0, tp, unit="share"))
        if k == 0:
            rows.append(rules.part(f"{name}: coverage falls", rules.NOT_TESTABLE, "no scale above 0 stays in the support"))
        else:
            fall = 1 - m["coverage"][k] / np.maximum(m["coverage"][0], 1e-12)
            rows.append(rules.judge_values(f"{name}: coverage falls", fall, tc, unit="relative"))
    rows.append(rules.judge_values("2D: trained cond-minus-uncond difference is grad log p(y | x)", grad_error, tg,
                                   direction="below", unit="relative RMS error"))
    return rows


def gradient_errors(model, G: int, exact_grad_fn, classifier_grad_fn, points: Tensor, labels: Tensor, process, times,
                    generator) -> dict:
    """Relative RMS error per time and seed, {"classifier-free difference", "noisy classifier"}: [times, G], of the
    trained cond-minus-uncond difference (`guidance_direction`) of a G-member ensemble and of a classifier's gradient
    against the exact
    grad log q_t(y | x), at x_t ~ q_t from `points` [N, D] with `labels` [N]. exact_grad_fn(z, y, alpha, sigma);
    classifier_grad_fn(z [G, N, D], t, y [G, N])."""
    from diffusion_study.core.guidance import guidance_direction

    out = {"classifier-free difference": [], "noisy classifier": []}
    for t in times:
        t = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = process.alpha(t), process.sigma(t)
        z = (alpha * points + sigma * torch.randn(points.shape, generator=generator, dtype=torch.float64)).float()
        exact = exact_grad_fn(z, labels, alpha, sigma)
        zg, yg = z.expand(G, -1, -1).contiguous(), labels.expand(G, -1).contiguous()
        for key, est in (("classifier-free difference", guidance_direction(model, zg, t, yg)),
                         ("noisy classifier", classifier_grad_fn(zg, t, yg))):
            out[key].append([relative_rms(est[g], exact) for g in range(len(est))])
    return {k: np.array(v) for k, v in out.items()}


def noisy_classifiers(make, process, data: tuple[Tensor, Tensor], G: int, *, steps: int, seed: int,
                      init_seed: int, batch_size: int = 256, lr: float = 3e-3):
    """G noise-conditional classifiers p_phi(y | x_t, t) (`nets.classifiers.noisy_classifier_loss` on `process`),
    member g initialised after torch.manual_seed(init_seed + g) and trained with seed + g; their EMA copies as one
    `MemberStack` (forward(z [G, B, D], t) -> logits [G, B, K])."""
    from diffusion_study.nets.classifiers import MemberStack, noisy_classifier_loss
    from diffusion_study.training.loop import train

    members = []
    for g in range(G):
        torch.manual_seed(init_seed + g)
        members.append(train(make(), lambda m, b, gn: noisy_classifier_loss(m, process, b, gn), data, steps=steps,
                             batch_size=batch_size, lr=lr, seed=seed + g, progress=False).ema)
    return MemberStack(members)


def bayes_identity_error(exact_model, exact_grad_fn, points: Tensor, labels: Tensor, process, t: float,
                         generator) -> float:
    """Largest |cond-minus-uncond difference of the exact denoisers - grad log q_t(y | x)| at x_t ~ q_t(. | points)
    [N, D] with labels [N]: Bayes' rule makes it zero, so it can only find a bug. exact_grad_fn(z, y, alpha, sigma)."""
    from diffusion_study.core.guidance import guidance_direction

    t = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = process.alpha(t), process.sigma(t)
    z = (alpha * points + sigma * torch.randn(points.shape, generator=generator, dtype=torch.float64)).float()
    return float((guidance_direction(exact_model, z, t, labels) - exact_grad_fn(z, labels, alpha, sigma)).abs().max())
