"""Chapter 5's figures: each function draws one figure of at most four panels at the page's width and returns it
(the chapter saves it with `book.plotting.save_figure(..., check="warn")`). Inputs are the chapter's measurements:
curves [[step, bits/dim], ...] per run, per-seed values [S], images [N, C, H, W] in [-1, 1].
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from diffusion_study.book.plotting import figsize
from diffusion_study.eval.stats import mean_interval
from diffusion_study.studies.sampling import tile_images

COLORS = {"DDPM": "C0", "NDM": "C1", "NDM with scalar F": "C2", "wider DDPM": "C4"}


def _color(label: str) -> str:
    return next((c for k, c in sorted(COLORS.items(), key=lambda kc: -len(kc[0])) if label.startswith(k)), "C7")


def curves_figure(curves: dict[str, list], baselines: dict[str, float]):
    """Test bits/dim against optimizer steps, every run (one line a seed): left the T = 1000 models, right the
    T = 10 models; the baselines as grey lines; the y axis from the best run to the worst baseline."""
    fig, axes = plt.subplots(1, 2, figsize=figsize(2.9), sharey=True)
    values = [p[1] for cs in curves.values() for c in cs for p in c]
    named = set()
    for label, cs in curves.items():
        ax = axes[1] if label.endswith("T = 10") else axes[0]
        name = label.replace(", T = 1000", "").replace(", T = 10", "")
        for c in cs:
            c = np.asarray(c, dtype=float).reshape(-1, 2)
            ax.plot(c[:, 0], c[:, 1], color=_color(label), lw=1.0, ls="--" if "long" in label else "-",
                    label=None if name in named else name)
            named.add(name)
    for ax in axes:
        for ls, (name, value) in zip((":", "-."), baselines.items()):
            ax.axhline(value, color="grey", lw=0.8, ls=ls, label=name if ax is axes[0] else None)
    top = max(baselines.values()) + 0.05
    axes[0].set(ylim=(min(values) - 0.02 if values else 0, top), xlabel="optimizer steps", ylabel="test bits/dim",
                title="T = 1000 models")
    axes[1].set(xlabel="optimizer steps", title="T = 10 models")
    fig.legend(loc="outside lower center", ncol=4, fontsize=8)
    return fig


def samples_figure(fd: dict[str, np.ndarray], floor: np.ndarray, tiles: dict[str, "torch.Tensor"]):
    """Left: Frechet distance (classifier features) to the test images per model, mean and 95% interval over seeds,
    the data-against-data floor as a grey band; right: samples of the first seed, one row a model."""
    fig, (ax, im_ax) = plt.subplots(1, 2, figsize=figsize(2.8), width_ratios=[1, 1.2])
    labels = list(fd)
    ivs = [mean_interval(fd[k]) for k in labels]
    ys = np.arange(len(labels))
    for y, label, iv in zip(ys, labels, ivs):
        ax.errorbar([iv.mean], [y], xerr=[[iv.mean - max(iv.low, 0)], [iv.half_width]], capsize=3,
                    fmt="s" if label.endswith("T = 10") else "o", color=_color(label))
    ax.axvspan(float(np.min(floor)), float(np.max(floor)), color="grey", alpha=0.3, lw=0)
    ax.set(yticks=ys, yticklabels=labels, xlabel="Frechet distance", title="sample quality")
    ax.set_xlim(left=0)
    ax.invert_yaxis()
    rows = [tiles[k][:, 0] for k in tiles]
    H = rows[0].shape[-2] + 2
    im_ax.imshow(tile_images(rows).numpy(), cmap="gray_r", vmin=-1, vmax=1)
    im_ax.set(xticks=[], yticks=[H * i + H / 2 for i in range(len(rows))], yticklabels=list(tiles), title="samples")
    im_ax.yaxis.tick_right()
    im_ax.grid(False)
    return fig


def transform_figure(pics, times, measures: dict[str, dict[str, np.ndarray]]):
    """Left: F(x, t) of a few test images (columns) at each t (rows); right: the stroke-width ratio F(x, t) / x
    per model ({label: {"stroke width": [S, len(times)]}}), mean and 95% interval over seeds."""
    fig, (ax, mx) = plt.subplots(1, 2, figsize=figsize(2.6))
    lo, hi = float(pics.min()), float(pics.max())
    H = pics.shape[-2] + 2
    ax.imshow(tile_images([pics[j, :, 0] for j in range(len(times))], pad=lo).numpy(), cmap="gray_r", vmin=lo, vmax=hi)
    ax.set(xticks=[], yticks=[H * j + H / 2 for j in range(len(times))], yticklabels=[f"t = {t:g}" for t in times],
           title="F(x, t), NDM at T = 10")
    ax.grid(False)
    for label, m in measures.items():
        v = np.asarray(m["stroke width"])
        ivs = [mean_interval(v[:, j]) for j in range(len(times))]
        mx.errorbar(times, [i.mean for i in ivs], yerr=[i.half_width for i in ivs], capsize=2, color=_color(label),
                    ls="--" if label.endswith("T = 10") else "-", label=label)
    mx.axhline(1, color="grey", lw=0.8)
    mx.set(xlabel="t", ylabel="stroke width of F(x, t) / of x", title="what F does to the strokes")
    fig.legend(*mx.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    return fig


def floor_figure(lams, floors: dict[str, list], headline: float, low: float = 1e-4):
    """The decoder term's floor (bits/dim with a perfect x_hat) against log-SNR at the first latent, one line per
    number of levels, on a log axis clipped at `low` (below it the floor is zero for any purpose); the headline
    end point as a vertical line."""
    fig, ax = plt.subplots(figsize=figsize(2.4, 0.6))
    for name, values in floors.items():
        ax.plot(lams, np.maximum(np.asarray(values, dtype=float), low), label=name)
    ax.axvline(headline, color="grey", ls=":", lw=0.8)
    ax.set(yscale="log", ylim=(low, None), xlabel="log-SNR at the first latent", ylabel="decoder floor [bits/dim]")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def cost_figure(seconds: dict[str, np.ndarray]):
    """Milliseconds per optimizer step of each model in the bench: the rounds as dots, their median as a bar."""
    fig, ax = plt.subplots(figsize=figsize(2.0, 0.8))
    labels = list(seconds)
    for y, label in enumerate(labels):
        v = 1e3 * np.asarray(seconds[label])
        ax.barh([y], [np.median(v)], color=_color(label), alpha=0.5)
        ax.plot(v, np.full(len(v), y), "k.", ms=3)
    ax.set(yticks=range(len(labels)), yticklabels=labels, xlabel="ms per optimizer step (bench, 1 thread)")
    ax.invert_yaxis()
    return fig
