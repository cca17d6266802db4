"""How the book is published and cited: its version, its Zenodo record, its launch buttons.

    python -m diffusion_study.citation version            # the package version
    python -m diffusion_study.citation zenodo              # write .zenodo.json from CITATION.cff
    python -m diffusion_study.citation zenodo --check      # exit 1 if .zenodo.json is stale
    python -m diffusion_study.citation book-config --repository-url https://github.com/OWNER/REPO \
        --out _build/launch/_config.yml                    # book/_config.yml with launch buttons
                                                           # (URL default: $BOOK_REPOSITORY_URL)

CITATION.cff is the one source of the citation: `.zenodo.json` (what Zenodo reads when a
GitHub release is made, and so what the DOI's record says) is generated from it, and the
tests check that the committed file is exactly what `zenodo` writes.

The book's launch buttons (Binder, Colab) need the repository's URL, which an offline build
does not have: `book/_config.yml` leaves them off, and `book-config` returns the same
configuration with them on, for `make book BOOK_REPOSITORY_URL=...` (the workflow sets it).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

PACKAGE = "diffusion_study"
ROOT = Path(__file__).resolve().parents[2]
CFF = ROOT / "CITATION.cff"
ZENODO = ROOT / ".zenodo.json"
BOOK_CONFIG = ROOT / "book" / "_config.yml"

BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
_GITHUB_REPO = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
_ARXIV = re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?$")


def version() -> str:
    """The installed package's version (pyproject.toml's), else the source tree's `__version__`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(PACKAGE)
    except PackageNotFoundError:
        from . import __version__

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


def launch_config(config: dict[str, Any], repository_url: str, branch: str = "main") -> dict[str, Any]:
    """`config` (book/_config.yml as a dict) with the Binder and Colab buttons switched on.

    `sphinx.config.html_theme_options` replaces the theme options that Jupyter Book derives
    from its `repository:` and `launch_buttons:` sections, so the buttons are set there.
    The book is built from the repository root, so a chapter's path in the repository is
    its path in the book (`path_to_docs` is empty).
    """
    owner, name = github_repository(repository_url)
    url = f"https://github.com/{owner}/{name}"
    config = copy.deepcopy(config)
    buttons = {"binderhub_url": BINDERHUB_URL, "colab_url": COLAB_URL, "notebook_interface": "jupyterlab"}
    config["repository"] = {"url": url, "branch": branch, "path_to_book": ""}
    config["launch_buttons"] = dict(buttons)
    theme = config.setdefault("sphinx", {}).setdefault("config", {}).setdefault("html_theme_options", {})
    theme.update(repository_url=url, repository_branch=branch, path_to_docs="", launch_buttons=buttons)
    return config


def write_launch_config(repository_url: str, out: str | Path, branch: str = "main",
                        config_path: str | Path = BOOK_CONFIG) -> Path:
    """Write book/_config.yml with the launch buttons on to `out` (for `jupyter-book --config`)."""
    import yaml

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by `python -m diffusion_study.citation book-config` from {config_path}:\n"
              f"# the same configuration with Binder and Colab buttons for {repository_url}.\n")
    out.write_text(header + yaml.safe_dump(launch_config(config, repository_url, branch),
                                           sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


# --- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.citation",
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
    book.add_argument("--config", default=str(BOOK_CONFIG), help="configuration to start from")
    book.add_argument("--out", required=True, help="configuration file to write")
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
                      "`python -m diffusion_study.citation zenodo`", file=sys.stderr)
                return 1
            return 0
        if args.out == "-":
            sys.stdout.write(text)
        else:
            Path(args.out).write_text(text, encoding="utf-8")
        return 0
    if not args.repository_url:
        parser.error("book-config needs --repository-url or BOOK_REPOSITORY_URL")
    try:
        out = write_launch_config(args.repository_url, args.out, args.branch, args.config)
    except ValueError as err:
        print(f"book-config: {err}", file=sys.stderr)
        return 2
    print(f"book configuration with launch buttons: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
