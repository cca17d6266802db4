"""The execution-status page, generated from the result files the chapters write.

    python -m diffusion_study.book.status --results results --toc book/_toc.yml --notebooks notebooks \
        --out book/_generated/status.md

One row per result file (one per chapter): the git commit the chapter was executed at (and
whether the tree was modified), the date, the profile, the wall time, the device, the Python,
PyTorch, NumPy and `diffusion_study` versions, and whether its checks passed; then, per
chapter, every claim it tests with its verdict.

A check passes unless its verdict is "identity fails": a verified identity is a check the
code could fail (a bug), while an empirical verdict ("supported", "contradicted", "inconclusive",
"mixed", ...: eval.verdicts) is a finding whichever way it goes, not a failed run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from diffusion_study.book.results import (
    EMPIRICAL_VERDICTS,
    IDENTITY_VERDICTS,
    VERDICTS,
    code_state,
    read_results,
    write_page,
)

FAILING_VERDICTS = ("identity fails",)
PASSING_VERDICTS = tuple(v for v in VERDICTS if v not in FAILING_VERDICTS)


def check_passed(verdict: str) -> bool:
    """Whether a claim's verdict counts as a passed check (every verdict but "identity fails")."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; valid: {VERDICTS}")
    return verdict in PASSING_VERDICTS


def chapter_status(record: dict) -> str:
    """"pass" (every check passed), "fail" (one failed) or "no checks" for one result record."""
    claims = record.get("claims") or {}
    if not claims:
        return "no checks"
    return "pass" if all(check_passed(c["verdict"]) for c in claims.values()) else "fail"


def toc_entries(toc: str | Path | None) -> list[str]:
    """Every page of a Jupyter Book table of contents (`root` and each `file:`) in reading order, without suffix."""
    if toc is None:
        return []
    import yaml

    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(str(Path(node[key]).with_suffix("")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(Path(toc).read_text(encoding="utf-8")))
    return found


def toc_files(toc: str | Path | None) -> set[str]:
    """Every `file:` of a Jupyter Book table of contents (its `root` included), without suffix."""
    return set(toc_entries(toc))


def chapter_title(notebook: str | Path) -> str | None:
    """The first level-1 heading of a chapter's markdown cells (plain text), or None."""
    import nbformat

    path = Path(notebook)
    if not path.exists():
        return None
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", cell.source, re.M)
            if match:
                return match.group(1)
    return None


def chapter_of(record: dict) -> str:
    """The chapter (notebook stem) a result belongs to: its folder under results/, else its name."""
    parts = Path(record["path"]).parts
    return parts[0] if len(parts) > 1 else str(record.get("name") or Path(record["path"]).stem)


def chapter_link(chapter: str, in_book: set[str]) -> str:
    """A link to the chapter's page when the book has it (its title is shown), else the name."""
    doc = f"notebooks/{chapter}"
    return f"{{doc}}`/{doc}`" if doc in in_book else f"`{chapter}`"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _wall_time(seconds) -> str:
    if seconds is None:
        return "not recorded"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _commit(prov: dict) -> str:
    return code_state(prov) if prov.get("git_commit") else "unknown"


def _date(prov: dict) -> str:
    stamp = prov.get("time_utc")
    return str(stamp).replace("T", " ").replace("+00:00", " UTC") if stamp else "not recorded"


def _versions(prov: dict) -> str:
    names = (("Python", "python"), ("PyTorch", "torch"), ("NumPy", "numpy"), ("diffusion_study", "version"))
    return ", ".join(f"{label} {prov[key]}" for label, key in names if prov.get(key))


def render(records: list[dict], source: str, in_book: set[str] | None = None,
           notebooks: str | Path | None = None) -> str:
    """The status page as MyST markdown, for the result records of `read_results`.

    Chapters listed in the table of contents (`in_book`, from `toc_files`) are linked; with
    `notebooks`, the folder of the chapters' notebooks, each chapter's section is titled.
    """
    in_book = in_book or set()
    records = sorted(records, key=lambda r: (chapter_of(r), r["path"]))
    verdicts = [c["verdict"] for r in records for c in (r.get("claims") or {}).values()]
    passed = sum(check_passed(v) for v in verdicts)
    failed = len(verdicts) - passed
    lines = [
        "(execution-status)=",
        "# Execution status",
        "",
        f"How and where each chapter was last executed, read from the result files under "
        f"`{source}/` when the book was built ({len(records)} result file"
        f"{'s' if len(records) != 1 else ''}; {len(verdicts)} checks: {passed} passed, {failed} failed). "
        "A chapter writes its result file as its last cell, with the git commit, the versions, the "
        "device and the wall time of the run; rerunning it updates this page.",
        "",
        "A check is one claim the chapter tests. It **passes** unless its verdict is *identity fails*: "
        "a verified identity can fail only through a bug in the code, whereas an empirical verdict "
        "(*supported*, *contradicted*, *inconclusive*, *mixed*, ...) is a finding whichever way it goes. The "
        "{ref}`claims ledger <claims-ledger>` gives every verdict with its evidence.",
        "",
    ]
    if not records:
        lines += [f"No result files under `{source}/` yet: execute the chapters (`make book`).", ""]
        return "\n".join(lines)
    lines += [
        "| Chapter | Status | Checks passed | Commit | Executed | Profile | Wall time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in records:
        prov = record.get("provenance") or {}
        claims = record.get("claims") or {}
        ok = sum(check_passed(c["verdict"]) for c in claims.values())
        status = chapter_status(record)
        lines.append(
            f"| {chapter_link(chapter_of(record), in_book)} | **{status}** | {ok} of {len(claims)} "
            f"| {_commit(prov)} | {_cell(_date(prov).split(' ')[0])} "
            f"| {_cell((record.get('params') or {}).get('profile', '?'))} | {_wall_time(prov.get('wall_time_s'))} |"
        )
    lines += ["", "The device, the versions and every check of each chapter follow.", ""]
    for record in records:
        prov = record.get("provenance") or {}
        claims = record.get("claims") or {}
        chapter = chapter_of(record)
        title = chapter_title(Path(notebooks) / f"{chapter}.ipynb") if notebooks is not None else None
        # Headings hold plain text only: a role there shows raw in the page's contents.
        lines += [f"## {chapter}" + (f": {title}" if title else ""), ""]
        lines.append(f"Chapter {chapter_link(chapter, in_book)}, result file `{source}/{record['path']}`.")
        lines.append("")
        commit = prov.get("git_commit")
        details = [
            ("Commit", f"`{commit}`" if commit else "unknown"),
            ("Tree", _tree(prov)),
            ("Executed", _date(prov)),
            ("Profile and seed", f"{(record.get('params') or {}).get('profile', '?')}, "
                                 f"seed {(record.get('params') or {}).get('seed', '?')}"),
            ("Wall time", _wall_time(prov.get("wall_time_s"))),
            ("Device", prov.get("device") or "not recorded"),
            ("Platform", prov.get("platform") or "not recorded"),
            ("Versions", _versions(prov) or "not recorded"),
        ]
        lines += ["| | |", "| --- | --- |"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in details]
        lines.append("")
        if claims:
            lines += ["| Claim | Verdict | Check |", "| --- | --- | --- |"]
            for cid, claim in sorted(claims.items()):
                mark = "pass" if check_passed(claim["verdict"]) else "**fail**"
                lines.append(f"| {cid} | {_cell(claim['verdict'])} | {mark} |")
        else:
            lines.append("This result records no claims.")
        lines.append("")
    return "\n".join(lines)


def _tree(prov: dict) -> str:
    if prov.get("git_dirty") is None:
        return "not a git checkout" if not prov.get("git_commit") else "not recorded"
    if not prov["git_dirty"]:
        return "clean"
    files = prov.get("git_dirty_files") or []
    shown = ", ".join(f"`{f}`" for f in files[:8])
    more = f" and {len(files) - 8} more" if len(files) > 8 else ""
    return f"modified: {shown}{more}" if files else "modified"


def summary(records: list[dict], in_book: set[str] | None = None) -> str:
    """The landing page's result summary (book/_generated/summary.md, included by book/intro.md):
    one paragraph with the number of claims in each verdict class and their ids, from the results."""
    in_book = in_book or set()
    empirical = {v: [] for v in EMPIRICAL_VERDICTS}
    identity = {v: [] for v in IDENTITY_VERDICTS}
    chapters = []
    for record in sorted(records, key=chapter_of):
        chapter = chapter_of(record)
        chapters.append(chapter)
        number = chapter.split("_")[0].lstrip("0") or chapter
        for cid, claim in sorted((record.get("claims") or {}).items()):
            kind = empirical if claim["verdict"] in empirical else identity
            kind[claim["verdict"]].append((number, cid))
    n_emp = sum(len(v) for v in empirical.values())
    n_id = sum(len(v) for v in identity.values())
    if not n_emp + n_id:
        return "No chapter has recorded a result yet: run `make book`.\n"

    def named(ids: list[tuple[str, str]]) -> str:  # "ch. 2: K4, K5; ch. 4: N2"
        by_chapter: dict[str, list[str]] = {}
        for number, cid in ids:
            by_chapter.setdefault(number, []).append(cid)
        return "; ".join(f"ch. {number}: {', '.join(cids)}" for number, cids in by_chapter.items())

    def part(verdict: str, ids: list[tuple[str, str]]) -> str:
        return f"**{len(ids)} {verdict}**" + (f" ({named(ids)})" if ids else "")

    shown = {v: ids for v, ids in empirical.items() if ids or v not in ("not supported", "not testable here")}
    text = (f"Across {len(chapters)} chapters the book tests {n_emp} empirical claims of the three papers: "
            + ", ".join(part(v, ids) for v, ids in shown.items()) + ". "
            f"Of the {n_id} identities it derives and checks numerically, {len(identity['verified identity'])} "
            f"are verified and {len(identity['identity fails'])} fail"
            + (f" ({named(identity['identity fails'])})" if identity["identity fails"] else "")
            + (f"; {len(identity['identity inconclusive'])} are inconclusive, the run too small to tell "
               f"({named(identity['identity inconclusive'])})" if identity["identity inconclusive"] else "") + ". "
            "A claim is *supported* (*contradicted*) when every decided comparison has its whole 95% interval "
            "beyond (short of) the threshold fixed in advance, *inconclusive* when the seeds cannot tell, *mixed* "
            "when decided comparisons disagree, and *inadequate model* when the models did not beat the chapter's "
            "trivial baselines; each chapter's verdict table gives the measured effects, the "
            "{ref}`claims ledger <claims-ledger>` all of them.")
    return ("<!-- Generated by python -m diffusion_study.book.status from the result files: do not edit. -->\n\n"
            f"```{{div}} result-summary\n{text}\n```\n")


BENCH_SUMMARY = Path("bench") / "results" / "summary.json"


def bench_section(summary_path: str | Path | None, records: list[dict] | None = None) -> str:
    """The benchmark appendix's provenance, in the chapters' words (results.code_state), and
    whether it is the code the chapters ran: `make bench` is a run of its own."""
    if summary_path is None or not Path(summary_path).is_file():
        return ""
    prov = json.loads(Path(summary_path).read_text(encoding="utf-8")).get("provenance") or {}
    chapters = {(r.get("provenance") or {}).get("git_commit") for r in records or []} - {None}
    same = prov.get("git_commit") in chapters
    relation = ("the commit of some of the chapters above" if same else
                "not a commit any chapter above was executed at, so its timings describe that code, which "
                "may differ from the chapters'") if chapters else ""
    lines = ["## Benchmarks (the appendix)", "",
             f"{{ref}}`appendix-bench` was written by `make bench` at commit {code_state(prov)}, "
             f"{_date(prov)}, on {prov.get('device', 'an unrecorded device')}"
             + (f"; {relation}." if relation else ".") + f" Its provenance: `{Path(summary_path).as_posix()}`.", ""]
    return "\n".join(lines)


def build_status(results_dir: str | Path, toc: str | Path | None = None,
                 notebooks: str | Path | None = None, bench: str | Path | None = BENCH_SUMMARY) -> str:
    """Read every result under `results_dir` (and the benchmarks' summary); return the status page's markdown."""
    records = read_results(results_dir)
    page = render(records, Path(results_dir).as_posix(), toc_files(toc), notebooks)
    extra = bench_section(bench, records)
    return page.rstrip("\n") + "\n\n" + extra if extra and records else page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.book.status",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--toc", type=Path, help="the book's _toc.yml: chapters it lists are linked")
    parser.add_argument("--notebooks", type=Path, help="the chapters' notebooks, for their titles")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    parser.add_argument("--summary", type=Path,
                        help="also write the landing page's result summary here (default with --out: "
                             "summary.md beside it, which book/intro.md includes)")
    args = parser.parse_args(argv)
    try:
        text = build_status(args.results, args.toc, args.notebooks)
        brief = summary(read_results(args.results), toc_files(args.toc))
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    write_page(text, args.out)
    summary_path = args.summary or (args.out.with_name("summary.md") if args.out is not None else None)
    if summary_path is not None:
        write_page(brief, summary_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
