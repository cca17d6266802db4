"""The pages the book generates when it is built, and the helpers behind them.

- the execution status (diffusion_study.book.status): per result file the commit, date, profile,
  wall time, device and versions, and every check with its pass/fail, from results/;
- the citation page (diffusion_study.book.citation): the book's BibTeX from CITATION.cff, every
  figure under results/ with its label, file and the commit that holds it;
- headings of every generated page hold plain text (a role there shows raw in the contents);
- the JupyterHub launch button, off unless a hub URL is given with the repository's;
- glued text keeps its digits (diffusion_study.book.notebook.paste_plain_text).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from diffusion_study.book import citation, status
from diffusion_study.book.ledger import build_ledger
from diffusion_study.book.notebook import paste_plain_text
from diffusion_study.book.results import (
    EMPIRICAL_VERDICTS,
    VERDICTS,
    read_results,
    write_result,
)

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "book" / "_toc.yml"
CLAIM = {"evidence": "fig-x", "effect": "z < 3", "conditions": "T=10"}


def _run(*args: str, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


# --- execution status ------------------------------------------------------------------------


def test_every_verdict_but_a_failed_identity_passes():
    assert {v: status.check_passed(v) for v in VERDICTS} == {
        "supported": True, "contradicted": True, "inconclusive": True, "mixed": True,
        "not testable here": True, "inadequate model": True, "not supported": True,
        "verified identity": True, "identity fails": False, "identity inconclusive": True}
    with pytest.raises(ValueError, match="unknown verdict"):
        status.check_passed("passed")


def _results(tmp_path: Path) -> Path:
    """Two chapters: one whose identity fails, one that passes; a third without claims."""
    results = tmp_path / "results"
    write_result(results / "01_a", "01_a", {"profile": "cpu", "seed": 0},
                 {}, {"L1": {**CLAIM, "verdict": "verified identity"},
                      "L2": {**CLAIM, "verdict": "identity fails"},
                      "L4": {**CLAIM, "verdict": "not supported"}}, wall_time_s=131.4)
    write_result(results / "02_b", "02_b", {"profile": "smoke", "seed": 3},
                 {}, {"K1": {**CLAIM, "verdict": "supported"}}, wall_time_s=4.25)
    write_result(results / "03_c", "03_c", {"profile": "gpu"}, {}, None, wall_time_s=7300)
    return results


def test_status_page_reports_every_result(tmp_path):
    results = _results(tmp_path)
    records = read_results(results)
    assert [status.chapter_status(r) for r in records] == ["fail", "pass", "no checks"]
    page = status.build_status(results, TOC)
    prov = records[0]["provenance"]
    assert page.startswith("(execution-status)=\n# Execution status\n")
    assert f"`{prov['git_commit'][:7]}`" in page and f"`{prov['git_commit']}`" in page
    assert "2 min 11 s" in page and "4.2 s" in page and "2 h 01 min" in page
    assert "| cpu |" in page and "| smoke |" in page and "| gpu |" in page
    assert f"PyTorch {prov['torch']}" in page and f"NumPy {prov['numpy']}" in page
    assert f"Python {prov['python']}" in page and prov["device"] in page
    if prov.get("version"):
        assert f"diffusion_study {prov['version']}" in page
    assert "4 checks: 3 passed, 1 failed" in page
    assert "| **fail** | 2 of 3 |" in page and "| **pass** | 1 of 1 |" in page and "| **no checks** | 0 of 0 |" in page
    assert "| L2 | identity fails | **fail** |" in page and "| L4 | not supported | pass |" in page
    assert "| K1 | supported | pass |" in page and "This result records no claims." in page
    # Chapters the book does not list are named, not linked (a link would break the build).
    assert "{doc}" not in page and "`01_a`" in page


def test_status_page_without_package_version_says_nothing_of_it(tmp_path):
    results = _results(tmp_path)
    path = results / "01_a" / "01_a.json"
    record = json.loads(path.read_text())
    record["provenance"].pop("version", None)
    path.write_text(json.dumps(record))
    page = status.build_status(results)
    section = page[page.index("## 01_a"):page.index("## 02_b")]
    assert "diffusion_study " not in section.split("| Versions |")[1].split("\n")[0]


def test_status_page_of_the_committed_results():
    records = read_results(ROOT / "results")
    assert records, "results/ has no result files"
    page = status.build_status(ROOT / "results", TOC, ROOT / "notebooks")
    in_book = status.toc_files(TOC)
    for record in records:
        chapter = status.chapter_of(record)
        assert f"## {chapter}" in page
        if f"notebooks/{chapter}" in in_book:
            assert f"{{doc}}`/notebooks/{chapter}`" in page
        assert record["provenance"]["git_commit"] in page
        for cid, claim in record["claims"].items():
            assert f"| {cid} | {claim['verdict']} |" in page
    assert status.chapter_title(ROOT / "notebooks" / "01_elbo.ipynb") == "The forward process and the ELBO"
    assert status.chapter_title(ROOT / "notebooks" / "no_such_chapter.ipynb") is None
    assert "## 01_elbo: The forward process and the ELBO" in page


def test_landing_page_summary_counts_every_verdict_of_the_committed_results():
    """book/intro.md's result paragraph (book/_generated/summary.md) is generated: its counts are
    the results' verdicts, each claim named under its chapter."""
    records = read_results(ROOT / "results")
    text = status.summary(records)
    counts = {v: 0 for v in VERDICTS}
    for record in records:
        for claim in record["claims"].values():
            counts[claim["verdict"]] += 1
    empirical = sum(counts[v] for v in EMPIRICAL_VERDICTS)
    assert f"tests {empirical} empirical claims" in text
    for verdict in ("supported", "contradicted", "inconclusive", "mixed", "inadequate model"):
        assert f"**{counts[verdict]} {verdict}**" in text
    assert f"{counts['verified identity']} are verified and {counts['identity fails']} fail" in text
    assert "ch. 1: " in text and text.startswith("<!--") and "```{div} result-summary" in text
    assert "No chapter has recorded a result yet" in status.summary([])


def test_bibliography_labels_are_author_year():
    from pybtex.database import parse_file

    entries = parse_file(str(ROOT / "book" / "references.bib")).entries
    assert citation._author_year_label(entries["ho2020ddpm"]) == "Ho et al. 2020"
    assert citation._author_year_label(entries["ho2022cfg"]) == "Ho and Salimans 2022"
    assert citation._author_year_label(entries["szekely2013energy"]) == "Székely and Rizzo 2013"
    citation._register_author_year_style()
    import pybtex.plugin

    style = pybtex.plugin.find_plugin("pybtex.style.formatting", "authoryear")()
    labels = [e.label for e in style.format_entries(entries.values())]
    assert "Ho et al. 2020" in labels and "Song et al. 2021a" in labels and "Song et al. 2021b" in labels


def test_status_page_with_no_results(tmp_path):
    page = status.build_status(tmp_path / "nothing")
    assert "No result files under" in page and "|" not in page


def test_status_command_line(tmp_path):
    results = _results(tmp_path)
    out = tmp_path / "book" / "_generated" / "status.md"
    done = _run("diffusion_study.book.status", "--results", str(results), "--toc", str(TOC), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == status.build_status(results, TOC)
    assert out.with_name("summary.md").read_text() == status.summary(read_results(results), status.toc_files(TOC))
    (results / "01_a" / "01_a.json").write_text("{ not json")
    done = _run("diffusion_study.book.status", "--results", str(results))
    assert done.returncode == 1 and "error" in done.stderr


def test_toc_files_lists_root_and_chapters():
    files = status.toc_files(TOC)
    assert {"book/intro", "notebooks/01_elbo", "book/_generated/status", "book/_generated/cite",
            "book/notation", "book/contributing", "book/reproduce"} <= files
    assert status.toc_files(None) == set()


# --- headings of the generated pages ------------------------------------------------------------


def test_generated_headings_hold_no_roles(tmp_path):
    """A role in a heading ends up raw in the page's contents (the right sidebar)."""
    pages = {
        "claims": build_ledger(ROOT / "results", ROOT / "book" / "claims.yml"),
        "status": status.build_status(ROOT / "results", TOC, ROOT / "notebooks"),
        "cite": citation.cite_page(ROOT / "results", ROOT / "notebooks", TOC),
    }
    for name, text in pages.items():
        headings = [line for line in text.splitlines() if re.match(r"^#{1,6} ", line)]
        assert headings, name
        assert [h for h in headings if "{" in h or "`" in h] == [], name
    assert re.search(r"^## Toy study$", pages["claims"], re.M)
    assert "Claims of {cite:t}`klepper2024understanding`." in pages["claims"]


# --- the citation page -------------------------------------------------------------------------


def _bib_entries(text: str):
    from pybtex.database import parse_string

    return parse_string(text, "bibtex").entries


def test_book_bibtex_from_citation_cff():
    cff = citation.load_cff()
    text = citation.bibtex(cff)
    (key, entry), = _bib_entries(text).items()
    assert key == f"diffusion_study{cff['date-released'].year}" == citation.citation_key(cff)
    assert entry.type == "software"
    assert entry.fields["title"] == "{" + cff["title"] + "}"  # capitals kept
    assert entry.fields["year"] == str(cff["date-released"].year)
    assert entry.fields["month"] == str(cff["date-released"].month)
    assert entry.fields["version"] == str(cff["version"]) and entry.fields["license"] == cff["license"]
    assert "{The diffusion\\_study authors}" in text  # an entity kept whole, LaTeX-escaped
    done = _run("diffusion_study.book.citation", "bibtex")
    assert done.returncode == 0 and done.stdout == text


def test_bibtex_people_doi_url_and_escaping():
    cff = {"title": "Costs & 100% of $x_t$", "version": "1.0", "date-released": "2027-02-03",
           "doi": "10.5281/zenodo.1", "repository-code": "https://github.com/a/b",
           "authors": [{"family-names": "Rossum", "name-particle": "van", "given-names": "Guido"},
                       {"family-names": "Naesseth", "given-names": "Christian A.", "name-suffix": "Jr."},
                       {"name": "A Lab"}]}
    text = citation.bibtex(cff)
    entry = _bib_entries(text)["diffusion_study2027"]
    assert entry.fields["doi"] == "10.5281/zenodo.1" and entry.fields["url"] == "https://github.com/a/b"
    assert entry.fields["month"] == "2"
    assert r"{Costs \& 100\% of \$x\_t\$}" in text
    people = entry.persons["author"]
    assert [str(p) for p in people] == ["van Rossum, Guido", "Naesseth, Jr., Christian A.", "{A Lab}"]


def test_figure_labels_from_the_chapter():
    labels = citation.figure_labels(ROOT / "notebooks" / "01_elbo.ipynb")
    assert labels["schedules"] == "fig-schedules" and labels["elbo-gap"] == "fig-gap"
    evidence = {c["evidence"] for r in read_results(ROOT / "results" / "01_elbo") for c in r["claims"].values()}
    assert {e for e in evidence if e.startswith("fig-")} <= set(labels.values())
    pdfs = {p.stem for p in (ROOT / "results" / "01_elbo").glob("*.pdf")}
    assert set(labels) == pdfs, "every figure file of chapter 1 has its label"


def test_figures_are_cited_at_the_commit_that_holds_them():
    figures = citation.figures(ROOT / "results", ROOT / "notebooks")
    assert {f["pdf"] for f in figures} == {p.as_posix() for p in (ROOT / "results").glob("*/*.pdf")}
    made = {status.chapter_of(r): r["provenance"]["git_commit"] for r in read_results(ROOT / "results")}
    in_git = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=ROOT, capture_output=True).returncode == 0
    for f in figures:
        assert f["made_at"] == made.get(f["chapter"])
        if not in_git:  # a copy of the sources outside git: no commit holds anything
            assert f["file_commit"] is None
            continue
        dirty = subprocess.run(["git", "status", "--porcelain", "--", f["pdf"]], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        if dirty:  # a figure rewritten since its last commit is not held by any commit
            assert f["file_commit"] is None
            continue
        last = subprocess.run(["git", "log", "-1", "--format=%H", "--", f["pdf"]], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        assert f["file_commit"] == last and f["file_path"] == Path(f["pdf"]).resolve().relative_to(ROOT).as_posix()


def test_a_figure_outside_git_has_no_file_commit(tmp_path):
    shutil.copytree(ROOT / "results" / "01_elbo", tmp_path / "results" / "01_elbo")
    figures = citation.figures(tmp_path / "results", ROOT / "notebooks")
    assert figures and all(f["file_commit"] is None and f["made_at"] for f in figures)
    entry = citation.figure_bibtex(citation.load_cff(), figures[0], "Chapter", "https://github.com/a/b")
    assert "\\url" not in entry and f"at commit {figures[0]['made_at']}" in entry


def test_cite_page_lists_every_figure_with_a_template():
    page = citation.cite_page(ROOT / "results", ROOT / "notebooks", TOC,
                              repository_url="https://github.com/someone/diffusion_study")
    assert page.startswith("(how-to-cite)=\n# How to cite\n")
    assert citation.bibtex(citation.load_cff()).rstrip() in page
    figures = citation.figures(ROOT / "results", ROOT / "notebooks")
    blocks = re.findall(r"```bibtex\n(.*?)```", page, re.S)
    entries = {}
    for block in blocks:
        entries.update(_bib_entries(block))
    assert len(entries) == len(figures) + 1
    for f in figures:
        assert f"`{f['pdf']}`" in page
        if f["label"] and f"notebooks/{f['chapter']}" in status.toc_files(TOC):
            assert f"{{numref}}`{f['label']}`" in page  # a chapter the book shows
        elif f["label"]:
            assert f"{{numref}}`{f['label']}`" not in page
        key = re.sub(r"[^A-Za-z0-9_]+", "_", f"{citation.citation_key(citation.load_cff())}_{f['chapter']}_{f['name']}")
        fields = entries[key].fields
        assert entries[key].type == "misc"
        if f["file_commit"]:
            assert fields["howpublished"] == (f"\\url{{https://github.com/someone/diffusion_study/blob/"
                                              f"{f['file_commit']}/{f['file_path']}}}")
            assert f["file_commit"] in fields["note"]
        assert f["made_at"] in fields["note"]


def test_one_provenance_on_the_status_page_the_cite_page_and_the_bibtex():
    """The status page, the cite page and each figure's BibTeX state the code a chapter was run
    with in the same words (results.code_state); a figure file no commit holds is cited as such,
    never at the code's commit; BibTeX names a figure by its number in the book."""
    from diffusion_study.book.results import code_state

    records = read_results(ROOT / "results")
    page = status.build_status(ROOT / "results", TOC, ROOT / "notebooks")
    cite = citation.cite_page(ROOT / "results", ROOT / "notebooks", TOC)
    for record in records:
        prov = record["provenance"]
        assert code_state(prov) in page and f"executed at commit {code_state(prov)}" in cite
    entries = {}
    for block in re.findall(r"```bibtex\n(.*?)```", cite, re.S):
        entries.update(_bib_entries(block))
    figures = citation.figures(ROOT / "results", ROOT / "notebooks")
    key = re.sub(r"[^A-Za-z0-9_]+", "_", f"{citation.citation_key(citation.load_cff())}_01_elbo_schedules")
    assert entries[key].fields["title"].startswith("{Figure 1.1, chapter")
    for f in figures:
        k = re.sub(r"[^A-Za-z0-9_]+", "_", f"{citation.citation_key(citation.load_cff())}_{f['chapter']}_{f['name']}")
        where = entries[k].fields["howpublished"]
        if f["file_commit"] is None:
            assert "no commit holds this version" in where and " at commit " not in where
    dirty = {"git_commit": "a" * 40, "git_dirty": True, "git_dirty_files": [f"f{i}" for i in range(20)]}
    assert code_state(dirty) == "`aaaaaaa` with uncommitted changes to 20+ files"
    assert code_state({"git_commit": "b" * 40, "git_dirty": False}, markdown=False) == "bbbbbbb"
    assert citation.chapter_numbers(TOC)["01_elbo"] == 1
    bench = ROOT / "bench" / "results" / "summary.json"
    if bench.exists():  # the appendix's run, in the same words, and whether the chapters share it
        prov = json.loads(bench.read_text())["provenance"]
        assert "## Benchmarks (the appendix)" in page and f"at commit {code_state(prov)}" in page
        if prov["git_commit"] not in {r["provenance"]["git_commit"] for r in records}:
            assert "not a commit any chapter above was executed at" in page
    assert citation.figure_order(ROOT / "notebooks" / "01_elbo.ipynb")[0] == "fig-schedules"


def test_cite_page_numbers_only_figures_of_chapters_in_the_book(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro"}))
    page = citation.cite_page(ROOT / "results", ROOT / "notebooks", toc)
    assert "{numref}" not in page and "{doc}" not in page and "`fig-schedules`" in page


def test_cite_page_command_line(tmp_path):
    out = tmp_path / "cite.md"
    env = {k: v for k, v in os.environ.items() if k != "BOOK_REPOSITORY_URL"}
    done = _run("diffusion_study.book.citation", "cite-page", "--results", "results", "--notebooks", "notebooks",
                "--toc", "book/_toc.yml", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == citation.cite_page("results", "notebooks", "book/_toc.yml", page_dir=tmp_path)
    # written to a file, each figure's PDF and PNG are download links, its row the anchor a chapter links
    pdf = sorted((ROOT / "results").glob("*/*.pdf"))[0]
    assert f"{{download}}`PDF <{Path(os.path.relpath(pdf, tmp_path)).as_posix()}>`" in out.read_text()
    assert '<span id="file-fig-schedules"></span>' in out.read_text()
    env["BOOK_REPOSITORY_URL"] = "https://github.com/someone/diffusion_study"
    done = _run("diffusion_study.book.citation", "cite-page", env=env)
    assert done.returncode == 0
    if any(f["file_commit"] for f in citation.figures(ROOT / "results")):  # links need committed figures
        assert "https://github.com/someone/diffusion_study/blob/" in done.stdout


# --- launch buttons: JupyterHub --------------------------------------------------------------


def _book_config() -> dict:
    return yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))


def _final_theme(config: dict) -> dict:
    from jupyter_book.config import get_final_config

    final, _ = get_final_config(user_yaml=config, cli_config={"latex_individualpages": False},
                                sourcedir=ROOT, validate=False)
    return final["html_theme_options"]


def test_hub_button_only_with_a_hub_url():
    url = "https://github.com/someone/diffusion_study"
    without = _final_theme(citation.launch_config(_book_config(), url))
    assert "jupyterhub_url" not in without["launch_buttons"]
    assert without["use_repository_button"] and without["use_source_button"]
    theme = _final_theme(citation.launch_config(_book_config(), url, hub_url="https://hub.example.org/"))
    assert theme["launch_buttons"]["jupyterhub_url"] == "https://hub.example.org"
    assert theme["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert theme["launch_buttons"]["binderhub_url"] == citation.BINDERHUB_URL
    offline = _final_theme(_book_config())
    assert not offline["launch_buttons"] and not offline["use_repository_button"]
    assert offline["use_download_button"]


@pytest.mark.parametrize("hub", ["http://hub.example.org", "hub.example.org", "https://hub.example.org/?x=1",
                                 "https://", "https://hub example.org"])
def test_hub_url_must_be_https(hub):
    with pytest.raises(ValueError, match="JupyterHub"):
        citation.launch_config(_book_config(), "https://github.com/a/b", hub_url=hub)


def test_book_config_reads_the_hub_from_the_environment(tmp_path):
    out = tmp_path / "_config.yml"
    env = dict(os.environ, BOOK_REPOSITORY_URL="https://github.com/someone/diffusion_study",
               BOOK_JUPYTERHUB_URL="https://hub.example.org")
    done = _run("diffusion_study.book.citation", "book-config", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(out.read_text())
    assert config["sphinx"]["config"]["html_theme_options"]["launch_buttons"]["jupyterhub_url"] == \
        "https://hub.example.org"
    env.pop("BOOK_JUPYTERHUB_URL")
    done = _run("diffusion_study.book.citation", "book-config", "--out", str(out), env=env)
    assert done.returncode == 0
    assert "jupyterhub_url" not in yaml.safe_load(out.read_text())["launch_buttons"]


@pytest.mark.slow
def test_built_chapter_has_a_hub_button(tmp_path):
    """A real build with the hub configured: the chapter links JupyterLab on the hub, which
    pulls the repository (nbgitpuller), and its source in the repository."""
    launch = tmp_path / "launch" / "_config.yml"
    citation.write_launch_config("https://github.com/someone/diffusion_study", launch,
                                 hub_url="https://hub.example.org")
    for args in (["diffusion_study.book.ledger", "--results", "results", "--claims", "book/claims.yml",
                  "--out", "book/_generated/claims.md"],
                 ["diffusion_study.book.status", "--results", "results", "--toc", "book/_toc.yml",
                  "--out", "book/_generated/status.md"],
                 ["diffusion_study.book.citation", "cite-page", "--out", "book/_generated/cite.md"]):
        assert _run(*args).returncode == 0
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", ".",
                            "--path-output", str(tmp_path / "out"), "--config", str(launch),
                            "--toc", "book/_toc.yml"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:]
    chapter = (tmp_path / "out" / "_build" / "html" / "notebooks" / "01_elbo.html").read_text("utf-8")
    assert "https://hub.example.org/hub/user-redirect/git-pull?repo=https%3A//github.com/someone/diffusion_study" in chapter
    assert "urlpath=lab/tree/diffusion_study/notebooks/01_elbo.ipynb" in chapter
    assert "https://github.com/someone/diffusion_study/blob/main/notebooks/01_elbo.ipynb" in chapter  # its source


def test_make_book_generates_the_pages_and_guards_the_hub_switch():
    def dry_run(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOK_REPOSITORY", "BOOK_JUPYTERHUB"))}
        return subprocess.run(["make", "-n", "book", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=env)

    for profile, results in (("cpu", "results"), ("smoke", "runs/smoke/results")):
        out = dry_run(f"PROFILE={profile}").stdout
        assert f"diffusion_study.book.status --results {results}" in out
        assert f"diffusion_study.book.citation cite-page --results {results}" in out
    lonely = dry_run("BOOK_JUPYTERHUB_URL=https://hub.example.org").stdout
    assert "BOOK_JUPYTERHUB_URL needs BOOK_REPOSITORY_URL" in lonely
    both = dry_run("BOOK_JUPYTERHUB_URL=https://hub.example.org",
                   "BOOK_REPOSITORY_URL=https://github.com/someone/diffusion_study").stdout
    assert "citation book-config --out _build/launch/_config.yml" in both


# --- glued text ------------------------------------------------------------------------------


@pytest.mark.parametrize("glued, shown", [
    ("0.550", "0.550"), ("+1.15", "+1.15"), ("-11.50", "-11.50"), ("1.002, 0.501", "1.002, 0.501"),
    ("1e-05", "1e-05"), ("'quoted'", "quoted"), ("falls steadily", "falls steadily"),
    ("[16, 64]", "[16, 64]"), ("np.float64(0.5)", "np.float64(0.5)"), ("3.21 ± 0.39", "3.21 ± 0.39"),
])
def test_glued_text_is_pasted_as_glued(glued, shown):
    assert paste_plain_text(glued, "") == shown == paste_plain_text(glued, "s")


def test_a_format_spec_still_formats():
    assert paste_plain_text("0.5501", ".2f") == "0.55"
    assert paste_plain_text("1234", "d") == "1234"


def test_the_book_loads_the_glue_fix():
    config = _book_config()["sphinx"]["config"]
    assert "diffusion_study.book.notebook" in config["extensions"]
    assert "sphinx_thebe" not in config["extensions"]


def test_landing_page_summary_counts_inconclusive_identities():
    records = [{"path": "01_elbo/01_elbo.json", "name": "01_elbo",
                "claims": {"L1": {"verdict": "verified identity"}, "L2": {"verdict": "identity inconclusive"},
                           "L4": {"verdict": "inconclusive"}}}]
    text = status.summary(records)
    assert "1 are verified and 0 fail; 1 are inconclusive, the run too small to tell (ch. 1: L2)" in text
    assert "**1 inconclusive** (ch. 1: L4)" in text
