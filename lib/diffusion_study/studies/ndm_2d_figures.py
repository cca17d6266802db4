"""Chapter 4's figures (NDM in 2D): each function draws one figure at the page's size and returns it (the
chapter saves it with `book.plotting.save_figure(..., check="warn")`). Legends sit below the axes, off the
data; axis ranges come from the bulk of the values (`robust_limits`), so one outlying seed cannot squash
the rest. Inputs: per-seed tables [D, S] (data sets x seeds) as numpy arrays, points [N, 2] tensors.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from diffusion_study.book.plotting import figsize
from diffusion_study.eval.stats import mean_interval

COLORS = {"DDPM": "C0", "NDM": "C1", "NDM restricted": "C2", "noise loss": "C3"}


def robust_limits(values, pad: float = 0.15, include=()) -> tuple[float, float]:
    """(low, high) covering the 5th to 95th percentile of the finite `values` (and the values in `include`,
    e.g. 0 or a margin), padded by `pad` of the span: an outlier falls outside and is drawn at the edge."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    lo, hi = (np.percentile(v, 5), np.percentile(v, 95)) if v.size else (0.0, 1.0)
    lo, hi = min([lo, *include]), max([hi, *include])
    span = hi - lo if hi > lo else max(abs(hi), 1e-3)
    return lo - pad * span, hi + pad * span


def _legend_below(fig, axes, ncol: int = 2) -> None:
    handles, labels = [], []
    for ax in np.atleast_1d(axes).ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h), labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)


def _intervals(ax, x, table, limits, **style) -> None:
    """Means and 95% intervals of each row of `table` [D, S] at positions x, clipped to `limits` (an outlier
    is drawn as a triangle on the edge)."""
    ivs = [mean_interval(row) for row in table]
    m = np.array([i.mean for i in ivs])
    h = np.nan_to_num(np.array([i.half_width for i in ivs]))
    lo, hi = limits
    clipped = np.clip(m, lo, hi)
    ax.errorbar(x, clipped, yerr=[np.clip(clipped - (m - h), 0, None) * (m > lo), np.clip(m + h - clipped, 0, None) * (m < hi)],
                fmt=style.pop("fmt", "o"), capsize=3, ms=5, **style)
    for xi, mi in zip(x, m):
        if mi < lo or mi > hi:
            ax.plot(xi, lo if mi < lo else hi, marker="v" if mi < lo else "^", color=style.get("color"), ms=7)


def transform_figure(rows: list[tuple[str, list[tuple[float, object]], object]]):
    """F(x, t) at a few times, one row per data set: rows [(data set, [(t, F [N, 2])], colour [N])]."""
    n_cols = len(rows[0][1])
    aspects = []  # each row's height / width, from the extent of its points, so that no row is mostly blank
    for _, panels, _ in rows:
        pts = np.concatenate([np.asarray(f) for _, f in panels])
        span = pts.max(0) - pts.min(0)
        aspects.append(float(np.clip(span[1] / max(span[0], 1e-9), 0.6, 1.5)))
    width = figsize(1.0)[0] / n_cols
    fig, axes = plt.subplots(len(rows), n_cols, figsize=figsize(width * sum(aspects) + 0.5), sharex="row", sharey="row",
                             gridspec_kw={"height_ratios": aspects}, squeeze=False)
    for r, (name, panels, colour) in enumerate(rows):
        for c, (t, f) in enumerate(panels):
            ax = axes[r, c]
            ax.scatter(f[:, 0], f[:, 1], s=2, c=colour, cmap="viridis", alpha=0.7)
            ax.set(aspect="equal", xticks=[], yticks=[])
            if r == 0:
                ax.set_title(f"t = {t:g}")
        axes[r, 0].set_ylabel(name.replace("_", "\n"))
    return fig


def nll_figure(panels: dict[str, dict[str, np.ndarray]], datasets, delta: float):
    """NDM's NLL minus a comparison model's, per data set: panels {title: {series label: [D, S]}}, one panel
    each (at most two); grey band +-delta."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize(3.0), sharey=True, squeeze=False)
    everything = [v for series in panels.values() for t in series.values() for v in np.ravel(t)]
    limits = robust_limits(everything, include=(-2 * delta, 2 * delta))
    for ax, (title, series) in zip(axes[0], panels.items()):
        width = 0.6 / max(1, len(series))
        for k, (label, table) in enumerate(series.items()):
            x = np.arange(len(datasets)) + (k - (len(series) - 1) / 2) * width
            _intervals(ax, x, table, limits, color=f"C{k + 1}", label=label, fmt="osD^"[k % 4])
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhspan(-delta, delta, color="grey", alpha=0.15, lw=0)
        ax.set(xticks=range(len(datasets)), xticklabels=[d.replace("_", " ") for d in datasets], title=title,
               ylim=limits)
    axes[0, 0].set_ylabel("NDM − other [nats / point]")
    _legend_below(fig, axes)
    return fig


def samples_figure(rows: list[tuple[str, object, list[tuple[str, object]]]]):
    """Samples over held-out data (grey), one row per data set: rows [(data set, data [N, 2], [(title,
    samples [N, 2])])]; each row framed by its data's extent (padded), points outside drawn on the frame."""
    n_cols = len(rows[0][2])
    frames = []
    for _, data, _ in rows:
        data = np.asarray(data)
        lo, hi = data.min(0), data.max(0)
        pad = 0.15 * (hi - lo)
        frames.append((lo - pad, hi + pad))
    aspects = [float(np.clip((hi[1] - lo[1]) / (hi[0] - lo[0]), 0.6, 1.5)) for lo, hi in frames]
    width = figsize(1.0)[0] / n_cols
    fig, axes = plt.subplots(len(rows), n_cols, figsize=figsize(width * sum(aspects) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": aspects})
    for r, ((name, data, panels), (lo, hi)) in enumerate(zip(rows, frames)):
        for c, (title, pts) in enumerate(panels):
            ax = axes[r, c]
            pts = np.clip(np.asarray(pts), lo, hi)
            ax.scatter(data[:, 0], data[:, 1], s=0.6, color="0.8")
            ax.scatter(pts[:, 0], pts[:, 1], s=0.6, alpha=0.5, color=COLORS["NDM" if "NDM" in title else "DDPM"])
            ax.set(aspect="equal", xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xticks=[], yticks=[])
            if r == 0:
                ax.set_title(title, fontsize=9)
        axes[r, 0].set_ylabel(name.replace("_", "\n"))
    return fig


def paths_figure(paths: dict[str, list], datasets, lim: float = 3.5):
    """Deterministic sampling paths, one row per model and one column per data set: paths {model: [[K + 1,
    N, 2] per data set]}; black: end points."""
    fig, axes = plt.subplots(len(paths), len(datasets), figsize=figsize(4.4), squeeze=False)
    for r, (label, per_set) in enumerate(paths.items()):
        for d, p in enumerate(per_set):
            ax = axes[r, d]
            p = np.clip(np.asarray(p), -lim, lim)
            ax.plot(p[:, :, 0], p[:, :, 1], lw=0.6, color=COLORS[label], alpha=0.6)
            ax.scatter(p[-1, :, 0], p[-1, :, 1], s=3, color="k", zorder=3)
            ax.set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
            if r == 0:
                ax.set_title(datasets[d].replace("_", " "))
        axes[r, 0].set_ylabel(label)
    return fig


def convergence_figure(end_err: dict[str, np.ndarray], steps, tol: float, curvature: dict[str, np.ndarray], datasets):
    """Left: end-point error against DDIM steps, end_err {model: [K, D] seed means}, line style per data set,
    grey: the tolerance; right: curvature {model: [D, S]} with 95% intervals. Legend below."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(3.0))
    styles = ["-", "--", ":"]
    floor = min(float(np.nanmin(np.where(e > 0, e, np.nan))) for e in end_err.values())
    for name, err in end_err.items():
        for d in range(err.shape[1]):
            axes[0].plot(steps, np.maximum(err[:, d], floor), marker="o", ms=3, color=COLORS[name], ls=styles[d % 3])
    for d, n in enumerate(datasets):
        axes[0].plot([], [], color="0.4", ls=styles[d % 3], label=n.replace("_", " "))
    axes[0].axhline(tol, color="grey", lw=0.8)
    axes[0].set(xscale="log", yscale="log", xlabel="DDIM steps", ylabel="end-point error")
    values = [v for c in curvature.values() for v in np.ravel(c)]
    limits = robust_limits(values, include=(0,))
    for k, (name, c) in enumerate(curvature.items()):
        _intervals(axes[1], np.arange(len(datasets)) + (k - 0.5) * 0.2, c, limits, color=COLORS[name], label=name)
    axes[1].set(xticks=range(len(datasets)), xticklabels=[d.replace("_", " ") for d in datasets],
                ylabel="curvature", ylim=(0, limits[1]))
    _legend_below(fig, axes, ncol=3)
    return fig


def collapse_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], level: float):
    """||F|| and the spread of F during training: curves {label: (steps [R], norm [R, S], spread [R, S])},
    seed means with 95% bands; dotted: the collapse level. y range from the bulk of the values."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(2.9), sharex=True)
    labels = (r"norm: $E\|F(x, 0.5)\| / E\|x\|$", r"spread of $F(x, 0.5)$ / of $x$")
    for k, ax in enumerate(axes):
        everything = []
        for i, (name, (steps, *tables)) in enumerate(curves.items()):
            vals = np.asarray(tables[k])
            m = vals.mean(1)
            h = np.nan_to_num(np.array([mean_interval(r).half_width for r in vals]))
            ax.plot(steps, m, color=f"C{[3, 1, 4, 2][i % 4]}", label=name)
            ax.fill_between(steps, m - h, m + h, color=f"C{[3, 1, 4, 2][i % 4]}", alpha=0.2, lw=0)
            everything += list(m)
        ax.axhline(level, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="optimizer step", ylabel=labels[k], ylim=(0, robust_limits(everything, include=(0, level))[1]))
    _legend_below(fig, axes, ncol=3)
    return fig


def cost_figure(per_step: dict[str, float], title: str):
    """Wall time per optimizer step of each model (ms), horizontal bars."""
    names = list(per_step)
    fig, ax = plt.subplots(figsize=figsize(0.28 * len(names) + 1.0))
    ax.barh(range(len(names)), [1e3 * per_step[n] for n in names], color="C0")
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="ms per optimizer step (this run, 1 thread)")
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    return fig
