"""Chapter 4 (NDM in 2D): the chapter's model (`toy_model`), per-member data of an ensemble, and the
measurements its claims read: path curvature, ||F|| against the data's spread while training
(`TransformTrace`), steps needed for a tolerance, network calls per sampling step (`CallCounter`).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

from diffusion_study.base.args import choose, positive_int
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.processes import GaussianForward
from diffusion_study.nets.models import EnsembleMLP
from diffusion_study.nets.transforms import PreconditionedX0


def path_curvature(path: Tensor) -> Tensor:
    """Mean distance of a path from its chord, per unit arc length, over the chord's length; [*batch].

    path: [K + 1, *batch, D] (points along each trajectory, first to last). Each segment's mid-point
    distance is weighted by the segment's length, so the value does not depend on where the solver
    put its points. 0 for a straight path whatever its speed; a half circle gives 1 / pi.
    """
    start, end = path[0], path[-1]
    chord = end - start  # [*batch, D]
    length = chord.norm(dim=-1).clamp_min(1e-12)
    mid = (path[1:] + path[:-1]) / 2 - start  # [K, *batch, D]
    along = ((mid * chord).sum(-1) / length**2).clamp(0, 1)  # projection onto the segment
    dist = (mid - along[..., None] * chord).norm(dim=-1)  # [K, *batch]
    seg = (path[1:] - path[:-1]).norm(dim=-1)  # [K, *batch]
    return (dist * seg).sum(0) / seg.sum(0).clamp_min(1e-12) / length


def transform_norm_ratio(process, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """(E ||F(x, t)|| / E ||x||, std of F(x, t) over x / std of x), each [*models] (claim N6).

    x: [*models, N, D]. The first falls to 0 when F collapses towards 0; the second when F forgets x.
    """
    with torch.no_grad():
        f = process.transform(x, torch.tensor(float(t), dtype=torch.float64))
    norm = f.norm(dim=-1).mean(-1) / x.norm(dim=-1).mean(-1)
    spread = f.std(-2).norm(dim=-1) / x.std(-2).norm(dim=-1)
    return norm, spread


def steps_needed(errors: Tensor, steps, tolerance: float) -> Tensor:
    """The smallest number of steps whose error is at most `tolerance` (inf where none is).

    errors: [len(steps), *batch] (e.g. endpoint error or a sample distance per step count); [*batch].
    """
    steps = torch.as_tensor(steps, dtype=torch.float64)
    ok = errors <= tolerance
    first = torch.where(ok, steps.reshape((-1,) + (1,) * (errors.ndim - 1)), torch.tensor(math.inf, dtype=torch.float64))
    return first.min(0).values


class CallCounter(contextlib.AbstractContextManager):
    """Count the forward calls of modules (e.g. F's network and x_hat's): `with CallCounter(f=..., x_hat=...) as c:`,
    then c.counts == {'f': n, 'x_hat': m}. A call inside torch.func.jvp counts once."""

    def __init__(self, **modules: nn.Module):
        self.modules, self.counts, self._handles = modules, {k: 0 for k in modules}, []

    def __enter__(self):
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(lambda *_, name=name: self._hit(name)))
        return self

    def _hit(self, name: str) -> None:
        self.counts[name] += 1

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


# ---------------------------------------------------------------------------------------
# The x_hat network
# ---------------------------------------------------------------------------------------


KINDS = ("ddpm", "ndm", "ndm-gain")


def toy_model(schedule, kind: str, members: int, *, hidden: int = 64, depth: int = 3, time_dim: int = 32,
              data_std: float = 1.0, generator=None, x_hidden: int | None = None, f_zero: bool = True,
              f_time_scale: float | None = 0.01, f_lr_scale: float = 1.0, seed: int | None = None) -> Denoiser:
    """Chapter 4's 2D model, an ensemble of `members`: x_hat = PreconditionedX0(EnsembleMLP), prediction 'x0';
    kind 'ddpm' (F = identity), 'ndm' (an EnsembleMLP F of the same size, F = x at the start) or 'ndm-gain'
    (F(x, t) = c(t) x, `transforms.EnsembleScalarGain`: a learned schedule only).

    The x_hat networks (width `x_hidden`, default `hidden`) are drawn first from `generator`, so DDPM and NDM
    of one seed start from the same x_hat weights. The ablation's switches for F: `f_zero` (output layer at
    zero, F = x at the start), `f_time_scale` (slowed time features, None: the denoisers' own), `f_lr_scale`
    (F trained at this multiple of the learning rate, `transforms.LearningRateScale`). `seed`: a fresh
    generator seeded with it (instead of `generator`).
    """
    from diffusion_study.core.processes import NeuralForward
    from diffusion_study.nets.transforms import EnsembleScalarGain, LearningRateScale, SlowTime, zero_output_layer

    choose("model", kind, KINDS)
    generator = torch.Generator().manual_seed(seed) if seed is not None else generator
    net = EnsembleMLP(members, 2, x_hidden or hidden, depth, time_dim, "silu", generator=generator)
    x_net = PreconditionedX0(net, schedule, data_std)
    if kind == "ddpm":
        return Denoiser(x_net, GaussianForward(schedule), prediction="x0")
    if kind == "ndm-gain":
        return Denoiser(x_net, NeuralForward(schedule, EnsembleScalarGain(members, generator=generator)), prediction="x0")
    f_net = EnsembleMLP(members, 2, hidden, depth, time_dim, "silu", generator=generator)
    if f_zero:
        zero_output_layer(f_net)
    if f_time_scale is not None:
        f_net = SlowTime(f_net, f_time_scale)
    if f_lr_scale != 1.0:
        f_net = LearningRateScale(f_net, f_lr_scale)
    return Denoiser(x_net, NeuralForward(schedule, f_net), prediction="x0")


def matched_width(hidden: int, depth: int = 3, time_dim: int = 32) -> int:
    """The smallest x_hat width whose DDPM has at least as many parameters as an NDM of width `hidden`
    (x_hat and F of that width): chapter 4's parameter-matched DDPM control."""
    def count(width):
        return sum(p.numel() for p in EnsembleMLP(1, 2, width, depth, time_dim, "silu").parameters())

    target, width = 2 * count(hidden), hidden
    while count(width) < target:
        width += 1
    return width


def member_columns(batch: Tensor) -> Tensor:
    """Each ensemble member's own data: data [N, G, D] indexed by `train` as [G, B, G, D] -> [G, B, D],
    member g reading column g (chapter 4 trains one ensemble on several data sets and seeds)."""
    members = torch.arange(batch.shape[0], device=batch.device)
    return batch[members, :, members]


class TransformTrace:
    """A loss function that also records ||F|| while it trains (claim N6).

    `TransformTrace(loss_fn, probe, every, t)` is called as loss_fn(model, batch, generator); every
    `every` calls it appends (step, norm ratio [G], spread ratio [G]) of `transform_norm_ratio(
    model.process, probe, t)` to `self.records`, probe: [G, N, D]. Step 0 is recorded at the first call.
    """

    def __init__(self, loss_fn, probe: Tensor, every: int, t: float = 0.5):
        self.loss_fn, self.probe, self.every, self.t = loss_fn, probe, positive_int("every", every), t
        self.calls, self.records = 0, []

    def __call__(self, model, batch, generator) -> Tensor:
        if self.calls % self.every == 0:
            norm, spread = transform_norm_ratio(model.process, self.probe, self.t)
            self.records.append((self.calls, norm, spread))
        self.calls += 1
        return self.loss_fn(model, batch, generator)


# ---------------------------------------------------------------------------------------------
# Baselines and the adequacy gate (issue 20): the structure a model's samples must show
# ---------------------------------------------------------------------------------------------

STRUCTURE = {  # data set -> (what the structure metric measures, higher is better?)
    "checkerboard": ("share of samples on the board's occupied squares", True),
    "two_moons": ("share of samples within 3 jitter std of a moon", True),
    "two_gaussians": ("NLL of samples under the true density (nats)", False),
}


def structure(name: str, samples: Tensor) -> Tensor:
    """The structure metric of `STRUCTURE[name]` for samples [*batch, N, 2]: [*batch] float64. Checkerboard:
    `eval.baselines.checkerboard_mass`; two moons: the two shares of `eval.baselines.moons_mass` summed; two
    Gaussians: -E log p(x) under `toy2d.two_gaussians()`'s exact density."""
    from diffusion_study.data.toy2d import two_gaussians
    from diffusion_study.eval import baselines

    choose("data set", name, tuple(STRUCTURE))
    x = samples.detach().cpu().double()
    if name == "checkerboard":
        return torch.as_tensor(baselines.checkerboard_mass(x), dtype=torch.float64)
    if name == "two_moons":
        upper, lower = baselines.moons_mass(x)
        return torch.as_tensor(upper, dtype=torch.float64) + torch.as_tensor(lower, dtype=torch.float64)
    mixture = two_gaussians()
    logp = mixture.log_prob(x.reshape(-1, 2)).reshape(x.shape[:-1])
    return -logp.mean(-1)


def gaussian_samples(train: Tensor, n: int, seed: int = 0) -> Tensor:
    """n samples [G, n, 2] of the moment-matched Gaussian of each member's training points, train [N, G, 2]
    (the ensemble's layout; `eval.baselines.GaussianFit`), from one torch.Generator seeded with `seed`."""
    from diffusion_study.eval.baselines import GaussianFit

    g = torch.Generator().manual_seed(seed)
    return torch.stack([GaussianFit.fit(train[:, m].cpu()).sample(n, g) for m in range(train.shape[1])])


def gaussian_nll(train: Tensor, test: Tensor) -> Tensor:
    """Mean NLL (nats per point) of each member's test points [G, M, 2] under the Gaussian with the mean and
    covariance of its training points [N, G, 2]: the likelihood a model must beat; [G] float64."""
    from diffusion_study.eval.baselines import GaussianFit

    return torch.stack([-GaussianFit.fit(train[:, m].cpu()).log_prob(test[m].cpu()).mean()
                        for m in range(train.shape[1])])


# ---------------------------------------------------------------------------------------------
# The optimal reverse variance (Analytic-DPM, Bao et al. 2022): chapter 4's control (b) on the few-step grid
# ---------------------------------------------------------------------------------------------


def _pairs(grid: Tensor) -> list[tuple[Tensor, Tensor]]:
    K = len(grid) - 1
    return [(grid[K - i + 1], grid[K - i]) for i in range(2, K + 1)]  # (s, t), s < t, as `vlb_terms`


def analytic_variances(model, x: Tensor, times, generator=None) -> Tensor:
    """The optimal isotropic variance of each reverse step of a DDPM (F = identity) on the grid `times`,
    estimated on x [G, N, D]: v*_{s,t} = s~^2 + x_coef^2 E||x - x_hat(z_t, t)||^2 / D, the variance that
    minimises the expected KL for the model's own mean (Analytic-DPM); [steps, G] float64, step order as
    `vlb_terms` (increasing time)."""
    from diffusion_study.core.objectives import checked_grid

    process = model.process
    out = []
    with torch.no_grad():
        for s, t in _pairs(checked_grid(process, times).to(x.device)):
            c = process.step_coefficients(s, t)
            z = process.sample(x, t, torch.randn(x.shape, generator=generator).to(x))
            mse = (x - model(z, t)).pow(2).mean((-1, -2)).double()  # [G]
            out.append(c.posterior_var + c.x_coef**2 * mse)
    return torch.stack(out)


def analytic_bound(model, x: Tensor, times, variances: Tensor, *, decoder, generator=None) -> Tensor:
    """The negative ELBO of a DDPM on the grid `times` with every reverse step's variance set to
    `variances` [steps, G] (`analytic_variances`, from other points than x): prior + every KL term + decoder,
    one z per term; [G, N] nats. With the posterior variances it is `vlb_terms`' full sum."""
    from diffusion_study.core.objectives import checked_grid, decoder_nll_at, gaussian_kl, prior_kl

    process = model.process
    grid = checked_grid(process, times).to(x.device)
    noise = lambda: torch.randn(x.shape, generator=generator).to(x)  # noqa: E731
    with torch.no_grad():
        total = prior_kl(process, x, 1, grid[0])
        for (s, t), var in zip(_pairs(grid), variances):
            c = process.step_coefficients(s, t)
            z = process.sample(x, t, noise())
            mean_q = process.posterior_mean(c, x, z, s, t)
            mean_p = process.posterior_mean(c, model(z, t), z, s, t)
            var_q = torch.full_like(x, float(c.posterior_var))
            var_p = var[:, None, None].to(x).expand_as(x)
            total = total + gaussian_kl(mean_q, var_q, mean_p, var_p).sum(-1)
        t_1 = grid[-2]
        total = total + decoder_nll_at(model, x, process.sample(x, t_1, noise()), t_1, decoder, 1)
    return total


# ---------------------------------------------------------------------------------------------
# Per-seed tables and their text
# ---------------------------------------------------------------------------------------------


def by_dataset(values, n_datasets: int):
    """[G] per-member values (member d * S + s: data set d, seed s) -> [D, S] float64 numpy."""
    import numpy as np

    return np.asarray(torch.as_tensor(values).detach().double().cpu()).reshape(n_datasets, -1)


def seed_text(values, fmt: str = ".3f") -> str:
    """'mean ± half-width' of the 95% t-interval of per-seed values ('mean ± —' for one seed)."""
    from diffusion_study.eval import verdicts as rules

    return rules.interval_text(rules.estimate(values), fmt=fmt)


def datasets_text(names, rows, fmt: str = ".3f") -> str:
    """'name mean ± half; ...' for rows [D, S] of per-seed values, one per data set."""
    return "; ".join(f"{n.replace('_', ' ')} {seed_text(r, fmt)}" for n, r in zip(names, rows))


# ---------------------------------------------------------------------------------------------
# Adequacy gates (issue 20): a data set's comparisons count only where its models beat the baselines
# ---------------------------------------------------------------------------------------------


def likelihood_gate(bounds: dict, gaussian, exact, margin: float) -> tuple[bool, str]:
    """One data set's likelihood gate: every seed's bound of every model ({name: per-seed nats}) lies more than
    `margin` below the moment-matched Gaussian's held-out NLL (`eval.adequacy.adequate`, mean over seeds). The
    reason names the worst seed of each model, the Gaussian's NLL and each model's gap to the exact NLL
    `exact` (None where the data have no closed form)."""
    import numpy as np

    from diffusion_study.eval.adequacy import adequate

    base = float(np.mean(gaussian))
    ok = all(adequate(v, {"Gaussian fit": base}, margin=margin)[0] for v in bounds.values())
    worst = ", ".join(f"{k} {float(np.max(v)):.3f}" for k, v in bounds.items())
    why = f"worst seed {worst} nats {'below' if ok else 'not below'} the Gaussian fit's {base:.3f} - {margin:g}"
    if exact is not None:
        why += "; above the exact NLL by " + ", ".join(f"{k} {float(np.mean(v)) - exact:.3f}" for k, v in bounds.items())
    return ok, why


def structure_gate(name: str, scores: dict, gaussian, margin: float) -> tuple[bool, str]:
    """One data set's sample gate: every seed of every model ({name: per-seed structure metric, `structure`})
    beats the Gaussian fit's structure metric (mean over seeds) by more than `margin`, in the metric's
    direction (`STRUCTURE[name]`); the reason names the worst seed of each model and the Gaussian's value."""
    import numpy as np

    from diffusion_study.eval.adequacy import adequate

    higher = STRUCTURE[name][1]
    base = float(np.mean(gaussian))
    ok = all(adequate(v, {"Gaussian fit": base}, margin=margin, lower_is_better=not higher)[0] for v in scores.values())
    worst = ", ".join(f"{k} {float(np.min(v) if higher else np.max(v)):.3f}" for k, v in scores.items())
    side = "above" if higher else "below"
    return ok, f"worst seed {worst} {side if ok else 'not ' + side} the Gaussian fit's {base:.3f} {'+' if higher else '-'} {margin:g}"


def falling_text(names, drop) -> str:
    """Per data set, whether the bound was still falling when training stopped: drop [D, S] = bound after half
    the steps minus the final bound (nats); 'still falling' when its 95% interval lies above 0."""
    from diffusion_study.eval import verdicts as rules

    out = []
    for n, v in zip(names, drop):
        low = rules.estimate(v).interval()[0]
        out.append(f"{n.replace('_', ' ')} {seed_text(v)} ({'still falling' if low > 0 else 'no longer falling'})")
    return "; ".join(out)


def control_text(parts: list[dict]) -> str:
    """What F adds beyond each control, from a claim's control parts (settings 'beyond <control>, <data set>'):
    '<control>: <combined verdict>' per control, '; '-joined (supported: NDM better by more than the margin;
    contradicted: not better)."""
    from diffusion_study.eval import verdicts as rules

    labels = dict.fromkeys(p["setting"].rsplit(", ", 1)[0] for p in parts if p["setting"].startswith("beyond "))
    return "; ".join(f"{k.removeprefix('beyond ')}: {rules.combine(p['verdict'] for p in parts if p['setting'].startswith(k + ', '))}"
                     for k in labels)


def ablation_text(moved: dict, few: float) -> str:
    """The ablation's reading: moved {variant: mean deviation of F at T = 1000}, few: the same short run on the
    few-step grid. Whether any optimiser setting moves F at T = 1000 as far as the few-step grid does."""
    best = max(moved, key=moved.get)
    if moved[best] < few / 2:
        return (f"no setting moves F at T = 1000 even half as far as the few-step grid does in as many steps "
                f"(most: {best}, {moved[best]:.3f}, against {few:.3f}): the stillness comes from the bound at a fine grid, "
                f"not from how F is trained")
    return (f"{best} moves F at T = 1000 {moved[best]:.3f}, at least half as far as the few-step grid ({few:.3f}): "
            f"part of the stillness is the optimiser's doing")


# ---------------------------------------------------------------------------------------------
# Verdict rules: N1, N2, N3, N4, N6 (empirical) and N7 (identity). Each takes per-seed values and the
# chapter's thresholds scaled by f (the threshold sensitivity recomputes it at f = 0.5 and 2) and returns
# (parts, verdict), parts being ledger rows (`eval.verdicts.judge`).
# ---------------------------------------------------------------------------------------------


def _gated_family(values: dict, gates: dict, support: float, unit: str, direction: str = "below") -> list[dict]:
    """`judge_family` (Holm) over the parts whose data set (key[-1]) passes its gate; the others read
    'inadequate model' with the gate's reason. values: {(label, data set): per-seed values}."""
    from diffusion_study.eval import verdicts as rules

    kept = {k: v for k, v in values.items() if gates[k[-1]][0]}
    judged = dict(zip(kept, rules.judge_family({", ".join(k): v for k, v in kept.items()}, support,
                                               direction=direction, unit=unit))) if kept else {}
    out = []
    for k, v in values.items():
        if k in judged:
            out.append(judged[k])
        else:
            row = rules.judge_values(", ".join(k), v, support, direction=direction, unit=unit)
            row["verdict"], row["effect"] = rules.INADEQUATE, row["effect"] + f" (gate: {gates[k[-1]][1]})"
            out.append(row)
    return out


def n1(diffs: dict, controls: dict, gates: dict, tau: float, f: float = 1.0) -> tuple[list[dict], str]:
    """N1, "NDM reaches a better NLL than DDPM": per (measure, data set) the paired NDM - DDPM difference
    (nats) lies below -f tau (supported) or above it (contradicted), Holm within the family, data sets
    failing their likelihood gate `gates[name] = (passed, reason)` read 'inadequate model'. `controls`
    {(what F is compared with, data set): NDM - control} are a second Holm family reported beside: what F
    adds beyond a learned schedule or more parameters; they do not enter the verdict, `combine` of the
    first family."""
    from diffusion_study.eval import verdicts as rules

    main = _gated_family(diffs, gates, -f * tau, "nats")
    extra = _gated_family(controls, gates, -f * tau, "nats") if controls else []
    return main + extra, rules.combine(p["verdict"] for p in main)


def n2(diffs: dict, gates: dict, margin: float, f: float = 1.0) -> tuple[list[dict], str]:
    """N2, "sample quality comparable to DDPM": per (sampler, data set) the paired NDM - DDPM energy distance
    lies within +-f margin by the equivalence test (90% interval: supported), outside it (contradicted) or
    neither (inconclusive); data sets failing their sample gate read 'inadequate model'."""
    from diffusion_study.eval import verdicts as rules

    parts = []
    for (label, name), v in diffs.items():
        row = rules.judge_equivalence(f"{label}, {name}", v, f * margin, fmt=".4f")
        if not gates[name][0]:
            row["verdict"], row["effect"] = rules.INADEQUATE, row["effect"] + f" (gate: {gates[name][1]})"
        parts.append(row)
    return parts, rules.combine(p["verdict"] for p in parts)


def n3(bound_diffs: dict, ed_diffs: dict, controls: dict, gates: dict, tau: float, ed_margin: float,
       f: float = 1.0) -> tuple[list[dict], str]:
    """N3, "NDM does better with few steps": per data set the few-step bound's NDM - DDPM lies below -f tau
    (Holm over the data sets) and the samples are no worse (energy distance NDM - DDPM below +f ed_margin);
    gated by the sample gate. `controls` {(control, data set): NDM - control bound} are reported beside as
    a second Holm family (e.g. DDPM with the optimal reverse variance); the verdict combines the first two."""
    from diffusion_study.eval import verdicts as rules

    bound = _gated_family({("bound", n): v for n, v in bound_diffs.items()}, gates, -f * tau, "nats")
    samples = _gated_family({("energy distance", n): v for n, v in ed_diffs.items()}, gates, f * ed_margin, "")
    extra = _gated_family(controls, gates, -f * tau, "nats") if controls else []
    return bound + samples + extra, rules.combine(p["verdict"] for p in bound + samples)


STEPS_CAP = 128  # a sampler that never reaches the tolerance within the grid of steps counts as this many


def n4(curvature_ratio: dict, steps_ddpm: dict, steps_restricted: dict, rel: float,
       f: float = 1.0) -> tuple[list[dict], str]:
    """N4, "a restricted reverse process learns near-straight paths": per data set the paired curvature ratio
    restricted / DDPM lies below 1 - f rel (Holm over data sets), and the restricted NDM needs fewer steps
    (log2 of its steps over DDPM's below 0; a sampler that never converges counts `STEPS_CAP` steps).
    Verdict: `combine` of all parts."""
    import numpy as np

    from diffusion_study.eval import verdicts as rules

    curv = rules.judge_family({f"curvature ratio, {n}": v for n, v in curvature_ratio.items()}, 1 - f * rel,
                              direction="below")
    cap = lambda v: np.minimum(np.asarray(v, dtype=float), STEPS_CAP)  # noqa: E731
    steps = rules.judge_family({f"log2 steps ratio, {n}": np.log2(cap(steps_restricted[n]) / cap(steps_ddpm[n]))
                                for n in steps_ddpm}, 0.0, direction="below")
    return curv + steps, rules.combine(p["verdict"] for p in curv + steps)


def n6(noise: tuple, bound: dict, level: float, f: float = 1.0) -> tuple[list[dict], str]:
    """N6, "F collapses towards 0 under the noise-prediction loss": noise = (norm ratio, spread ratio) per seed
    of the NDM trained on that loss, each below f level (supported) or above (contradicted); bound =
    {model: (norm, spread)} of NDMs trained on the bound, each above f level (they do not collapse).
    Verdict: `combine` of all parts (collapse in one measure only: mixed)."""
    from diffusion_study.eval import verdicts as rules

    lvl = f * level
    parts = [rules.judge_values(f"noise loss, {m}", v, lvl, direction="below") for m, v in zip(("norm", "spread"), noise)]
    for name, pair in bound.items():
        parts += [rules.judge_values(f"{name}, {m}", v, lvl, direction="above") for m, v in zip(("norm", "spread"), pair)]
    return parts, rules.combine(p["verdict"] for p in parts)


def n7(counts: dict) -> tuple[list[dict], str]:
    """N7, "a constant number of network calls per training step": counts {(model, T): {network: calls}};
    per model, 'verified identity' if the calls are the same at every T, else 'identity fails'."""
    from diffusion_study.eval import verdicts as rules

    parts = []
    for model in dict.fromkeys(m for m, _ in counts):
        seen = {T: c for (m, T), c in counts.items() if m == model}
        same = all(c == next(iter(seen.values())) for c in seen.values())
        effect = "; ".join(f"T={T}: " + ", ".join(f"{v} of {k}" for k, v in c.items()) for T, c in seen.items())
        parts.append(rules.part(model, rules.VERIFIED if same else rules.FAILS, effect))
    return parts, rules.combine(p["verdict"] for p in parts)


def transform_deviation(process, x: Tensor, t: float = 0.5, reference=None) -> Tensor:
    """E||F(x, t) - R(x, t)|| / E||x|| per member, x [G, N, D] -> [G]: how far F has moved from the identity
    (reference None) or lies from another transform R (e.g. `StraightForward.transform`)."""
    tt = torch.tensor(float(t), dtype=torch.float64)
    with torch.no_grad():
        f, r = process.transform(x, tt), x if reference is None else reference(x, tt)
    return ((f - r).norm(dim=-1).mean(-1) / x.norm(dim=-1).mean(-1)).cpu()


def jsonable(value):
    """Chapter 4's measurements as JSON for the results file: tuple keys joined by spaces, tensors and arrays
    as nested lists, nested dicts, lists and tuples converted throughout."""
    import numpy as np

    if isinstance(value, dict):
        return {" ".join(map(str, k)) if isinstance(k, tuple) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (Tensor, np.ndarray, np.generic)):
        return np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value).tolist()
    return value


# ---------------------------------------------------------------------------------------------
# Measurements the chapter repeats for several models
# ---------------------------------------------------------------------------------------------


def few_step_bound(model, x: Tensor, times, *, decoder, reps: int, seed: int, variances: Tensor | None = None) -> Tensor:
    """The whole bound on the grid `times` (every KL term), averaged over `reps` draws seeded seed + r, per
    member: x [G, N, D] -> [G] nats. With `variances` [steps, G], DDPM's bound at those reverse variances
    (`analytic_bound`)."""
    from diffusion_study.core.objectives import vlb_terms

    runs = []
    with torch.no_grad():
        for r in range(reps):
            g = torch.Generator().manual_seed(seed + r)
            runs.append(vlb_terms(model, x, decoder=decoder, times=times, generator=g).total if variances is None
                        else analytic_bound(model, x, times, variances, decoder=decoder, generator=g))
    return torch.stack(runs).mean(0).mean(-1).cpu()


def sampler_study(model, noise: Tensor, fine_grid, grids: list, to_data) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic (DDIM) sampling of `model` from `noise` [G, N, 2]: the paths on `fine_grid`
    ([K + 1, G, N, 2] latents), their curvature (`path_curvature`, mean over points, [G]) and, for each grid
    in `grids`, the mean distance of its end point from the fine one in data units ([len(grids), G])."""
    from diffusion_study.core.samplers import ddim_sample

    trail = [noise]
    end = to_data(ddim_sample(model, noise, fine_grid, callback=lambda info: trail.append(info["z"])))
    paths = torch.stack(trail)
    errors = torch.stack([(to_data(ddim_sample(model, noise, g)) - end).norm(dim=-1).mean(-1).cpu() for g in grids])
    return paths, path_curvature(paths).mean(-1).cpu(), errors


def training_calls(loss, **modules: nn.Module) -> dict[str, int]:
    """Forward calls of each module in `modules` during one forward and backward pass of `loss()` (a
    callable returning a tensor): {name: calls} (`CallCounter`)."""
    with CallCounter(**modules) as counter:
        out = loss()
        if out.requires_grad:
            out.mean().backward()
    return dict(counter.counts)


def trace_curves(records: list, total: int, final, members=slice(None)) -> tuple:
    """A `TransformTrace`'s records plus the final values as curves: (steps [R + 1], norm [R + 1, S],
    spread [R + 1, S]) for the members `members` of each record; final = (norm [S], spread [S])."""
    import numpy as np

    steps = np.array([r[0] for r in records] + [total])
    return (steps, *(np.stack([r[1 + i][members].cpu().numpy() for r in records] + [np.asarray(final[i])]) for i in (0, 1)))


def seed_rows(values: dict, fmt: str = ".3f") -> list[list[str]]:
    """Table rows [name, 'mean ± half' per data set] from {name: [D, S] per-seed values}."""
    return [[name] + [seed_text(r, fmt) for r in rows] for name, rows in values.items()]


LABELS = {"ddpm": "DDPM", "ndm": "NDM", "ndm-matched": "NDM, matched time", "ndm-gain": "NDM, F = c(t) x",
          "ddpm-wide": "DDPM, wider", "ddpm-halfway": "DDPM after half the steps",
          "ddpm-analytic": "DDPM, optimal reverse variance"}  # the chapter's models, as the tables name them


def bound_loss(times, decoder):
    """The training loss on the bound of the grid `times`: loss(model, batch [G, B, G, D], generator) -> [G, B],
    one KL term per example (unbiased), each member on its own column (`member_columns`)."""
    from diffusion_study.core.objectives import vlb_terms

    return lambda model, batch, g: vlb_terms(model, member_columns(batch), decoder=decoder, times=times,
                                             n_timesteps=1, generator=g).total


def chapter_data(datasets, n_train: int, n_test: int, seeds) -> tuple[Tensor, Tensor, dict]:
    """Chapter 4's data: train [n_train, G, 2] (member g reads column g), test [G, n_test, 2] with member
    d * S + s = data set d, seed s (drawn with seed 1000 d + s), and the exact held-out NLL per data set
    (log 8 for the checkerboard, the mixture's own density for two Gaussians, None for two moons)."""
    from diffusion_study.data.toy2d import toy_split, two_gaussians

    splits = [toy_split(n, n_train, n_test, seed=1000 * d + s) for d, n in enumerate(datasets) for s in seeds]
    train, test = torch.stack([tr for tr, _ in splits], 1), torch.stack([te for _, te in splits], 0)
    S = len(seeds)
    exact = {n: math.log(8.0) if n == "checkerboard" else None for n in datasets}
    if "two_gaussians" in datasets:
        d = list(datasets).index("two_gaussians")
        exact["two_gaussians"] = float(-two_gaussians().log_prob(test[d * S:(d + 1) * S].reshape(-1, 2)).mean())
    return train, test, exact


def structure_table(datasets, x: Tensor):
    """`structure` of each data set's members' points x [G, N, 2] (data set d: members d * S .. d * S + S - 1):
    [D, S] float64 numpy."""
    S = x.shape[0] // len(datasets)
    return by_dataset(torch.cat([structure(n, x[d * S:(d + 1) * S].cpu()) for d, n in enumerate(datasets)]), len(datasets))


def noise_loss(model, batch: Tensor, generator) -> Tensor:
    """The plain noise-prediction loss (`continuous_time.noise_prediction_loss`) as a training loss on the
    ensemble's batch [G, B, G, D] -> [G, B] (claim N6)."""
    from diffusion_study.core.continuous_time import noise_prediction_loss

    return noise_prediction_loss(model, member_columns(batch), generator)
