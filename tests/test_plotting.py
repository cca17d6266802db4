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
