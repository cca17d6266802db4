"""How the book is published and cited: its version, its Zenodo record, its launch buttons.

    python -m diffusion_study.book.citation version            # the package version
    python -m diffusion_study.book.citation zenodo              # write .zenodo.json from CITATION.cff
    python -m diffusion_study.book.citation zenodo --check      # exit 1 if .zenodo.json is stale
    python -m diffusion_study.book.citation book-config --repository-url https://github.com/OWNER/REPO \
        --out _build/launch/_config.yml                    # book/_config.yml with launch buttons
                                                           # (URL default: $BOOK_REPOSITORY_URL;
                                                           # --jupyterhub-url: $BOOK_JUPYTERHUB_URL)
    python -m diffusion_study.book.citation bibtex              # the book's BibTeX entry, from CITATION.cff
    python -m diffusion_study.book.citation cite-page --results results --notebooks notebooks \
        --toc book/_toc.yml --out book/_generated/cite.md  # the "How to cite" page

CITATION.cff is the one source of the citation: `.zenodo.json` (what Zenodo reads when a
GitHub release is made, and so what the DOI's record says) is generated from it, and the
tests check that the committed file is exactly what `zenodo` writes.

The book's launch buttons (Binder, Colab) need the repository's URL, which an offline build
does not have: `book/_config.yml` leaves them off, and `book-config` returns the same
configuration with them on, for `make book BOOK_REPOSITORY_URL=...` (the workflow sets it),
plus a JupyterLab button on a JupyterHub when `BOOK_JUPYTERHUB_URL` is set too.

The "How to cite" page is generated when the book is built, so it cannot drift from its
sources: the BibTeX entry of the book from CITATION.cff (`bibtex`), and for each figure under
`results/<chapter>/` its label in the book, its file and the commit that holds that file
(`cite_page`).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGE = "diffusion_study"
ROOT = Path(__file__).resolve().parents[3]
CFF = ROOT / "CITATION.cff"
ZENODO = ROOT / ".zenodo.json"
BOOK_CONFIG = ROOT / "book" / "_config.yml"

BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
_GITHUB_REPO = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
_ARXIV = re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?$")
_HUB_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::\d+)?(?:/[A-Za-z0-9._~/-]*)?$")


def version() -> str:
    """The installed package's version (pyproject.toml's), else the source tree's `__version__`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(PACKAGE)
    except PackageNotFoundError:
        from diffusion_study import __version__

        return __version__


# --- CITATION.cff -> .zenodo.json --------------------------------------------------------


def load_cff(path: str | Path = CFF) -> dict[str, Any]:
    """CITATION.cff as a dict (YAML dates stay `datetime.date`)."""
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _creator(author: dict[str, Any]) -> dict[str, str]:
    """A CFF person or entity as a Zenodo creator ("Family, Given" for a person)."""
    if "name" in author:  # an entity
        name = str(author["name"])
    else:
        family = " ".join(str(author[k]) for k in ("name-particle", "family-names") if author.get(k))
        name = f"{family}, {author['given-names']}" if author.get("given-names") else family
        if author.get("name-suffix"):
            name = f"{name}, {author['name-suffix']}"
    creator = {"name": name}
    if author.get("affiliation"):
        creator["affiliation"] = str(author["affiliation"])
    if author.get("orcid"):
        creator["orcid"] = str(author["orcid"]).removeprefix("https://orcid.org/")
    return creator


def _related(cff: dict[str, Any]) -> list[dict[str, str]]:
    """The works CITATION.cff references (by arXiv id or DOI), as Zenodo related identifiers."""
    related = []
    for ref in cff.get("references") or []:
        ids = list(ref.get("identifiers") or [])
        if ref.get("doi"):
            ids.append({"type": "doi", "value": ref["doi"]})
        for ident in ids:
            value = str(ident.get("value", ""))
            if ident.get("type") == "doi":
                related.append({"identifier": value, "relation": "references", "scheme": "doi"})
            elif _ARXIV.match(value):
                related.append({"identifier": value, "relation": "references", "scheme": "arxiv"})
    return related


def _date(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def zenodo_metadata(cff: dict[str, Any]) -> dict[str, Any]:
    """Zenodo deposit metadata for a CITATION.cff: what a GitHub release's DOI record says.

    The fields cffconvert's `zenodo` format writes (creators, description, keywords,
    license, publication_date, title, version) are the same here; to them this adds the
    record's type, open access and the referenced papers.
    """
    meta: dict[str, Any] = {
        "upload_type": "software" if cff.get("type", "software") == "software" else "dataset",
        "access_right": "open",
        "title": str(cff["title"]),
        "creators": [_creator(a) for a in cff["authors"]],
    }
    if cff.get("abstract"):
        meta["description"] = " ".join(str(cff["abstract"]).split())
    if cff.get("version") is not None:
        meta["version"] = str(cff["version"])
    if cff.get("date-released"):
        meta["publication_date"] = _date(cff["date-released"])
    if cff.get("license"):
        meta["license"] = {"id": str(cff["license"])}
    if cff.get("keywords"):
        meta["keywords"] = [str(k) for k in cff["keywords"]]
    related = _related(cff)
    if related:
        meta["related_identifiers"] = related
    return meta


def zenodo_json(cff: dict[str, Any]) -> str:
    """The text of `.zenodo.json` for a CITATION.cff (stable key order, one trailing newline)."""
    return json.dumps(zenodo_metadata(cff), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


# --- the book's launch buttons -----------------------------------------------------------


def github_repository(url: str) -> tuple[str, str]:
    """(owner, name) of a https://github.com/OWNER/NAME URL; ValueError for anything else.

    Colab opens notebooks from github.com only, so another host cannot have the buttons.
    """
    match = _GITHUB_REPO.match(url.strip())
    if not match:
        raise ValueError(f"launch buttons need a https://github.com/OWNER/REPO URL, got {url!r}")
    return match.group(1), match.group(2)


def jupyterhub_url(url: str) -> str:
    """A JupyterHub's base URL (https, no query), without its trailing slash; ValueError otherwise."""
    url = url.strip()
    if not _HUB_URL.match(url):
        raise ValueError(f"the JupyterHub button needs a https://HOST[/PATH] URL, got {url!r}")
    return url.rstrip("/")


def launch_config(config: dict[str, Any], repository_url: str, branch: str = "main",
                  hub_url: str | None = None) -> dict[str, Any]:
    """`config` (book/_config.yml as a dict) with the Binder and Colab buttons switched on.

    With `hub_url`, a third button opens the chapter in JupyterLab on that JupyterHub (which
    pulls the repository with nbgitpuller). The repository and source buttons link the
    repository and each page's source file in it.

    `sphinx.config.html_theme_options` replaces the theme options that Jupyter Book derives
    from its `html:`, `repository:` and `launch_buttons:` sections, so the buttons are set there.
    The book is built from the repository root, so a chapter's path in the repository is
    its path in the book (`path_to_docs` is empty).
    """
    owner, name = github_repository(repository_url)
    url = f"https://github.com/{owner}/{name}"
    config = copy.deepcopy(config)
    buttons = {"binderhub_url": BINDERHUB_URL, "colab_url": COLAB_URL, "notebook_interface": "jupyterlab"}
    if hub_url:
        buttons["jupyterhub_url"] = jupyterhub_url(hub_url)
    config["repository"] = {"url": url, "branch": branch, "path_to_book": ""}
    config["launch_buttons"] = dict(buttons)
    config.setdefault("html", {}).update(use_repository_button=True)
    theme = config.setdefault("sphinx", {}).setdefault("config", {}).setdefault("html_theme_options", {})
    theme.update(repository_url=url, repository_branch=branch, path_to_docs="", launch_buttons=buttons,
                 use_repository_button=True, use_source_button=True)
    # the landing page's repository link and clone command ({{ repository }} in book/intro.md)
    parse = config.setdefault("parse", {})
    parse.setdefault("myst_substitutions", {}).update(
        repository=f"[{url.removeprefix('https://')}]({url})",
        clone_block=f"```bash\ngit clone {url}.git {name} && cd {name} && make book\n```")
    return config


def write_launch_config(repository_url: str, out: str | Path, branch: str = "main",
                        config_path: str | Path = BOOK_CONFIG, hub_url: str | None = None) -> Path:
    """Write book/_config.yml with the launch buttons on to `out` (for `jupyter-book --config`)."""
    import yaml

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    config = launch_config(config, repository_url, branch, hub_url)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buttons = (f"Binder, Colab and JupyterHub ({config['launch_buttons']['jupyterhub_url']})"
               if hub_url else "Binder and Colab")
    header = (f"# Generated by `python -m diffusion_study.book.citation book-config` from {config_path}:\n"
              f"# the same configuration with {buttons} buttons for {repository_url}.\n")
    out.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


# --- BibTeX: the book and its figures ------------------------------------------------------

_BIB_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def bib_escape(text: Any) -> str:
    """`text` as BibTeX/LaTeX text: one line, LaTeX's special characters escaped."""
    return "".join(_BIB_SPECIAL.get(c, c) for c in " ".join(str(text).split()))


def _bib_author(author: dict[str, Any]) -> str:
    """A CFF person as "Family, Given" (LaTeX-escaped), an entity in braces (kept whole)."""
    if "name" in author:
        return "{" + bib_escape(author["name"]) + "}"
    family = " ".join(str(author[k]) for k in ("name-particle", "family-names") if author.get(k))
    parts = [family] + [str(author[k]) for k in ("name-suffix", "given-names") if author.get(k)]
    return bib_escape(", ".join(parts))


def _year_month(cff: dict[str, Any]) -> tuple[str | None, str | None]:
    released = cff.get("date-released")
    if isinstance(released, dt.date):
        return str(released.year), str(released.month)
    match = re.match(r"^(\d{4})-(\d{2})", str(released or ""))
    return (match.group(1), str(int(match.group(2)))) if match else (None, None)


def citation_key(cff: dict[str, Any]) -> str:
    """The book's BibTeX key: the package name and the release year, e.g. diffusion_study2026."""
    year, _ = _year_month(cff)
    return f"{PACKAGE}{year or ''}"


def _bib_entry(kind: str, key: str, fields: list[tuple[str, str | None]]) -> str:
    shown = [(name, value) for name, value in fields if value]
    width = max(len(name) for name, _ in shown)
    body = ",\n".join(f"  {name.ljust(width)} = {{{value}}}" for name, value in shown)
    return f"@{kind}{{{key},\n{body}\n}}\n"


def bibtex(cff: dict[str, Any], key: str | None = None) -> str:
    """The book's BibTeX entry (`@software`, as Zenodo exports software), from a CITATION.cff.

    Title in double braces (its capitals kept); authors joined with "and", an entity whole;
    year and month of `date-released`; version, licence, DOI and URL when the file has them.
    """
    year, month = _year_month(cff)
    url = cff.get("url") or cff.get("repository-code")
    return _bib_entry("software", key or citation_key(cff), [
        ("author", " and ".join(_bib_author(a) for a in cff["authors"])),
        ("title", "{" + bib_escape(cff["title"]) + "}"),
        ("year", year),
        ("month", month),
        ("version", bib_escape(cff["version"]) if cff.get("version") is not None else None),
        ("license", bib_escape(cff["license"]) if cff.get("license") else None),
        ("doi", str(cff["doi"]) if cff.get("doi") else None),
        ("url", str(url) if url else None),
    ])


_FIGURE_SAVE = re.compile(  # glue("fig-x", save_figure(fig, "name", ...)): glue key -> file stem (fig may be a call)
    r"""glue\(\s*(["'])(?P<key>[^"'\n]+)\1\s*,\s*save_figure\(\s*(?:[^,()]|\([^()]*\))+,\s*(["'])(?P<name>[^"'\n]+)\3""")
_GLUE_FIGURE = re.compile(  # ```{glue:figure} KEY + options: glue key -> figure label (:name:)
    r"^[ \t]*(?:`{3,}|:{3,})\{glue:figure\}[ \t]+(?P<key>\S+)[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)",
    re.M)
_NAME_OPTION = re.compile(r"^[ \t]*:name:[ \t]*(?P<label>\S+)", re.M)


def figure_labels(notebook: str | Path) -> dict[str, str]:
    """File stem -> figure label in the book, read from a chapter's cells (in the order it saves them).

    A chapter saves a figure and glues it in one call, `glue("KEY", save_figure(fig, "NAME",
    out_dir))`, and shows it with a ```{glue:figure} KEY``` directive whose `:name:` is the
    label. A figure saved another way, or shown without a name, has no label here.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    keys = {m["name"]: m["key"] for c in nb.cells if c.cell_type == "code"
            for m in _FIGURE_SAVE.finditer(c.source)}
    labels = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in _GLUE_FIGURE.finditer(cell.source + "\n"):
                name = _NAME_OPTION.search(m["options"])
                if name:
                    labels[m["key"]] = name["label"]
    return {stem: labels[key] for stem, key in keys.items() if key in labels}


def figure_order(notebook: str | Path) -> list[str]:
    """The labels of a chapter's figures in the order the page shows them (its ```{glue:figure}``
    directives with a `:name:`): the n-th is Fig. <chapter>.n in the book."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    order = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in _GLUE_FIGURE.finditer(cell.source + "\n"):
                name = _NAME_OPTION.search(m["options"])
                if name:
                    order.append(name["label"])
    return order


def chapter_numbers(toc: str | Path | None) -> dict[str, int]:
    """Chapter (notebook stem) -> its number in the book: the order of the notebooks in `toc`."""
    from diffusion_study.book.status import toc_entries

    chapters = [Path(page).name for page in toc_entries(toc) if page.startswith("notebooks/")]
    return {chapter: i + 1 for i, chapter in enumerate(chapters)}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def committed_file(path: str | Path) -> tuple[str, str] | None:
    """(commit, path in the repository) of the last commit that holds `path` exactly as it is.

    None when `path` is not in a git checkout, not committed, or modified since.
    """
    path = Path(path).resolve()
    if not path.is_file():
        return None
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if not top:
        return None
    rel = path.relative_to(Path(top).resolve()).as_posix()
    if _git(path.parent, "status", "--porcelain", "--", path.name):  # untracked or modified
        return None
    commit = _git(path.parent, "log", "-1", "--format=%H", "--", path.name)
    return (commit, rel) if commit else None


def figures(results_dir: str | Path, notebooks_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every figure under `results_dir`, chapter by chapter: one dict per `<chapter>/<name>.pdf`.

    Keys: chapter, name, pdf (the path as given under `results_dir`), png (or None), label
    (from the chapter's notebook in `notebooks_dir`, or None), made_at (the commit recorded in
    the chapter's result file, or None), file_commit and file_path (the commit that holds the
    PDF as it is and its path in the repository, or None).
    """
    from diffusion_study.book.results import read_results

    results_dir = Path(results_dir)
    made = {}
    for record in read_results(results_dir):
        chapter = Path(record["path"]).parts[0] if len(Path(record["path"]).parts) > 1 else None
        if chapter:
            made[chapter] = record
    found = []
    labels_of: dict[str, dict[str, str]] = {}
    for pdf in sorted(results_dir.glob("*/*.pdf")):
        chapter = pdf.parent.name
        if chapter not in labels_of:
            notebook = Path(notebooks_dir) / f"{chapter}.ipynb" if notebooks_dir is not None else None
            labels_of[chapter] = figure_labels(notebook) if notebook is not None and notebook.exists() else {}
        labels = labels_of[chapter]
        record = made.get(chapter) or {}
        held = committed_file(pdf)
        found.append({
            "chapter": chapter,
            "name": pdf.stem,
            "pdf": pdf.as_posix(),
            "png": pdf.with_suffix(".png").as_posix() if pdf.with_suffix(".png").exists() else None,
            "label": labels.get(pdf.stem),
            "made_at": (record.get("provenance") or {}).get("git_commit"),
            "provenance": record.get("provenance") or {},
            "params": record.get("params") or {},
            "file_commit": held[0] if held else None,
            "file_path": held[1] if held else None,
        })
    # In each chapter, the figures in the order the chapter makes them (those without a label last).
    def order(f: dict[str, Any]) -> tuple:
        names = list(labels_of[f["chapter"]])
        return (f["chapter"], names.index(f["name"]) if f["name"] in names else len(names), f["name"])

    return sorted(found, key=order)


def figure_bibtex(cff: dict[str, Any], figure: dict[str, Any], title: str | None = None,
                  repository_url: str | None = None) -> str:
    """A BibTeX `@misc` template citing one figure: its label, its file at a commit, the book."""
    year, month = _year_month(cff)
    from diffusion_study.book.results import code_state

    what = (f"Figure {figure['number']}" if figure.get("number")
            else f"Figure {figure['label']}" if figure.get("label") else f"Figure {figure['name']}")
    chapter = f"chapter ``{title}''" if title else f"chapter {figure['chapter']}"
    commit = figure.get("file_commit")  # the commit that holds this very file, or none
    path = figure.get("file_path") or figure["pdf"]
    where = f"File {path}" + (f" at commit {commit}" if commit else " (no commit holds this version of it)")
    url = None
    if repository_url and figure.get("file_commit"):
        owner, name = github_repository(repository_url)
        url = f"https://github.com/{owner}/{name}/blob/{figure['file_commit']}/{figure['file_path']}"
    key = re.sub(r"[^A-Za-z0-9_]+", "_", f"{citation_key(cff)}_{figure['chapter']}_{figure['name']}")
    prov = figure.get("provenance") or ({"git_commit": figure["made_at"]} if figure.get("made_at") else {})
    made = f"made by the code at commit {code_state(prov, markdown=False, full=True)}" if prov.get("git_commit") else ""
    note = f"{where}; {made}" if url and made else (where if url else made[:1].upper() + made[1:])
    return _bib_entry("misc", key, [
        ("author", " and ".join(_bib_author(a) for a in cff["authors"])),
        ("title", "{" + bib_escape(f"{what}, {chapter}, in ``{cff['title']}''") + "}"),
        ("year", year),
        ("month", month),
        ("version", bib_escape(cff["version"]) if cff.get("version") is not None else None),
        ("howpublished", f"\\url{{{url}}}" if url else bib_escape(where)),
        ("note", bib_escape(note) if note else None),
    ])


def _short(commit: str | None) -> str:
    return f"`{commit[:7]}`" if commit else "none (this version of the file is in no commit)"


def cite_page(results_dir: str | Path, notebooks_dir: str | Path | None = None,
              toc: str | Path | None = None, cff_path: str | Path = CFF,
              repository_url: str | None = None, page_dir: str | Path | None = None) -> str:
    """The "How to cite" page as MyST markdown: the book's BibTeX entry, then every figure.

    With `page_dir` (the folder the page is written to), each figure's PDF and PNG are download
    links in the book, and each row has the anchor `file-<label>` that a chapter's figure links
    to (book/_static/figures.js).

    A figure of a chapter the book shows (listed in `toc`) is referred to by its number; its
    file is cited at the last commit that holds it unchanged (the result file records the
    commit of the code that made it, which predates the commit of the figure itself).
    """
    from diffusion_study.book.results import code_state
    from diffusion_study.book.status import chapter_title, toc_files

    cff = load_cff(cff_path)
    in_book = toc_files(toc)
    numbers = chapter_numbers(toc)
    source = Path(results_dir).as_posix()
    lines = [
        "(how-to-cite)=",
        "# How to cite",
        "",
        "## The book",
        "",
        "The book and the `diffusion_study` library are one work, cited from the repository's "
        "`CITATION.cff` (GitHub's *Cite this repository* reads it; each release's Zenodo record and "
        "DOI come from the same file). In BibTeX, generated from that file when this page was built:",
        "",
        "```bibtex",
        bibtex(cff).rstrip("\n"),
        "```",
        "",
        "## A figure",
        "",
        f"Each figure is written as PDF (and PNG) with a stable name under `{source}/<chapter>/`. "
        "Cite it by its number and label in the book and by that file at a commit: the commit "
        "below is the last one that holds the file as it is, so the file at that commit is the "
        "figure in this book. The chapter's result file records the commit of the code that made "
        "it (the note in each entry). The entries are templates: add the book's URL or DOI.",
        "",
    ]
    listed = figures(results_dir, notebooks_dir)
    if not listed:
        lines += [f"No figures under `{source}/` yet: execute the chapters (`make book`).", ""]
        return "\n".join(lines)
    for chapter in sorted({f["chapter"] for f in listed}):
        rows = [f for f in listed if f["chapter"] == chapter]
        title = chapter_title(Path(notebooks_dir) / f"{chapter}.ipynb") if notebooks_dir is not None else None
        shown = f"notebooks/{chapter}" in in_book
        # Headings hold plain text only: a role there shows raw in the page's contents.
        lines += [f"### {chapter}" + (f": {title}" if title else ""), ""]
        made = rows[0]["made_at"]
        params = rows[0]["params"]
        if shown and chapter in numbers and notebooks_dir is not None:
            order = figure_order(Path(notebooks_dir) / f"{chapter}.ipynb")
            for f in rows:  # Fig. <chapter>.<n>, as the book numbers it
                if f["label"] in order:
                    f["number"] = f"{numbers[chapter]}.{order.index(f['label']) + 1}"
        intro = (f"Chapter {{doc}}`/notebooks/{chapter}`" if shown else f"Chapter `{chapter}`") + \
            (f", executed at commit {code_state(rows[0]['provenance'])}" if made else "") + \
            (f" (profile {params['profile']}, seed {params.get('seed', '?')})" if "profile" in params else "") + "."
        lines += [intro, "", "| Figure | Label | File | Commit |", "| --- | --- | --- | --- |"]
        for f in rows:
            number = f"{{numref}}`{f['label']}`" if (f["label"] and shown) else "—"
            label = f"`{f['label']}`" if f["label"] else "none"
            files = f"`{f['pdf']}`" + (" (and `.png`)" if f["png"] else "")
            if page_dir is not None:
                def rel(path: str) -> str:
                    return Path(os.path.relpath(Path(path).resolve(), Path(page_dir).resolve())).as_posix()

                files = f"`{f['pdf']}`: {{download}}`PDF <{rel(f['pdf'])}>`" + \
                    (f", {{download}}`PNG <{rel(f['png'])}>`" if f["png"] else "")
                if f["label"]:
                    number = f'<span id="file-{f["label"]}"></span>' + number
            lines.append(f"| {number} | {label} | {files} | {_short(f['file_commit'])} |")
        lines += ["", "```bibtex"]
        lines += [figure_bibtex(cff, f, title, repository_url).rstrip("\n") + "\n" for f in rows]
        lines[-1] = lines[-1].rstrip("\n")
        lines += ["```", ""]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.book.citation",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the package version")
    zen = sub.add_parser("zenodo", help="write .zenodo.json from CITATION.cff")
    zen.add_argument("--cff", default=str(CFF), help="CITATION.cff to read (default: %(default)s)")
    zen.add_argument("--out", default=str(ZENODO), help="file to write, '-' for stdout (default: %(default)s)")
    zen.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs")
    book = sub.add_parser("book-config", help="book/_config.yml with the launch buttons on")
    book.add_argument("--repository-url", default=os.environ.get("BOOK_REPOSITORY_URL"),
                      help="https://github.com/OWNER/REPO (default: $BOOK_REPOSITORY_URL)")
    book.add_argument("--branch", default=os.environ.get("BOOK_REPOSITORY_BRANCH") or "main",
                      help="the branch the buttons open (default: $BOOK_REPOSITORY_BRANCH or main)")
    book.add_argument("--jupyterhub-url", default=os.environ.get("BOOK_JUPYTERHUB_URL") or None,
                      help="a JupyterHub to open the chapters in JupyterLab (default: $BOOK_JUPYTERHUB_URL; "
                           "unset: no hub button)")
    book.add_argument("--config", default=str(BOOK_CONFIG), help="configuration to start from")
    book.add_argument("--out", required=True, help="configuration file to write")
    bib = sub.add_parser("bibtex", help="print the book's BibTeX entry (from CITATION.cff)")
    bib.add_argument("--cff", default=str(CFF), help="CITATION.cff to read (default: %(default)s)")
    page = sub.add_parser("cite-page", help="write the book's \"How to cite\" page")
    page.add_argument("--results", default="results", help="the chapters' results (default: %(default)s)")
    page.add_argument("--notebooks", default="notebooks", help="the chapters' notebooks, for the figure "
                      "labels (default: %(default)s)")
    page.add_argument("--toc", help="the book's _toc.yml: figures of the chapters it lists are numbered")
    page.add_argument("--cff", default=str(CFF), help="CITATION.cff to read (default: %(default)s)")
    page.add_argument("--repository-url", default=os.environ.get("BOOK_REPOSITORY_URL") or None,
                      help="https://github.com/OWNER/REPO, for links to the figures' files "
                           "(default: $BOOK_REPOSITORY_URL)")
    page.add_argument("--out", default="-", help="file to write, '-' for stdout (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(version())
        return 0
    if args.command == "zenodo":
        text = zenodo_json(load_cff(args.cff))
        if args.check:
            current = Path(args.out).read_text(encoding="utf-8") if Path(args.out).exists() else None
            if current != text:
                print(f"{args.out} is not what CITATION.cff gives: run "
                      "`python -m diffusion_study.book.citation zenodo`", file=sys.stderr)
                return 1
            return 0
        if args.out == "-":
            sys.stdout.write(text)
        else:
            Path(args.out).write_text(text, encoding="utf-8")
        return 0
    if args.command == "bibtex":
        sys.stdout.write(bibtex(load_cff(args.cff)))
        return 0
    if args.command == "cite-page":
        try:
            text = cite_page(args.results, args.notebooks, args.toc, args.cff, args.repository_url,
                             page_dir=None if args.out == "-" else Path(args.out).parent)
        except ValueError as err:
            print(f"cite-page: {err}", file=sys.stderr)
            return 2
        if args.out == "-":
            sys.stdout.write(text)
        else:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
        return 0
    if not args.repository_url:
        parser.error("book-config needs --repository-url or BOOK_REPOSITORY_URL")
    try:
        out = write_launch_config(args.repository_url, args.out, args.branch, args.config,
                                  hub_url=args.jupyterhub_url)
    except ValueError as err:
        print(f"book-config: {err}", file=sys.stderr)
        return 2
    print(f"book configuration with launch buttons: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- the bibliography's labels --------------------------------------------------------------
# The text cites author-year ("Ho et al. (2020)"); the bibliography's default labels are alpha
# ([HJA20]), which a reader cannot match to them. `setup` makes this module a Sphinx extension
# (book/_config.yml) that registers the pybtex style "authoryear": unsrt's entries, sorted by
# author and year, labelled "Ho et al. 2020" (bibtex_default_style in book/_config.yml).


def _author_year_label(entry) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    if persons:
        last = " ".join(persons[0].last_names) or str(persons[0])
        name = last if len(persons) == 1 else f"{last} and {' '.join(persons[1].last_names)}" \
            if len(persons) == 2 else f"{last} et al."
    else:
        name = entry.fields.get("title", entry.key)[:30]
    from pybtex.richtext import Text

    name = Text.from_latex(name).render_as("text")  # Sz{\'e}kely -> Székely
    return f"{name} {entry.fields.get('year', 'n.d.')}"


def _register_author_year_style() -> None:
    import pybtex.plugin
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.sorting.author_year_title import SortingStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            entries = list(sorted_entries)
            labels = [_author_year_label(entry) for entry in entries]
            seen: dict[str, int] = {}
            for label in labels:  # "Song et al. 2021a", "Song et al. 2021b" where two share one
                seen[label] = seen.get(label, 0) + 1
                yield label if labels.count(label) == 1 else f"{label}{'abcdefghijklmnopqrstuvwxyz'[seen[label] - 1]}"

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = SortingStyle

    try:
        pybtex.plugin.find_plugin("pybtex.style.formatting", "authoryear")
    except pybtex.plugin.PluginNotFound:
        pybtex.plugin.register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    """Sphinx extension: the "authoryear" bibliography style (see above)."""
    _register_author_year_style()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
