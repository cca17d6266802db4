"""Chapter 3's figures: each function draws one figure of at most four panels at the page's width and returns
it (the chapter saves it with `book.plotting.save_figure(..., check="warn")`). Inputs are the chapter's
measurements: per-seed arrays [..., G], sweeps (`sampling.Sweep`), samples [N, 2] or image rows [C, 8, 8].
Legends sit outside the axes; error bars on log axes go through `log_errorbar` (lower arms cut at a tenth of
the mean).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffusion_study.book.plotting import figsize, log_errorbar
from diffusion_study.eval.stats import mean_interval
from diffusion_study.studies.sampling import tile_images

COLORS = {"ddpm-beta": "C3", "ddpm-beta-tilde": "C1", "ddim-eta0.5": "C2", "ddim": "C0", "dopri5": "C4", "rk4": "C5"}
ODE_LABELS = {"dopri5": "PF-ODE, dopri5", "rk4": "PF-ODE, RK4"}
INVERSION_LABELS = {"toy_exact": "2D, exact denoiser", "toy_trained": "2D, trained", "digits": "digits"}


def _log_bars(ax, x, per_seed, **kw):
    """Mean over seeds with 95% intervals on a log y axis: per_seed [K, G] at x [K]."""
    iv = [mean_interval(v) for v in per_seed]
    mean = [i.mean for i in iv]
    ax.errorbar(x, mean, yerr=log_errorbar(mean, [i.half_width for i in iv]), capsize=2, **kw)


def _share_arms(intervals) -> np.ndarray:
    """[2, K] error-bar arms of intervals of shares, cut at 0 and 1 (a share cannot leave [0, 1])."""
    mean = np.array([i.mean for i in intervals])
    half = np.array([i.half_width for i in intervals])
    return np.stack([np.minimum(half, np.maximum(mean, 0)), np.minimum(half, np.maximum(1 - mean, 0))])


def quality_figure(sweeps: dict, floor: dict, panels: list[tuple[str, str, str]], labels: dict, x: str = "nfe"):
    """Sample quality (lower is better) against network calls (x = "nfe") or wall time ("seconds"), one panel per
    (sweep key, title, floor key); grey band: the floor (fresh data), lines: reverse samplers, dotted: PF-ODE."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize(3.0))
    for ax, (key, title, data) in zip(np.atleast_1d(axes), panels):
        sweep = sweeps[key]
        for name in sweep.quality:
            ode = name in ODE_LABELS
            _log_bars(ax, getattr(sweep, x)[name], sweep.quality[name], color=COLORS[name], ms=3,
                      marker="s" if ode else "o", ls=":" if ode else "-", label=labels.get(name, ODE_LABELS.get(name)))
        ax.axhspan(floor[data].min(), floor[data].max(), color="grey", alpha=0.25, lw=0)
        ax.set(xscale="log", yscale="log", title=title, xlabel="network calls" if x == "nfe" else "wall time [s]",
               ylabel="energy distance" if data == "toy" else "Frechet distance")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.yaxis.set_minor_formatter(plt.NullFormatter())  # 3x10^1 and 4x10^1 ran into each other
    handles = {h.get_label(): h for ax in np.atleast_1d(axes) for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=3, fontsize=8)
    return fig


def samples_figure(toy: list[tuple[str, torch.Tensor]], digit_rows: list[torch.Tensor], row_labels: list[str],
                   color: dict[str, str]):
    """Top: 2D samples [N, 2] per (title, samples), in a fixed frame; points outside it drawn on its edge as crosses,
    their count in the title;
    bottom: rows of digit images [C, 8, 8] in [-1, 1] tiled, labelled."""
    fig = plt.figure(figsize=figsize(4.0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.5])
    axes = top.subplots(1, len(toy), sharex=True, sharey=True)
    for ax, (title, x) in zip(np.atleast_1d(axes), toy):
        out = (x.abs() > 4).any(-1)
        outside = int(out.sum())
        ax.scatter(*x[~out].T, s=1, alpha=0.4, color=color[title.split()[0]])
        ax.scatter(*x[out].clamp(-4, 4).T, s=10, marker="x", color=color[title.split()[0]])
        ax.set(title=title + (f"\n{outside} outside" if outside else ""), xlim=(-4, 4), ylim=(-4, 4), aspect="equal",
               xticks=[], yticks=[])
        ax.title.set_fontsize(8)
    ax = bottom.subplots()
    ax.imshow(tile_images(digit_rows).numpy(), cmap="gray_r", vmin=-1, vmax=1)
    ax.set(xticks=[], yticks=[10 * i + 5 for i in range(len(digit_rows))], yticklabels=row_labels)
    ax.grid(False)
    return fig


def inversion_figure(inversion: dict, steps: dict, tolerance: dict):
    """RMS reconstruction error of DDIM inversion then decoding against steps, per model (steps[key] [K],
    inversion[key] [K, G]); dotted: the tolerances."""
    fig, ax = plt.subplots(figsize=figsize(2.6))
    for (key, err), color in zip(inversion.items(), ("C0", "C1", "C2")):
        _log_bars(ax, steps[key], err, marker="o", color=color, label=INVERSION_LABELS.get(key, key))
        ax.axhline(tolerance[key], color=color, ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="DDIM steps (encode and decode)", ylabel="RMS reconstruction error")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=3, fontsize=8)
    return fig


def likelihood_figure(toy_rows: dict, digit_rows: dict):
    """Per seed, mean with two standard errors: 2D nats per point (toy_rows {label: [G, N]}) and digits bits/dim
    (digit_rows {label: (mean [G], stderr [G])})."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(2.8))
    for i, (label, v) in enumerate(toy_rows.items()):
        v = torch.as_tensor(v).double()
        axes[0].errorbar(np.arange(v.shape[0]) + 0.15 * i, v.mean(-1), yerr=2 * v.std(-1) / v.shape[-1] ** 0.5,
                         marker="o", ls="", capsize=2, label=label)
    for i, (label, (mean, se)) in enumerate(digit_rows.items()):
        axes[1].errorbar(np.arange(len(mean)) + 0.15 * i, mean, yerr=2 * np.asarray(se), marker="s", ls="", capsize=2,
                         label=label, color=f"C{i + 3}")
    axes[0].set(xlabel="seed", ylabel="nats per point", title="2D mixture")
    axes[1].set(xlabel="seed", ylabel="bits/dim", title="digits")
    for ax, n in zip(axes, (len(next(iter(toy_rows.values()))), len(next(iter(digit_rows.values()))[0]))):
        ax.set_xticks(range(n))  # seeds are whole numbers
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1)
    return fig


def tradeoff_figure(measures: dict, scales: list[float], k: int, max_out: float):
    """Left: precision against coverage as w grows, per method (mean over seeds, 95% intervals), only the scales
    up to index k (in support); the largest w marked at each curve's end in the legend, not on the data.
    Right: share of samples outside the support against w, the limit dotted. Intervals of shares are cut at 0 and 1."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(3.0))
    markers = {"classifier-free": "o", "classifier": "s", "exact": "^"}
    for method, m in measures.items():
        p = [mean_interval(v) for v in m["precision"][: k + 1]]
        c = [mean_interval(v) for v in m["coverage"][: k + 1]]
        line = axes[0].errorbar([i.mean for i in c], [i.mean for i in p], xerr=_share_arms(c), yerr=_share_arms(p),
                                marker=markers[method], ms=4, capsize=2, label=f"{method} (w = 0 to {scales[k]:g})")
        o = [mean_interval(v) for v in m["out"]]
        axes[1].errorbar(scales, [i.mean for i in o], yerr=_share_arms(o), marker=markers[method], ms=4,
                         capsize=2, color=line.lines[0].get_color())
    axes[1].axhline(max_out, color="grey", ls=":", lw=0.8)
    axes[0].set(xlabel="coverage of the class", ylabel="precision")
    axes[1].set(xlabel="guidance scale w", ylabel="share outside the support")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=2, fontsize=8)
    return fig


def guided_samples_figure(samples: dict, labels: torch.Tensor, scales: list[float], lim: float = 4.0):
    """Classifier-free guided 2D samples per scale (samples[w] [N, 2], labels [N] the requested classes), in a
    fixed frame; points outside it drawn on its edge as crosses, their count in the title."""
    fig, axes = plt.subplots(1, len(scales), figsize=figsize(6.7 / len(scales) + 0.4), sharex=True, sharey=True)
    for ax, w in zip(np.atleast_1d(axes), scales):
        x = samples[w]
        out = (x.abs() > lim).any(-1)
        for c in range(int(labels.max()) + 1):
            mine = labels == c
            ax.scatter(*x[mine & ~out].T, s=2, alpha=0.5, color=f"C{c}")
            ax.scatter(*x[mine & out].clamp(-lim, lim).T, s=12, marker="x", color=f"C{c}")
        ax.set(title=f"w = {w:g}" + (f"\n{int(out.sum())} outside" if out.any() else ""), xlim=(-lim * 1.05, lim * 1.05),
               ylim=(-lim * 1.05, lim * 1.05), aspect="equal", xticks=[], yticks=[])
        ax.title.set_fontsize(8)
    return fig


def gradient_figure(errors: dict, lambdas: list[float], threshold: float):
    """Relative RMS error against the exact grad log q_t(y | x) by log-SNR (errors {label: [times, G]}); dotted:
    the threshold."""
    fig, ax = plt.subplots(figsize=figsize(2.6))
    for label, v in errors.items():
        _log_bars(ax, lambdas, v, marker="o", label=label)
    ax.axhline(threshold, color="grey", ls=":", lw=0.8)
    ax.set(xlabel=r"log-SNR $\lambda_t$", ylabel="relative RMS error", yscale="log")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=2, fontsize=8)
    return fig
