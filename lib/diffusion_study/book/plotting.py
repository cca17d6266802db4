"""One figure style and one way to save figures: PNG and PDF with stable names and bytes.

Every chapter calls `set_style()` once (`notebook.setup_notebook` does it) and passes each
finished figure through `save_figure`, which writes `<out_dir>/<name>.png` and
`<out_dir>/<name>.pdf` and hands the figure back for the notebook to show or glue.

Figures are drawn at the size the book shows them: the page's content column is
`SHOWN_WIDTH_PX` (660) CSS pixels wide, `CONTENT_WIDTH_IN` (6.3) inches of figure at
`DPI` (150) fill it at about two thirds of their pixels, so 10 pt text shows at about 14 px
(the page's text is 16 px). `figsize(height)` gives a figure of the column's width;
a figure of more than about four panels is split into several. `legibility_problems` says
what a reader would not be able to read (a figure far wider than the column, text shown
below `MIN_TEXT_PX`, overlapping tick labels or annotations, a legend over the data, an
error bar reaching zero on a log axis); `save_figure(..., check="warn")` warns with it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib.collections
import matplotlib.figure
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import seaborn as sns

from diffusion_study.base.io import atomic_path

DPI = 150
SHOWN_WIDTH_PX = 660  # the content column of a page at a 1280 px window (CSS px, measured)
CONTENT_WIDTH_IN = 6.3  # a figure as wide as the column: 975 px at DPI with its padding, shown at 68 %
MAX_OVERSCALE = 1.5  # a figure may hold at most this many pixels per pixel shown
MIN_TEXT_PX = 9.0  # the smallest text a reader can read, in CSS px as shown
FONT_SIZES = {"font.size": 10, "axes.labelsize": 10, "axes.titlesize": 10.5, "figure.titlesize": 11,
              "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_STYLE_SET = False
_PAD_IN = 0.1  # the padding a tight bounding box adds (savefig's and the inline backend's default)

# Metadata that would otherwise change between runs (software version strings are stable
# for a given environment; dates are not).
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "ModDate": None}


class FigureLegibilityWarning(UserWarning):
    """A figure that a reader of the book would not be able to read (see `legibility_problems`)."""


def set_style() -> None:
    """Set the book's figure style (seaborn theme, fonts embedded as TrueType in PDFs). Idempotent."""
    global _STYLE_SET
    if _STYLE_SET:
        return
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": figsize(3.0),
            # The figure shown in the page (glued: the inline backend renders at figure.dpi) is
            # the saved PNG's resolution: a click on it opens the same pixels, larger.
            "figure.dpi": DPI,
            "figure.constrained_layout.use": True,
            "savefig.dpi": DPI,
            "pdf.fonttype": 42,
            "svg.hashsalt": "diffusion_study",
            "legend.framealpha": 0.9,
            **FONT_SIZES,
        }
    )
    _STYLE_SET = True


def figsize(height: float, width: float = 1.0) -> tuple[float, float]:
    """(width, height) in inches for a figure `width` of the page's column wide (1.0: all of it)."""
    return (round(CONTENT_WIDTH_IN * width, 3), height)


def figure_paths(name: str, out_dir: str | Path) -> dict[str, Path]:
    """Return the stable file paths `save_figure` writes for `name`: {"png": ..., "pdf": ...}."""
    if not _NAME.match(name):
        raise ValueError(
            f"figure name must be lower-case letters, digits, '-' or '_', got {name!r}"
        )
    out_dir = Path(out_dir)
    return {"png": out_dir / f"{name}.png", "pdf": out_dir / f"{name}.pdf"}


def save_figure(fig: matplotlib.figure.Figure, name: str, out_dir: str | Path, *, check: str = "off"):
    """Write `fig` to `<out_dir>/<name>.png` and `.pdf` deterministically; return `fig`.

    The figure is released from pyplot (so the inline backend does not show it a second
    time) but stays usable: return it as a cell's last expression or `glue` it.
    check: "off"; "warn" (a FigureLegibilityWarning naming each of `legibility_problems`);
    "raise" (a ValueError instead, nothing written).
    """
    if check not in ("off", "warn", "raise"):
        raise ValueError(f"check must be 'off', 'warn' or 'raise', got {check!r}")
    paths = figure_paths(name, out_dir)
    if check != "off":
        problems = legibility_problems(fig)
        if problems and check == "raise":
            raise ValueError(f"figure {name!r} is not legible in the book:\n  " + "\n  ".join(problems))
        for problem in problems:
            warnings.warn(f"figure {name!r}: {problem}", FigureLegibilityWarning, stacklevel=2)
    paths["png"].parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(fig, paths["png"], format="png", dpi=DPI, metadata=_PNG_METADATA)
    _save_atomic(fig, paths["pdf"], format="pdf", metadata=_PDF_METADATA)
    plt.close(fig)
    return fig


def _save_atomic(fig: matplotlib.figure.Figure, path: Path, **kwargs) -> None:
    """savefig into a unique temporary file beside `path`, then rename it over `path`: a reader (the
    book build, another run sharing out_dir) sees the old file or the new one, never a partial one."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)


# --- legibility ------------------------------------------------------------------------------


def _renderer(fig):
    canvas = fig.canvas
    if not hasattr(canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _shown(text: matplotlib.text.Text) -> bool:
    return bool(text.get_visible() and text.get_text().strip() and text.get_alpha() != 0)


def _tick_labels(ax, axis: str, renderer) -> list:
    """The tick labels drawn on one axis of `ax`: those of ticks inside the view."""
    box = ax.get_window_extent(renderer)
    lo, hi = (box.x0, box.x1) if axis == "x" else (box.y0, box.y1)
    found = []
    for label in getattr(ax, f"get_{axis}ticklabels")(which="both"):
        if not _shown(label):
            continue
        ext = label.get_window_extent(renderer)
        mid = (ext.x0 + ext.x1) / 2 if axis == "x" else (ext.y0 + ext.y1) / 2
        if lo - 1 <= mid <= hi + 1:
            found.append(label)
    return found


def _overlaps(texts, renderer, tol: float) -> list[tuple]:
    """Pairs of texts whose drawn extents overlap by more than `tol` display pixels both ways."""
    if len(texts) < 2:
        return []
    boxes = np.array([tuple(t.get_window_extent(renderer).extents) for t in texts])  # x0 y0 x1 y1
    wide = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    high = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    hit = (wide > tol) & (high > tol)
    return [(texts[i], texts[j]) for i, j in zip(*np.nonzero(np.triu(hit, 1)))]


def _axes_name(ax) -> str:
    title = ax.get_title() or ax.get_ylabel() or ax.get_xlabel()
    return f"axes {title!r}" if title else "an axes"


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the data drawn as lines and error bars in `ax` (segments sampled)."""
    chunks = []

    def add_path(xy, transform):
        xy = np.asarray(xy, dtype=float)
        if xy.ndim != 2 or len(xy) == 0:
            return
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy) == 0:
            return
        if len(xy) > 1:  # points along each segment, so that a line crossing the legend counts
            f = np.linspace(0, 1, 12)[:, None, None]
            xy = (xy[:-1][None] * (1 - f) + xy[1:][None] * f).reshape(-1, 2)
        chunks.append(transform.transform(xy))

    for line in ax.lines:
        if not line.get_visible():
            continue
        xy = line.get_xydata()
        if len(xy) <= 2 and line.get_marker() in (None, "None", "", " "):
            continue  # a reference line (axhline, axvline) may run under a legend
        add_path(xy, line.get_transform())
    for coll in ax.collections:
        if isinstance(coll, matplotlib.collections.LineCollection) and coll.get_visible():
            for seg in coll.get_segments():
                add_path(seg, coll.get_transform())
    return np.concatenate(chunks) if chunks else np.zeros((0, 2))


def legibility_problems(fig: matplotlib.figure.Figure, shown_width_px: float = SHOWN_WIDTH_PX,
                        dpi: float | None = None, min_text_px: float = MIN_TEXT_PX,
                        max_overscale: float = MAX_OVERSCALE) -> list[str]:
    """What a reader of the book could not read in `fig`, as readable lines (empty: none).

    The figure is rendered at `dpi` (default: its own, which the page's image has) with a
    tight bounding box, and shown at most `shown_width_px` CSS pixels wide. Reported:
    the figure holds more than `max_overscale` times the pixels shown (it is scaled down
    so far that its text shrinks with it); text smaller than `min_text_px` as shown; tick
    labels of one axis, annotations, titles or axis labels overlapping each other; a legend
    drawn over lines or error bars of its axes; an error bar reaching zero or below on a
    logarithmic axis (it runs off the bottom of the plot).
    """
    renderer = _renderer(fig)
    dpi = float(dpi or fig.dpi)
    tight = fig.get_tightbbox(renderer)  # inches
    width_px = (tight.width + 2 * _PAD_IN) * dpi
    scale = min(1.0, shown_width_px / width_px)
    problems = []
    if width_px > max_overscale * shown_width_px:
        problems.append(f"too wide: {width_px:.0f} px drawn for {shown_width_px:.0f} px shown "
                        f"({shown_width_px / width_px:.0%}; at most {max_overscale}x): draw it at "
                        f"{shown_width_px * max_overscale / dpi:.1f} in or less, or split it")
    px_per_point = dpi / 72 * scale  # a point of text -> CSS px as shown
    small = {}
    for text in fig.findobj(matplotlib.text.Text):
        if not _shown(text) or text.figure is None:
            continue
        ext = text.get_window_extent(renderer)
        if ext.width <= 0 or ext.height <= 0:
            continue
        shown_px = text.get_fontsize() * px_per_point
        if shown_px < min_text_px - 1e-9:
            small.setdefault(round(shown_px, 1), text.get_text())
    for shown_px, example in sorted(small.items()):
        problems.append(f"text shown at {shown_px} px (< {min_text_px:g}), e.g. {example[:30]!r}")
    tol = 1.0 * fig.dpi / 72  # one point of overlap
    for ax in fig.get_axes():
        if not ax.get_visible():
            continue
        for axis in ("x", "y"):
            pairs = _overlaps(_tick_labels(ax, axis, renderer), renderer, tol)
            if pairs:
                a, b = pairs[0]
                problems.append(f"{_axes_name(ax)}: {len(pairs)} overlapping {axis} tick labels, "
                                f"e.g. {a.get_text()[:20]!r} and {b.get_text()[:20]!r}")
        notes = [t for t in ax.texts if _shown(t)]
        pairs = _overlaps(notes, renderer, tol)
        if pairs:
            a, b = pairs[0]
            problems.append(f"{_axes_name(ax)}: {len(pairs)} overlapping annotations, "
                            f"e.g. {a.get_text()[:20]!r} and {b.get_text()[:20]!r}")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent(renderer)
            pts = _data_points(ax)
            inside = ((pts[:, 0] > box.x0 + tol) & (pts[:, 0] < box.x1 - tol)
                      & (pts[:, 1] > box.y0 + tol) & (pts[:, 1] < box.y1 - tol))
            if inside.any():
                problems.append(f"{_axes_name(ax)}: the legend covers the data "
                                f"(move it: loc=..., or outside the axes)")
        for coll in ax.collections:
            if not isinstance(coll, matplotlib.collections.LineCollection):
                continue
            segs = [np.asarray(s) for s in coll.get_segments() if len(s)]
            if not segs:
                continue
            xy = np.concatenate(segs)
            for k, scale_name in enumerate((ax.get_xscale(), ax.get_yscale())):
                if scale_name == "log" and (xy[:, k] <= 0).any():
                    problems.append(f"{_axes_name(ax)}: an error bar reaches zero or below on the "
                                    f"logarithmic {'xy'[k]} axis (clip it: `log_errorbar`)")
                    break
    # titles and axis labels of different panels that run into each other
    labels = [t for ax in fig.get_axes() if ax.get_visible()
              for t in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label) if _shown(t)]
    pairs = _overlaps(labels, renderer, tol)
    if pairs:
        a, b = pairs[0]
        problems.append(f"{len(pairs)} overlapping titles or axis labels, e.g. {a.get_text()[:25]!r} "
                        f"and {b.get_text()[:25]!r}")
    return problems


def log_errorbar(mean, half_width, floor: float = 1e-12):
    """yerr for `errorbar` on a log axis, as the [2, n] array of arms: an interval whose lower end
    is below a tenth of the mean (or below zero, which a log axis cannot show) has its lower arm
    cut at a tenth of the mean, so it does not run off the bottom of the plot; say so in the
    caption ("lower ends cut at a tenth of the mean")."""
    mean = np.asarray(mean, dtype=float)
    half = np.asarray(half_width, dtype=float)
    lower = np.minimum(half, np.maximum(mean - np.maximum(mean / 10, floor), 0.0))
    return np.stack([lower, half])


__all__ = ["DPI", "SHOWN_WIDTH_PX", "CONTENT_WIDTH_IN", "MAX_OVERSCALE", "MIN_TEXT_PX", "FigureLegibilityWarning",
           "set_style", "figsize", "figure_paths", "save_figure", "legibility_problems", "log_errorbar",
           "html_table"]


# --- tables ------------------------------------------------------------------------------------


def html_table(rows, columns, caption: str | None = None, number_format: str = ".3g"):
    """A printed table as an HTML table for the page (show it as a cell's last expression or
    `display` it; its plain-text form is the aligned table a terminal shows): `rows` a list of sequences, `columns` their headers, numbers
    formatted with `number_format` (text as given). The book's style sheet keeps it inside the
    column (it scrolls sideways when wider); in a terminal its text form is the plain table."""
    import html as html_lib
    import numbers

    def cell(value) -> str:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return format(value, number_format)
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    for row in body:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {row}")
    head = "".join(f"<th>{html_lib.escape(str(c))}</th>" for c in columns)
    lines = "".join("<tr>" + "".join(f"<td>{html_lib.escape(v)}</td>" for v in row) + "</tr>" for row in body)
    cap = f"<caption>{html_lib.escape(caption)}</caption>" if caption else ""
    html = f'<table class="book-table">{cap}<thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>'
    widths = [max(len(str(c)), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    text = "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in [[str(c) for c in columns], *body])
    return _Table(html, text)


class _Table:
    """An HTML table with its plain-text form (what `html_table` returns)."""

    def __init__(self, html: str, text: str):
        self.html, self.text = html, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text
