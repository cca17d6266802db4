"""plotting.save_figure: stable names, deterministic bytes, no run-dependent metadata."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from diffusion_study.book.plotting import figure_paths, save_figure, set_style


def _figure():
    set_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25], label="a line")
    ax.set(xlabel="step $t$", ylabel=r"$\bar\alpha_t$")
    ax.legend()
    return fig


def test_save_figure_writes_png_and_pdf_and_returns_the_figure(tmp_path):
    fig = _figure()
    returned = save_figure(fig, "decay", tmp_path / "figs")
    assert returned is fig
    paths = figure_paths("decay", tmp_path / "figs")
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert fig.number not in plt.get_fignums()  # released from pyplot: not shown twice


def test_saved_files_are_byte_identical_across_saves(tmp_path):
    save_figure(_figure(), "decay", tmp_path / "one")
    save_figure(_figure(), "decay", tmp_path / "two")
    for kind in ("png", "pdf"):
        one = figure_paths("decay", tmp_path / "one")[kind].read_bytes()
        two = figure_paths("decay", tmp_path / "two")[kind].read_bytes()
        assert one == two, kind


def test_no_dates_or_software_stamps_in_files(tmp_path):
    save_figure(_figure(), "decay", tmp_path)
    paths = figure_paths("decay", tmp_path)
    assert b"Software" not in paths["png"].read_bytes()
    assert b"CreationDate" not in paths["pdf"].read_bytes()


@pytest.mark.parametrize("name", ["Decay", "a b", "../x", "", "fig.png"])
def test_figure_names_are_plain_stems(name, tmp_path):
    with pytest.raises(ValueError, match="figure name"):
        figure_paths(name, tmp_path)


# --- legibility: figures drawn at the size the page shows them --------------------------------

import numpy as np  # noqa: E402
from diffusion_study.book.plotting import (  # noqa: E402
    DPI,
    MAX_OVERSCALE,
    SHOWN_WIDTH_PX,
    FigureLegibilityWarning,
    figsize,
    legibility_problems,
    log_errorbar,
)


def test_a_column_wide_figure_is_legible():
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=figsize(2.8))
    x = np.linspace(0, 1, 200)
    for ax in axes:
        ax.plot(x, x**2, label="square")
        ax.plot(x, np.sqrt(x), label="root")
        ax.set(xlabel="$t / T$", ylabel="value", title="a panel")
        ax.legend(loc="lower right")
    assert figsize(2.8)[0] * DPI <= MAX_OVERSCALE * SHOWN_WIDTH_PX
    assert legibility_problems(fig) == []
    plt.close(fig)


def test_a_wide_figure_with_crowded_ticks_is_reported():
    """The old Fig. 2.1: eight panels side by side, 28 long x labels each."""
    set_style()
    fig, axes = plt.subplots(1, 8, figsize=(12.75, 3))
    for ax in axes:
        ax.set_xticks(range(28), [f"process-{i}" for i in range(28)])
    problems = legibility_problems(fig)
    assert any(p.startswith("too wide") for p in problems), problems
    assert any("overlapping x tick labels" in p for p in problems), problems
    assert any(p.startswith("text shown at") for p in problems), problems
    plt.close(fig)


def test_small_text_overlapping_annotations_and_legend_over_data_are_reported():
    set_style()
    fig, ax = plt.subplots(figsize=figsize(3))
    x = np.linspace(0, 1, 100)
    ax.plot(x, x, label="a diagonal through the middle")
    ax.legend(loc="center")
    ax.annotate("w = 1", (0.2, 0.6))
    ax.annotate("w = 2", (0.2, 0.6))
    ax.text(0.8, 0.1, "tiny", fontsize=4)
    problems = legibility_problems(fig)
    assert any("legend covers the data" in p for p in problems), problems
    assert any("overlapping annotations" in p for p in problems), problems
    assert any(p.startswith("text shown at") and "tiny" in p for p in problems), problems
    plt.close(fig)


def test_error_bars_below_zero_on_a_log_axis_are_reported_and_log_errorbar_clips_them():
    set_style()
    mean, half = np.array([1.0, 0.1, 0.01]), np.array([0.5, 0.2, 0.001])
    fig, (bad, good) = plt.subplots(1, 2, figsize=figsize(2.6))
    bad.errorbar([1, 2, 3], mean, yerr=half)
    good.errorbar([1, 2, 3], mean, yerr=log_errorbar(mean, half))
    for ax in (bad, good):
        ax.set(yscale="log", title="bad" if ax is bad else "good")
    problems = legibility_problems(fig)
    assert [p for p in problems if "error bar" in p] == [
        "axes 'bad': an error bar reaches zero or below on the logarithmic y axis (clip it: `log_errorbar`)"]
    arms = log_errorbar(mean, half)
    assert np.allclose(arms[1], half) and (mean - arms[0] > 0).all()
    assert np.allclose(arms[0, [0, 2]], half[[0, 2]])  # intervals above a tenth of the mean are kept
    plt.close(fig)


def test_save_figure_can_warn_or_refuse(tmp_path):
    set_style()
    fig, axes = plt.subplots(1, 8, figsize=(12.75, 3))
    with pytest.warns(FigureLegibilityWarning, match="too wide"):
        save_figure(fig, "wide", tmp_path / "warn", check="warn")
    assert figure_paths("wide", tmp_path / "warn")["png"].exists()
    fig, axes = plt.subplots(1, 8, figsize=(12.75, 3))
    with pytest.raises(ValueError, match="not legible"):
        save_figure(fig, "wide", tmp_path / "raise", check="raise")
    assert not (tmp_path / "raise").exists()
    plt.close("all")


# --- the chapters' figures as the book shows them --------------------------------------------

import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Chapters whose figures were drawn before the page-size style and are redrawn by their owner.
NOT_YET_REDRAWN: set[str] = set()


def _shown_figures(chapter: str):
    """(glue key, PNG width in px) of every figure a chapter shows, and the legibility warnings its
    executed run printed (save_figure(..., check="warn") in the chapter)."""
    from PIL import Image

    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    shown, warned = [], []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            text = text if isinstance(text, str) else "".join(text)
            warned += [line for line in text.splitlines() if "FigureLegibilityWarning" in line]
            for mime, data in out.get("data", {}).items():
                if mime.endswith("image/png"):
                    name = (out.get("metadata", {}).get("scrapbook") or {}).get("name", mime)
                    shown.append((name, Image.open(io.BytesIO(base64.b64decode(data))).size[0]))
    return shown, warned


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_shows_its_figures_at_the_page_size(chapter, request):
    """Every figure of the committed (executed) chapter is at most MAX_OVERSCALE times as wide as
    the page shows it, and the chapter's run reported no legibility problem (too wide, text too
    small, overlapping tick labels or annotations, legend over data, error bar to zero on a log axis)."""
    if chapter in NOT_YET_REDRAWN:
        request.applymarker(pytest.mark.xfail(reason="figures drawn before the page-size style", strict=False))
    shown, warned = _shown_figures(chapter)
    assert shown, f"{chapter} shows no figure"
    too_wide = [(name, px) for name, px in shown if px > MAX_OVERSCALE * SHOWN_WIDTH_PX]
    assert too_wide == [], f"{chapter}: figures wider than {MAX_OVERSCALE} x {SHOWN_WIDTH_PX} px: {too_wide}"
    assert warned == [], f"{chapter}: " + "\n".join(warned)


def test_html_table_for_printed_tables():
    from diffusion_study.book.plotting import html_table

    table = html_table([["linear", 0.123456, 3], ["cos<ine>", 1e-5, 4]], ["schedule", "gap", "T"], caption="gaps")
    html = table._repr_html_()
    assert html.startswith('<table class="book-table"><caption>gaps</caption>')
    assert "<td>0.123</td>" in html and "<td>1e-05</td>" in html and "cos&lt;ine&gt;" in html
    assert repr(table).splitlines()[0].split() == ["schedule", "gap", "T"]
    with pytest.raises(ValueError, match="cells for 3 columns"):
        html_table([[1, 2]], ["a", "b", "c"])
