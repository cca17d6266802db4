"""Chapter 1 (the forward process and the ELBO): its measurements, verdict rules and larger figures, one
function each, so that the notebook and the tests run the same code.

Checks: `forward_chain_check` (the closed-form marginal against the iterated chain, exactly and by
simulation) and its negative control `control_chain_check`; `posterior_grid_check` (the closed-form
posterior against Bayes' rule on a grid); `decomposition_check` (eq. elbo against the direct Monte-Carlo
bound); `importance_weighted_study`, `elbo_gap_sweep` and `control_gap` (the bound against the model's and
the data's negative log-likelihood); `eps_weight_error` and `weight_spread` (eq. eps-weight);
`mutual_information_curves` and `first_below` (K7); `reverse_step_study` (L4).

Verdicts: L1-L3 and K7 are identities, each part verified, failed, or inconclusive when the run had too
few seeds, chains or points (`inequality_identity`, `converged_identity`, `z_identity`); K7 follows from
the schedules' definitions. L4 is empirical (`l4_parts`: 95% intervals over seeds against the margin,
with the minimum detectable effect).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from diffusion_study.book.plotting import figsize, log_errorbar
from diffusion_study.core.denoiser import Oracle
from diffusion_study.core.exact import gaussian_bound, reverse_step_kl
from diffusion_study.core.likelihood import elbo_monte_carlo, importance_weighted_nll
from diffusion_study.core.objectives import GaussianDecoder, diffusion_kl, eps_kl_weights, vlb_terms
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import GaussianMixture
from diffusion_study.eval import verdicts as rules


LOGSNR_ENDS = {"logsnr_max": 8.0, "logsnr_min": -12.0}


def schedule(name: str, steps: int):
    """The chapter's discrete schedules by name ('linear', 'cosine', 'logsnr_cosine'), `steps` steps;
    logsnr_cosine runs from lambda = 8 to -12 whatever the number of steps."""
    return discrete_schedule(name, steps, **(LOGSNR_ENDS if name == "logsnr_cosine" else {}))


class ChainCheck(NamedTuple):
    """exact_error: largest |difference| of the propagated moments from the closed form (all t);
    z_scores: [T, 2] largest |z| over the coordinates of the simulated mean and variance at each t."""

    exact_error: float
    z_scores: np.ndarray


def forward_chain_check(schedule, x0: Tensor, n_chains: int, generator=None) -> ChainCheck:
    """Iterate z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) eps for t = 1..T from x0: [1, D] (float64)
    and compare, at every t, with q(z_t | x0) = N(alpha_t x0, sigma_t^2 I) (chapter 1, eq. forward marginal)."""
    process = GaussianForward(schedule)
    mean, var = x0.clone(), torch.zeros((), dtype=torch.float64)
    x = x0.expand(n_chains, x0.shape[1]).clone()
    exact_err, z_scores = 0.0, []
    for t in range(1, schedule.T + 1):
        beta = schedule.beta[t]
        mean, var = (1 - beta).sqrt() * mean, (1 - beta) * var + beta
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        closed_mean, closed_std = process.marginal(x0, torch.tensor([t]))
        std = closed_std.item()
        exact_err = max(exact_err, (mean - closed_mean).abs().max().item(), abs(var.item() - std**2))
        se_mean, se_var = std / math.sqrt(n_chains), std**2 * math.sqrt(2 / (n_chains - 1))
        z_scores.append([((x.mean(0) - closed_mean[0]) / se_mean).abs().max().item(),
                         ((x.var(0) - std**2) / se_var).abs().max().item()])
    return ChainCheck(exact_err, np.array(z_scores))


def control_chain_check(schedule, x0: Tensor, n_chains: int, generator=None, standard_errors: float = 10.0):
    """The negative control of `forward_chain_check`: the same chains against a closed form whose sigma_t is
    too large by a factor sized to put the simulated variance `standard_errors` standard errors off.
    Returns (factor, largest |z|); a check with power finds the control far above its threshold."""
    factor = math.sqrt(1 + standard_errors * math.sqrt(2 / n_chains))

    class TooWide(type(schedule)):
        def sigma(self, t):
            return factor * super().sigma(t)

    wrong = TooWide(schedule.name, schedule.log_alpha_bar)
    return factor, float(forward_chain_check(wrong, x0, n_chains, generator).z_scores.max())


class GridCheck(NamedTuple):
    """Closed-form posterior moments and Bayes-on-a-grid moments for one (x0, z_t, t, s)."""

    mean: float
    var: float
    grid_mean: float
    grid_var: float


def posterior_grid_check(schedule, x0: float, z_t: float, t: int, s: int | None = None,
                         points: int = 400_001, width: float = 12.0) -> GridCheck:
    """q(z_s | z_t, x0) (default s = t - 1, steps of a discrete schedule) in closed form and as the
    normalised product q(z_t | z_s) q(z_s | x0) on `points` grid points spanning +-`width` posterior
    standard deviations around the closed-form mean (1-D, float64; chapter 1)."""
    s = t - 1 if s is None else s
    process = GaussianForward(schedule)
    m, v = process.posterior(torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[z_t]], dtype=torch.float64),
                             torch.tensor([t]), torch.tensor([s]))
    c = process.step_coefficients(torch.tensor(s), torch.tensor(t))
    a_ts, var_ts = (c.alpha_t / c.alpha_s).item(), c.transition_var.item()
    a_s, var_s = c.alpha_s.item(), (1 - c.alpha_s**2).item()
    mean, var = m.item(), v.item()
    grid = torch.linspace(mean - width * math.sqrt(var), mean + width * math.sqrt(var), points, dtype=torch.float64)
    log_w = -0.5 * (z_t - a_ts * grid) ** 2 / var_ts - 0.5 * (grid - a_s * x0) ** 2 / var_s
    w = torch.softmax(log_w, 0)
    grid_mean = (w * grid).sum().item()
    return GridCheck(mean, var, grid_mean, (w * (grid - grid_mean) ** 2).sum().item())


def elbo_gap_sweep(data, x: Tensor, schedules: dict, steps: list[int], generator=None) -> dict[str, np.ndarray]:
    """Bound minus exact NLL, in nats per example, with the exact denoiser E[x0 | z_t] of `data`
    (a GaussianMixture) on its samples x: [N, D]. schedules: name -> builder(T) returning a
    schedule or None (a T the schedule cannot take). Returns name -> [len(steps), 2] of
    (mean, standard error); NaN where the builder gave None."""
    nll = -data.log_prob(x)
    out = {}
    for name, build in schedules.items():
        rows = []
        for T in steps:
            schedule = build(T)
            if schedule is None:
                rows.append((math.nan, math.nan))
                continue
            process = GaussianForward(schedule)
            gap = vlb_terms(data.denoiser(process), x, decoder=GaussianDecoder(), generator=generator).total - nll
            rows.append((gap.mean().item(), gap.std().item() / math.sqrt(len(x))))
        out[name] = np.array(rows)
    return out



def control_gap(schedule, mean, var) -> float:
    """The expected bound minus NLL of Gaussian data N(mean, diag(var)) under the exact denoiser, in closed
    form (`exact.gaussian_bound`), nats; NaN for schedule None (a T the schedule cannot take)."""
    return math.nan if schedule is None else gaussian_bound(GaussianForward(schedule), mean, var).gap

# ---------------------------------------------------------------------------------------
# The chapter's measurements (each over seeds; the notebook draws and glues them)
# ---------------------------------------------------------------------------------------


def mutual_information_curves(mixture, schedules: dict, ts, seeds, n: int) -> dict[str, np.ndarray]:
    """I(x0; x_t) of `mixture` at the steps ts under each schedule (name -> discrete schedule), by Monte
    Carlo with exact densities, n points per estimate: name -> [len(seeds), len(ts), 2] of (estimate,
    standard error) (chapter 1, K7)."""
    out = {name: [] for name in schedules}
    steps = torch.as_tensor(np.asarray(ts))
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for name, sched in schedules.items():
            a, sg = sched.alpha(steps), sched.sigma(steps)
            out[name].append([mixture.mutual_information(ai.item(), si.item(), n=n, generator=g) for ai, si in zip(a, sg)])
    return {name: np.array(runs) for name, runs in out.items()}


def first_below(curves: np.ndarray, ts, T: int, threshold: float) -> list[float]:
    """Per seed, the first t / T at which the estimate of curves: [seeds, len(ts), 2] falls below
    `threshold` (1.0 when it never does)."""
    ts = np.asarray(ts)
    below = curves[:, :, 0] < threshold
    return [float(ts[np.argmax(row)] / T) if row.any() else 1.0 for row in below]


class Decomposition(NamedTuple):
    """The ELBO decomposition (eq. elbo) against the direct Monte-Carlo bound, per seed: z: paired
    difference in standard errors; sd_ratio: spread of the direct estimate over the decomposition's;
    rows: (term, mean, standard error) at the first seed."""

    z: list[float]
    sd_ratio: list[float]
    rows: list[tuple[str, float, float]]


def decomposition_check(mixture, process, seeds, n_points: int) -> Decomposition:
    """Both sides of eq. (elbo) on the same n_points draws of `mixture` per seed (exact denoiser,
    reverse variance beta~_t, Gaussian decoder): `vlb_terms` against `elbo_monte_carlo`."""
    denoiser, z, ratio, rows = mixture.denoiser(process), [], [], []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        x = mixture.sample(n_points, g).double()
        terms = vlb_terms(denoiser, x, decoder=GaussianDecoder(), generator=g)
        direct = elbo_monte_carlo(denoiser, x, decoder=GaussianDecoder(), generator=g)
        diff = terms.total - direct  # paired: both estimates use the same data points
        z.append(diff.mean().item() / (diff.std().item() / math.sqrt(n_points)))
        ratio.append(direct.std().item() / terms.total.std().item())
        if not rows:
            rows = [(label, v.mean().item(), v.std().item() / math.sqrt(n_points))
                    for label, v in (("prior KL", terms.prior), ("sum of KL terms", terms.diffusion),
                                     ("decoder NLL", terms.decoder), ("total (decomposition)", terms.total),
                                     ("direct Monte Carlo", direct))]
    return Decomposition(z, ratio, rows)


def moment_matched_gaussian(mixture):
    """The Gaussian with the mixture's mean and (diagonal) covariance: (GaussianMixture of one
    component, mean [D], variances [D]); the control of chapter 1's bound checks."""
    w, mu, S = mixture.weights, mixture.means, mixture.covs
    mean = (w[:, None] * mu).sum(0)
    cov = (w[:, None, None] * (S + mu[:, :, None] * mu[:, None, :])).sum(0) - mean[:, None] * mean[None, :]
    if torch.count_nonzero(cov - torch.diag(torch.diag(cov))):
        raise ValueError("the control needs a diagonal covariance")
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], cov[None]), mean, torch.diag(cov)


def importance_weighted_study(datasets: dict, process, seeds, n_points: int, ks, exact=None):
    """Importance-weighted -log p_theta estimates (k chains, `importance_weighted_nll`) and the bound, per
    seed, for each data set (name -> GaussianMixture, exact denoiser). exact: name -> callable(x) -> [N]
    exact -log p_theta (the Gaussian control's `gaussian_model_nll`); otherwise the largest k is the
    reference. Returns (iw: name -> [seeds, len(ks)] mean of IW_k - reference, bound_gap: name -> [seeds]
    mean of bound - reference), nats per example."""
    exact = exact or {}
    iw, gap = {n: [] for n in datasets}, {n: [] for n in datasets}
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for name, data in datasets.items():
            den = data.denoiser(process)
            x = data.sample(n_points, g).double()
            bound = vlb_terms(den, x, decoder=GaussianDecoder(), generator=g).total
            ests = [importance_weighted_nll(den, x, decoder=GaussianDecoder(), k=k, generator=g) for k in ks]
            reference = exact[name](x) if name in exact else ests[-1]
            iw[name].append([(e - reference).mean().item() for e in ests])
            gap[name].append((bound - reference).mean().item())
    return {n: np.array(v) for n, v in iw.items()}, {n: list(v) for n, v in gap.items()}


def eps_weight_error(schedules, steps) -> float:
    """Largest |KL / w_t - 1| of a unit noise error (eq. eps-weight) over the schedules and steps: the
    library's `diffusion_kl` against `eps_kl_weights` (chapter 1, L3)."""
    err = 0.0
    x, zero = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    for sched in schedules:
        proc, w = GaussianForward(sched), eps_kl_weights(sched)
        for t in steps:
            tt = torch.tensor([t])
            a, sg = sched.alpha(tt), sched.sigma(tt)
            kl = diffusion_kl(Oracle(lambda z, _, a=a, sg=sg: (z - sg * (zero + 1)) / a, proc), x, tt - 1, tt, zero)
            err = max(err, abs(kl.item() / w[t].item() - 1))
    return err


def weight_spread(weights: Tensor, clipped_last: bool) -> dict[str, float]:
    """Of the weights w_t, t = 2..T ([T - 1]): largest / smallest ("spread"), the same without a clipped
    last step ("body"), and the share of the body's weight on its first tenth of steps ("first_tenth")."""
    body = weights[:-1] if clipped_last else weights
    return {"spread": (weights.max() / weights.min()).item(), "body": (body.max() / body.min()).item(),
            "first_tenth": (body[: len(weights) // 10].sum() / body.sum()).item()}


def reverse_step_study(mixture, process, lam_ts, dlams, seeds, n: int, m: int = 16) -> np.ndarray:
    """KL of the exact reverse step q(z_s | z_t) to its moment-matched Gaussian ("shape"), to DDPM's
    N(., beta~_t I) ("fixed") and to the optimal isotropic variance ("optimal"), at log-SNR lam_t and
    step dlam (lam_s = lam_t + dlam; `exact.reverse_step_kl`): [seeds, len(lam_ts), len(dlams), 3] nats."""
    out = np.zeros((len(seeds), len(lam_ts), len(dlams), 3))
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        for j, lt in enumerate(lam_ts):
            t = process.schedule.time_at(lt)
            for k, dl in enumerate(dlams):
                r = reverse_step_kl(mixture, process, process.schedule.time_at(lt + dl), t, n=n, m=m, generator=g)
                out[i, j, k] = [r.shape[0], r.fixed[0], r.optimal[0]]
    return out


# ---------------------------------------------------------------------------------------
# Verdicts: the identities L1-L3 and K7, the empirical L4
# ---------------------------------------------------------------------------------------

MIN_SEEDS = 3  # an identity judged by an interval over fewer seeds is inconclusive, whatever it shows
MIN_POINTS = 50  # a z-score over fewer paired points per seed is not calibrated: inconclusive
MIN_CHAINS = 1000  # likewise for the simulated chains' moments


def interval_text(values, fmt: str = ".3f", level: float = 0.95) -> str:
    """"mean ± half-width" of the `level` t-interval over per-seed values ("mean ± —" for one seed)."""
    est = rules.estimate(values)
    low, high = est.interval(level)
    half = format((high - low) / 2, fmt) if math.isfinite(low) else "—"
    return f"{format(est.mean, fmt)} ± {half}"


def inequality_identity(values, tolerance: float = 0.0, min_seeds: int = MIN_SEEDS) -> str:
    """An identity "the effect is >= 0" checked by the 95% interval [low, high] of per-seed values: fails
    when the interval lies wholly below 0; verified when low > -tolerance (no violation larger than the
    tolerance is left possible; tolerance 0: the interval lies above 0); inconclusive otherwise, or with
    fewer than `min_seeds` seeds."""
    if len(values) < min_seeds:
        return rules.IDENTITY_INCONCLUSIVE
    low, high = rules.estimate(values).interval()
    if not (math.isfinite(low) and math.isfinite(high)):
        return rules.IDENTITY_INCONCLUSIVE
    return rules.FAILS if high < 0 else rules.VERIFIED if low > -tolerance else rules.IDENTITY_INCONCLUSIVE


def converged_identity(values, tolerance: float, min_seeds: int = MIN_SEEDS) -> str:
    """An estimator that is an upper bound in expectation and converges to the exact value (importance
    weighting, `importance_weighted_nll`), checked on per-seed differences estimate - exact: verified when
    the 90% interval lies within +-tolerance (equivalence test); fails when it lies wholly below -tolerance
    (below the exact value, where the estimator cannot be); inconclusive otherwise (e.g. not yet converged
    at this k) or with fewer than `min_seeds` seeds."""
    if len(values) < min_seeds:
        return rules.IDENTITY_INCONCLUSIVE
    est = rules.estimate(values)
    if rules.equivalence(est, tolerance) == rules.SUPPORTED:
        return rules.VERIFIED
    high = est.interval(0.9)[1]
    return rules.FAILS if high < -tolerance else rules.IDENTITY_INCONCLUSIVE


def z_identity(z_max: float, threshold: float, n_samples: int, min_samples: int, control: float | None = None) -> str:
    """Simulated moments against a closed form: verified when the largest |z| stays below `threshold`,
    fails when it does not; inconclusive with fewer than `min_samples` samples, or when a negative control
    (the same check against a wrong closed form) does not pass the threshold: the check had no power."""
    if control is not None and not control > threshold:
        return rules.IDENTITY_INCONCLUSIVE
    return rules.identity(z_max, threshold, n_samples=n_samples, min_samples=min_samples)


def identity_claim(parts: list[dict], evidence: str, conditions: str) -> dict:
    """A claim record of identity parts: its verdict by `combine` (all verified -> verified, any failure
    -> fails, otherwise inconclusive)."""
    return {"verdict": rules.combine(p["verdict"] for p in parts), "evidence": evidence, "conditions": conditions,
            "parts": parts}


def l1_parts(exact_error: float, z_max: list[float], z_control: float, z_threshold: float, n_chains: int,
             grid_errors: tuple[float, float], sympy_ok: bool) -> list[dict]:
    """L1 (the forward marginal and the posterior are Gaussian in closed form): the exact recursion (to
    1e-12), the simulated moments (largest |z| per seed below z_threshold, with a negative control),
    Bayes on a grid (mean to 1e-6, variance relative 1e-4), sympy's completion of the square."""
    grid = rules.combine([rules.identity(grid_errors[0], 1e-6), rules.identity(grid_errors[1], 1e-4)])
    return [
        rules.part("exact recursion", rules.identity(exact_error, 1e-12), f"max difference {exact_error:.0e}",
                   margin="≤ 1e-12"),
        rules.part("simulated chains", z_identity(max(z_max), z_threshold, n_chains, MIN_CHAINS, z_control),
                   f"max |z| {max(z_max):.2f} (control {z_control:.1f})", margin=f"< {z_threshold:g}"),
        rules.part("posterior on a grid", grid, f"mean {grid_errors[0]:.0e}, variance rel. {grid_errors[1]:.0e}",
                   margin="≤ 1e-6, 1e-4"),
        rules.part("sympy", rules.identity(0.0 if sympy_ok else 1.0, 0.0), "eq. 7 exactly"),
    ]


def l2_parts(z_decomposition: list[float], n_points: int, z_threshold: float, bound_gap: dict, iw_control_last,
             tolerance: float, mixture_gaps: dict) -> list[dict]:
    """L2 (the negative ELBO bounds -log p): the decomposition equals the direct estimate (max |z| per seed
    below z_threshold, at least MIN_POINTS points per seed); the bound lies above the model's own -log
    p_theta (per data set, `inequality_identity`); the importance-weighted estimate reaches the exact
    -log p_theta of the Gaussian control (`converged_identity`); the bound lies above the data's -log p at
    every T and schedule (mixture_gaps: name -> [seeds, len(T)] per-seed gaps, NaN where a schedule has no
    such T; `inequality_identity` at `tolerance` nats, the worst T shown)."""
    z = max(abs(v) for v in z_decomposition)
    cols = [col[np.isfinite(col)] for runs in mixture_gaps.values() for col in np.asarray(runs, dtype=float).T
            if np.isfinite(col).any()]
    worst = min(cols, key=lambda c: rules.estimate(c).interval()[0] if len(c) > 1 else c.mean())
    parts = [rules.part("decomposition", rules.identity(z, z_threshold, n_samples=n_points, min_samples=MIN_POINTS),
                        f"max |z| {z:.2f}", margin=f"< {z_threshold:g}")]
    for name, values in bound_gap.items():
        parts.append(rules.part(f"bound − model NLL, {name}", inequality_identity(values),
                                f"{interval_text(values)} nats", interval=rules.estimate(values).interval(),
                                mde=rules.minimum_detectable_effect_of(values), margin="> 0"))
    parts.append(rules.part("IW − exact NLL, control", converged_identity(iw_control_last, tolerance),
                            f"{interval_text(iw_control_last, level=0.9)} nats",
                            interval=rules.estimate(iw_control_last).interval(0.9),
                            margin=f"within ±{tolerance:g} nats (90% interval)"))
    parts.append(rules.part("bound − data NLL, every T", rules.combine(inequality_identity(c, tolerance) for c in cols),
                            f"{interval_text(worst)} nats (worst T)", interval=rules.estimate(worst).interval(),
                            margin=f"> −{tolerance:g} nats"))
    return parts


def l3_parts(sympy_ok: bool, weight_error: float) -> list[dict]:
    """L3 (epsilon-form KL terms are weighted noise MSEs): sympy's weight, and the library's KL of a unit
    noise error over w_t (to 1e-9)."""
    return [rules.part("sympy", rules.identity(0.0 if sympy_ok else 1.0, 0.0), "w_t exactly"),
            rules.part("library KL / w_t", rules.identity(weight_error, 1e-9), f"max |ratio − 1| {weight_error:.0e}",
                       margin="≤ 1e-9")]


def k7_parts(first_linear: list[float], first_cosine: list[float], steps_below: int, T: int) -> list[dict]:
    """K7 (the linear schedule destroys the signal earlier), an identity that follows from the definitions:
    the linear log-SNR lies below the cosine's on most steps (exact), and so the measured information falls
    below its threshold earlier (cosine - linear crossing per seed, interval above 0)."""
    diff = [c - lin for lin, c in zip(first_linear, first_cosine)]
    est = rules.estimate(diff)
    return [rules.part("from the definitions: log-SNR order", rules.identity(0.0 if steps_below > T // 2 else 1.0, 0.0),
                       f"linear below cosine on {steps_below}/{T} steps", margin="> T/2"),
            rules.part("from the definitions: information crossing", inequality_identity(diff),
                       f"cosine − linear {interval_text(diff)} T", interval=est.interval(),
                       mde=rules.minimum_detectable_effect_of(diff), margin="> 0")]


def l4_parts(shape_kl: np.ndarray, dlams, eps: float) -> list[dict]:
    """L4 (the Gaussian reverse step is accurate for small steps, not for large ones), empirical, from
    shape_kl: [seeds, len(lam_ts), len(dlams)] the KL of the exact reverse step to its moment-matched
    Gaussian. "close": at the smallest step the KL stays below eps at every lambda_t (each interval below;
    the row shows the worst lambda_t); "breaks": at the largest step it exceeds eps at some lambda_t (Holm
    over the lambda_t; the row shows the largest)."""
    small, large = shape_kl[:, :, 0], shape_kl[:, :, -1]
    close = rules.combine(rules.decide_values(small[:, j], eps, direction="below") for j in range(small.shape[1]))
    breaks = rules.exists(rules.decide_family([rules.estimate(large[:, j]) for j in range(large.shape[1])], eps))
    worst_small, worst_large = int(np.argmax(small.mean(0))), int(np.argmax(large.mean(0)))
    unit = dict(unit="nats", fmt=".2g")
    return [rules.judge_values(f"close: Δλ = {dlams[0]:g}", small[:, worst_small], eps, direction="below",
                               verdict=close, **unit),
            rules.judge_values(f"breaks: Δλ = {dlams[-1]:g}", large[:, worst_large], eps, verdict=breaks, **unit)]


def l4_verdict(shape_kl: np.ndarray, dlams, eps: float) -> str:
    """L4's class at threshold eps: `combine` of `l4_parts`."""
    return rules.combine(p["verdict"] for p in l4_parts(shape_kl, dlams, eps))


# ---------------------------------------------------------------------------------------
# The chapter's larger figures (drawn at the page's width; the notebook saves and glues them)
# ---------------------------------------------------------------------------------------


def _plain(axis) -> None:
    """Log-axis tick labels as plain numbers (0.1, 1e-05), not superscripts too small to read."""
    import matplotlib.pyplot as plt

    axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))


def marginals_figure(points: Tensor, noise: Tensor, schedule, color: str, fractions=(0.1, 0.25, 0.5, 0.75)):
    """points: [N, 2] pushed through q(x_t | x_0) with the same noise [N, 2] at t = fraction * T, one panel each."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fractions), figsize=figsize(2.1), sharey=True)
    for ax, frac in zip(axes, fractions):
        z = GaussianForward(schedule).sample(points, torch.tensor([round(frac * schedule.T)]), noise)
        ax.scatter(z[:, 0], z[:, 1], s=1, alpha=0.3, color=color)
        ax.set(xlim=(-4, 4), ylim=(-4, 4), aspect="equal", xticks=[-3, 0, 3], yticks=[-3, 0, 3],
               title=f"$t$ = {frac:g} $T$", xlabel="$x_{t,1}$")
    axes[0].set_ylabel("$x_{t,2}$")
    return fig


def gap_figure(control: dict, oracle: dict, mixture: dict, steps, colors: dict):
    """Bound minus NLL against T: left, the Gaussian control in closed form (control: name -> (T's, gaps)
    drawn as lines, oracle: name -> [len(steps)] as dots); right, the mixture (name -> [len(steps), 2] of
    mean and 95% half-width over seeds) with the control dotted."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize(3.0), sharey=True)
    for name, color in colors.items():
        axes[0].plot(*control[name], color=color, label=name)
        axes[0].plot(steps, oracle[name], "o", color=color)
        axes[1].errorbar(steps, mixture[name][:, 0], yerr=mixture[name][:, 1], marker="o", color=color, capsize=2)
        axes[1].plot(steps, oracle[name], ls=":", color=color)
    for ax, title in zip(axes, ["Gaussian control", "two-Gaussian mixture"]):
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xscale="log", xlabel="number of steps $T$", title=title)
        _plain(ax.xaxis)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # 4x10^1, 6x10^1, ... ran into each other
    axes[0].set_ylabel("bound $-$ NLL [nats]")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(colors))
    return fig


def step_kl_figure(summary: np.ndarray, lam_ts, dlams, kinds=("shape", "fixed", "optimal"), floor: float = 1e-7):
    """KL per reverse step against the step size, one panel per kind of Gaussian, one line per lambda_t;
    summary: [len(lam_ts), len(dlams), len(kinds), 2] of (mean, 95% half-width); values below `floor` drawn there."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(kinds), figsize=figsize(3.0), sharey=True)
    for c, (ax, kind) in enumerate(zip(axes, kinds)):
        for j, lt in enumerate(lam_ts):
            m = np.maximum(summary[j, :, c, 0], floor)
            ax.errorbar(dlams, m, yerr=log_errorbar(m, summary[j, :, c, 1]), marker="o", capsize=2, color=f"C{j}",
                        label=rf"$\lambda_t = {lt:g}$")
        ax.set(xscale="log", yscale="log", xlabel=r"step $\Delta\lambda$", title=kind, ylim=(floor, 20))
        ax.yaxis.set_major_locator(plt.LogLocator(numticks=5))
        _plain(ax.xaxis)
        _plain(ax.yaxis)
    axes[0].set_ylabel("KL per step [nats]")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=len(lam_ts))
    return fig
