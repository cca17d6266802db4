"""Chapter 2's figures: each function draws one figure of at most four panels and returns it (the chapter
saves it with `book.plotting.save_figure(..., check="raise")`). Inputs are the chapter's measurements:
`table` functions return [rows, columns] arrays, samples are [N, 2] tensors, per-seed values lists.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.colors import LogNorm, TwoSlopeNorm
from matplotlib.ticker import NullFormatter

from diffusion_study.book.plotting import figsize
from diffusion_study.eval import metrics
from diffusion_study.studies.toy_grid import READINGS, sampler_applies

PANELS = {"energy": ("energy distance (log colour)", "rocket_r", True),
          "sliced_w": ("sliced W2 (log colour)", "rocket_r", True),
          "mode_error": ("mode-weight error", "rocket_r", False), "log_density": ("precision: mean log p", "mako", False),
          "bound": ("held-out NLL bound [nats]", "rocket_r", True),
          "memorisation": ("memorised share (data: 0.05)", "rocket_r", False),
          "low_density": ("low-density share (data: 0.05)", "vlag", False),
          "mean_distance": ("distance to nearest mean (data: centre)", "vlag", False)}


def grid_table(rows: dict, cells: dict, name: str, row_keys, col_keys, stat: str = "mean") -> np.ndarray:
    """[len(row_keys), len(col_keys)] array of rows[name][cell][stat] for cells (process, schedule, target,
    sampler) = (p, s, t, m) with (p, t) a row key and (s, m) a column key; NaN where the cell is undefined."""
    out = np.full((len(row_keys), len(col_keys)), np.nan)
    for i, (p, t) in enumerate(row_keys):
        for j, (s, m) in enumerate(col_keys):
            if (p, s, t, m) in cells:
                out[i, j] = rows[name][cells[p, s, t, m]][stat]
    return out


def metric_figure(names, rows, cells, row_keys, col_keys, centres: dict):
    """Heatmaps of the grid, one metric a panel, one above the other at the page's width: mean over seeds and
    the half-width of its 95 % interval in each cell; `centres` {metric: the data's value} for diverging colours."""
    row_labels = [f"{p.replace('_', '-')} · {t} ({READINGS[t]})" for p, t in row_keys]
    fig, axes = plt.subplots(len(names), 1, figsize=figsize(len(names) * (0.34 * len(row_keys) + 0.5) + 0.5))
    for ax, name in zip(np.atleast_1d(axes), names):
        title, cmap, log = PANELS[name]
        mean, low, high = (grid_table(rows, cells, name, row_keys, col_keys, s) for s in ("mean", "low", "high"))
        labels = np.vectorize(lambda m, l, h: "" if np.isnan(m) else f"{m:.2g}\n±{(h - l) / 2:.1g}")(mean, low, high)
        finite = mean[np.isfinite(mean)]
        norm = LogNorm(max(finite.min(), 1e-3), finite.max()) if log and finite.size else None
        centre = centres.get(name)
        if centre is not None and finite.size and finite.min() < centre < finite.max():
            norm = TwoSlopeNorm(centre, finite.min(), finite.max())
        ax.grid(False)
        sns.heatmap(mean, ax=ax, annot=labels, fmt="", cmap=cmap, norm=norm, mask=np.isnan(mean), robust=norm is None,
                    annot_kws={"fontsize": 8}, cbar_kws={"shrink": 0.9}, linewidths=0.5, linecolor="white")
        for i, (p, t) in enumerate(row_keys):
            for j, (s, m) in enumerate(col_keys):
                if np.isnan(mean[i, j]):
                    why = "= DDIM" if not sampler_applies(p, m) else "no bound" if name == "bound" else "n/a"
                    ax.text(j + 0.5, i + 0.5, why, ha="center", va="center", fontsize=8, color="grey")
        ax.set_title(title)
        ax.set_xticklabels([f"{s}\n{m}" for s, m in col_keys], rotation=0)
        ax.set_yticklabels(row_labels, rotation=0)
    return fig


def samples_figure(panels: list[tuple[str, torch.Tensor]], data: torch.Tensor):
    """Up to four panels (2 x 2) of samples (blue, points outside the frame drawn on its edge) over held-out
    data (grey): panels [(title, samples [N, 2])]."""
    n_rows = -(-len(panels) // 2)
    fig, axes = plt.subplots(n_rows, 2, figsize=figsize(2.4 * n_rows + 0.2), sharex=True, sharey=True)
    for ax, (title, pts) in zip(np.atleast_1d(axes).ravel(), panels):
        ax.set(xlim=(-4.5, 4.5), ylim=(-3.5, 3.5))
        ax.scatter(data[:300, 0], data[:300, 1], s=0.5, color="0.75")
        ax.scatter(pts[:, 0].clamp(-4.4, 4.4), pts[:, 1].clamp(-3.4, 3.4), s=0.8, alpha=0.6, color="C0")
        ax.set_title(title, fontsize=9)
    for ax in np.atleast_1d(axes).ravel()[len(panels):]:
        ax.set_visible(False)
    return fig


def trajectories_figure(panels: list[tuple[str, torch.Tensor]], data: torch.Tensor):
    """Sampling paths, up to three panels in a row: panels [(title, paths [R, points, 2])], coloured by t / T
    (yellow t = T to purple t = 0), the samples as red crosses, over held-out data (grey)."""
    fig, axes = plt.subplots(1, 3, figsize=figsize(2.4), sharex=True, sharey=True)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (title, paths) in zip(axes, panels):
        paths = paths.clamp(-6, 6)
        progress = np.linspace(1, 0, paths.shape[0])
        ax.scatter(data[:300, 0], data[:300, 1], s=0.5, color="0.85")
        ax.plot(paths[:, :, 0], paths[:, :, 1], color="0.5", lw=0.3)
        ax.scatter(paths[:, :, 0].reshape(-1), paths[:, :, 1].reshape(-1), c=np.repeat(progress, paths.shape[1]),
                   cmap="viridis", s=1.5, vmin=0, vmax=1)
        ax.scatter(paths[-1, :, 0], paths[-1, :, 1], marker="x", color="C3", s=12)
        ax.set(xlim=(-6.2, 6.2), ylim=(-4, 4))
        ax.set_title(title, fontsize=9)
    return fig


def field_figure(panels: list[tuple[str, torch.Tensor, bool]], points: torch.Tensor):
    """Up to four quiver panels (2 x 2) of -eps fields at `points` [P, 2]: panels [(title, eps [P, 2], exact)],
    exact fields red, learned ones blue."""
    fig, axes = plt.subplots(2, 2, figsize=figsize(4.6), sharex=True, sharey=True)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (title, vec, exact) in zip(axes.ravel(), panels):
        ax.quiver(points[:, 0], points[:, 1], -vec[:, 0], -vec[:, 1], angles="xy", scale_units="xy", scale=2.5,
                  color="C3" if exact else "C0", width=0.004)
        ax.set(xlim=(-4.5, 4.5), ylim=(-3.5, 3.5))
        ax.set_title(title, fontsize=9)
    return fig


def score_error_figure(curves: list[dict], frac: np.ndarray, points: list[dict], sampler: str):
    """Left: cosine(implied, exact score) against t / T, curves [{label, color, style, values [seeds, K]}];
    right: runs' score error against energy distance, points [{x, y, color, marker}]."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(3.4))
    for c in curves:
        mean, low, high = metrics.t_interval(c["values"].T)
        axes[0].plot(frac, mean, c["style"], color=c["color"], marker=".", label=c["label"])
        axes[0].fill_between(frac, low, high, color=c["color"], alpha=0.15)
    axes[0].set(xscale="log", xlabel="$t / T$", ylabel="cosine(implied, exact score)", ylim=(-0.2, 1.02))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    for p in points:
        axes[1].scatter(p["x"], p["y"], color=p["color"], marker=p["marker"], s=18)
    axes[1].set(xscale="log", yscale="log", xlabel="1 − mean cosine similarity (score)",
                ylabel=f"energy distance ({sampler})")
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].legend([plt.Line2D([], [], marker=m, ls="", color="0.4") for m in ("o", "^")], ["cosine", "linear"],
                   fontsize=8)
    return fig


def schedule_figure(mi_ts, mi: dict, ch1_below: dict, pairs: list[tuple[str, list, list]]):
    """Left: I(x0; x_t) per schedule (mi[s] [K, 2]: value, standard error) with chapter 1's crossings of 0.1 nats;
    right: linear / cosine energy-distance ratios with Welch 95 % intervals on the logarithms, pairs
    [(label, linear per-seed, cosine per-seed)]."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(3.2))
    for k, (s, values) in enumerate(mi.items()):
        keep = values[:, 0] > 2 * values[:, 1]
        axes[0].errorbar(mi_ts[keep], values[keep, 0], yerr=values[keep, 1], color=f"C{k}", marker=".", capsize=2,
                         label=s)
        if s in ch1_below:
            axes[0].axvline(ch1_below[s], color=f"C{k}", ls=":", lw=1)
    axes[0].axhline(0.1, color="grey", lw=0.8, ls=":")
    axes[0].set(yscale="log", xlabel="$t / T$", ylabel=r"$I(x_0; x_t)$ [nats]", title="information left (ch. 1, K7)")
    axes[0].legend()
    if pairs:
        ratio = np.exp([metrics.welch_interval(np.log(lin), np.log(cos)) for _, lin, cos in pairs])
        axes[1].errorbar(range(len(pairs)), ratio[:, 0], yerr=[ratio[:, 0] - ratio[:, 1], ratio[:, 2] - ratio[:, 0]],
                         fmt="o", color="C0", capsize=3)
        axes[1].set_xticks(range(len(pairs)), [p[0] for p in pairs], fontsize=8)
    for level in (0.5, 1.0, 2.0):
        axes[1].axhline(level, color="C3" if level != 1 else "grey", lw=0.8, ls=":" if level != 1 else "-")
    axes[1].set(ylabel="energy dist.: linear / cosine", title="training consequence (K3)", yscale="log")
    return fig


def recovery_figure(originals, reconstructed, title: str, per_config: list[tuple[str, str, np.ndarray]],
                    threshold: float):
    """Top: training points (green) and their reconstructions (red crosses) by one pairing model; bottom:
    per configuration (label, process, per-seed recovery error in units of the data's scale) the mean
    and 95 % interval, log axis, with the verdict's threshold dotted."""
    n = len(per_config)
    fig, axes = plt.subplots(2, 1, figsize=figsize(2.6 + 0.2 * n + 0.9),
                             gridspec_kw={"height_ratios": [2.6, 0.2 * n + 0.6]})
    axes[0].scatter(originals[:, 0], originals[:, 1], s=6, color="C2", label="training point")
    axes[0].scatter(reconstructed[:, 0], reconstructed[:, 1], s=6, color="C3", marker="x", label="reconstruction")
    for a, b in zip(originals, reconstructed):
        axes[0].plot([a[0], b[0]], [a[1], b[1]], color="0.6", lw=0.4)
    axes[0].set(xlim=(-4.5, 4.5), ylim=(-3, 3), title=title)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    colors = {"stochastic": "C0", "noise_free": "C1", "pairing": "C2"}
    for k, (label, process, values) in enumerate(per_config):
        m_, lo, hi = metrics.t_interval(np.asarray(values))
        lo = max(float(lo), 1e-4)
        axes[1].errorbar([m_], [k], xerr=[[m_ - lo], [hi - m_]], fmt="o", capsize=2, color=colors[process])
    axes[1].axvline(threshold, color="grey", ls=":", lw=0.8)
    axes[1].set_yticks(range(n), [label for label, _, _ in per_config], fontsize=8)
    axes[1].set(xlabel="recovery error / data scale", xscale="log", ylim=(n - 0.5, -0.5))
    return fig


def signatures_figure(families: dict[str, list[dict]], margins: dict[str, float], labels: dict[str, str]):
    """K6: per signature (one panel each) every cell's effect and 95 % interval over seeds, coloured by its
    Holm-corrected class (red supported, blue contradicted, grey inconclusive); margins dotted."""
    fig, axes = plt.subplots(1, len(families), figsize=figsize(0.17 * max(map(len, families.values())) + 1.4),
                             sharey=True)
    axes = np.atleast_1d(axes)
    cells = [p["setting"] for p in next(iter(families.values()))]
    for ax, (name, family) in zip(axes, families.items()):
        for verdict, color in (("supported", "C3"), ("contradicted", "C0"), ("inconclusive", "0.5")):
            ks = [k for k, p in enumerate(family) if p["verdict"] == verdict]
            if ks:
                mid = np.array([np.mean(family[k]["interval"]) for k in ks])
                half = np.array([np.diff(family[k]["interval"])[0] / 2 for k in ks])
                ax.errorbar(mid, ks, xerr=half, fmt="o", ms=3, capsize=2, color=color, lw=1)
        ax.axvline(margins[name], color="C3", ls=":", lw=1)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set(title=name, xlabel=labels[name])
        ax.set_xscale("symlog", linthresh=0.1)
        ax.xaxis.set_major_locator(plt.FixedLocator([-10, -1, 0, 1]))  # -10: the collapse onto one point
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    short = [c.replace("noise_free", "nf").replace("stochastic", "st").replace("pairing", "pr")
             .replace("ancestral", "anc") for c in cells]
    axes[0].set_yticks(range(len(cells)), short, fontsize=8)
    axes[0].set_ylim(len(cells) - 0.5, -0.5)
    return fig


def interval_text(mean: float, low: float, high: float, fmt: str) -> str:
    """'mean [low, high]' in `fmt`, or '-' for a missing mean."""
    if not np.isfinite(mean):
        return "-"
    return f"{format(mean, fmt)} [{format(low, fmt)}, {format(high, fmt)}]"


def metric_rows(rows: dict, cells: dict, shown: dict, references: dict | None = None) -> list[list[str]]:
    """Rows for `book.plotting.html_table`: one per cell (process/schedule/target, sampler) with each shown
    metric {name: (header, fmt)} as 'mean [95 % interval]' over seeds, then one per reference
    {label: {name: per-draw values}} (e.g. the Gaussian fit, the held-out data) in the same form."""
    out = []
    for key, i in cells.items():
        out.append(["/".join(key[:3]), key[3]]
                   + [interval_text(rows[n][i]["mean"], rows[n][i]["low"], rows[n][i]["high"], f) for n, (_, f) in shown.items()])
    for label, values in (references or {}).items():
        line = [label, ""]
        for n, (_, f) in shown.items():
            v = values.get(n)
            v = None if v is None else np.asarray(v, dtype=float).reshape(-1)
            line.append("-" if v is None else interval_text(*metrics.t_interval(v), f) if v.size > 1 else format(v[0], f))
        out.append(line)
    return out


@torch.no_grad()
def eps_fields(grid, mixture, schedule: str, points: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """The exact -sigma score E[eps | x_t] of the noised mixture at `step` and the eps each stochastic-process
    network of `schedule` implies (seed 0), at points [P, 2]: {"exact" or target: [P, 2] float64}. Learned
    arrows longer than the longest exact one are cut to its length (for drawing)."""
    a, s = (v.item() for v in grid.schedules[schedule].alpha_sigma(torch.tensor(step)))
    out = {"exact": mixture.optimal_eps(points.double(), a, s)}
    G, device = grid.members, grid.coef.device
    _, eps_hat = grid.implied(points.expand(G, -1, -1).contiguous().to(device),
                              torch.full((G, len(points)), step, device=device))
    longest = out["exact"].norm(dim=-1).max()
    for c in grid.spec.configs:
        if c.process == "stochastic" and c.schedule == schedule:
            vec = eps_hat[grid.spec.member_index(c).start].cpu().double()
            out[c.target] = vec * (longest / vec.norm(dim=-1, keepdim=True)).clamp(max=1)
    return out
