"""One figure style and one way to save figures: PNG and PDF with stable names and bytes.

Every chapter calls `set_style()` once (`notebook.setup_notebook` does it) and passes each
finished figure through `save_figure`, which writes `<out_dir>/<name>.png` and
`<out_dir>/<name>.pdf` and hands the figure back for the notebook to show or glue.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.figure
import matplotlib.pyplot as plt
import seaborn as sns

from diffusion_study.base.io import atomic_path

DPI = 150
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_STYLE_SET = False

# Metadata that would otherwise change between runs (software version strings are stable
# for a given environment; dates are not).
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "ModDate": None}


def set_style() -> None:
    """Set the book's figure style (seaborn theme, fonts embedded as TrueType in PDFs). Idempotent."""
    global _STYLE_SET
    if _STYLE_SET:
        return
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (6.0, 3.6),
            "figure.dpi": 100,
            "figure.constrained_layout.use": True,
            "savefig.dpi": DPI,
            "pdf.fonttype": 42,
            "svg.hashsalt": "diffusion_study",
        }
    )
    _STYLE_SET = True


def figure_paths(name: str, out_dir: str | Path) -> dict[str, Path]:
    """Return the stable file paths `save_figure` writes for `name`: {"png": ..., "pdf": ...}."""
    if not _NAME.match(name):
        raise ValueError(
            f"figure name must be lower-case letters, digits, '-' or '_', got {name!r}"
        )
    out_dir = Path(out_dir)
    return {"png": out_dir / f"{name}.png", "pdf": out_dir / f"{name}.pdf"}


def save_figure(fig: matplotlib.figure.Figure, name: str, out_dir: str | Path):
    """Write `fig` to `<out_dir>/<name>.png` and `.pdf` deterministically; return `fig`.

    The figure is released from pyplot (so the inline backend does not show it a second
    time) but stays usable: return it as a cell's last expression or `glue` it.
    """
    paths = figure_paths(name, out_dir)
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
