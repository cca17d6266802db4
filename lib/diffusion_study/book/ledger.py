"""The claims ledger page, generated from the claim list and the results the notebooks write.

    python -m diffusion_study.book.ledger --results results --claims book/claims.yml \
        --out book/_generated/claims.md

Every claim in the list gets a row: its verdict, effect, conditions and a link to the
evidence (a figure or table label in the book) from each result that records it, or
"not yet tested". A result naming a claim id the list lacks is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffusion_study.book.results import IDENTITY_VERDICTS, read_results, write_page

NOT_TESTED = "not yet tested"


def load_claims(path: str | Path) -> list[dict]:
    """Read the claim list: [{"title", "cite", "claims": [{"id", "text"}, ...]}, ...]."""
    import yaml

    groups = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["groups"]
    ids = [c["id"] for g in groups for c in g["claims"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate claim ids {duplicates}")
    return groups


def collect_verdicts(records: list[dict], known_ids: set[str], source: str) -> dict[str, list[dict]]:
    """Map claim id -> verdict records (each with the result it came from); reject unknown ids."""
    verdicts: dict[str, list[dict]] = {}
    for record in records:
        for cid, verdict in (record.get("claims") or {}).items():
            if cid not in known_ids:
                raise ValueError(
                    f"{source}/{record['path']}: claim {cid!r} is not in the claim list "
                    f"(known: {', '.join(sorted(known_ids))})"
                )
            verdicts.setdefault(cid, []).append({**verdict, "result": record})
    return verdicts


def overall_verdict(entries: list[dict]) -> str:
    """One word for a claim: "not yet tested", the verdict all entries share, or "mixed"."""
    found = {e["verdict"] for e in entries}
    if not found:
        return NOT_TESTED
    return found.pop() if len(found) == 1 else "mixed"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _evidence_link(label: str) -> str:
    role = "numref" if label.startswith(("fig-", "tbl-")) else "ref"
    return f"{{{role}}}`{label}`"


def _conditions(entry: dict) -> str:
    result = entry["result"]
    params = result.get("params", {})
    commit = (result["provenance"].get("git_commit") or "unknown")[:7]
    made = f"profile {params.get('profile', '?')}, seed {params.get('seed', '?')}, commit {commit}"
    return f"{entry['conditions']}; {made}" if entry.get("conditions") else made


def render(groups: list[dict], verdicts: dict[str, list[dict]], source: str) -> str:
    """Return the ledger page as MyST markdown."""
    counts: dict[str, int] = {}
    for group in groups:
        for claim in group["claims"]:
            key = overall_verdict(verdicts.get(claim["id"], []))
            counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    identities = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k in IDENTITY_VERDICTS) or "none"
    empirical = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k not in IDENTITY_VERDICTS) or "none"
    lines = [
        "(claims-ledger)=",
        "# Claims ledger",
        "",
        f"Each claim the book tests, with the verdict the chapters measured ({total} claims; "
        f"empirical verdicts: {empirical}; mathematical identities: {identities}). This page is "
        f"generated when the book is built, from the claim list `book/claims.yml` and the result "
        f"files the notebooks write under `{source}/`; rerunning a chapter updates it.",
        "",
        "Two kinds of verdict are kept apart. An **empirical** verdict (*supported*, *not supported*, "
        "*mixed*) comes from a measurement that could have come out the other way, with its interval "
        "over seeds and the threshold it was judged by. A **verified identity** is a mathematical "
        "statement checked numerically against the library's own formulas: such a check can find a bug "
        "in the code, never a wrong paper. The evidence column links the figure or table that shows it.",
        "",
    ]
    for group in groups:
        # The heading is plain text (a role there shows raw in the page's contents); the
        # citation goes in the sentence below it.
        lines += [f"## {group['title']}", "", f"Claims of {{cite:t}}`{group['cite']}`.", ""]
        lines += ["| Claim | Verdict | Measured effect | Conditions | Evidence |",
                  "| --- | --- | --- | --- | --- |"]
        for claim in group["claims"]:
            entries = verdicts.get(claim["id"], [])
            text = f"**{claim['id']}.** {_cell(claim['text'])}"
            if not entries:
                lines.append(f"| {text} | {NOT_TESTED} | | | |")
                continue
            join = " / ".join
            lines.append(
                f"| {text} | {join(_cell(e['verdict']) for e in entries)} "
                f"| {join(_cell(e.get('effect', '')) for e in entries)} "
                f"| {join(_cell(_conditions(e)) for e in entries)} "
                f"| {join(_evidence_link(e['evidence']) for e in entries)} |"
            )
        lines.append("")
    return "\n".join(lines)


def build_ledger(results_dir: str | Path, claims_path: str | Path) -> str:
    """Read the claim list and every result under `results_dir`; return the ledger markdown."""
    groups = load_claims(claims_path)
    known = {c["id"] for g in groups for c in g["claims"]}
    source = Path(results_dir).as_posix()
    verdicts = collect_verdicts(read_results(results_dir), known, source)
    return render(groups, verdicts, source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusion_study.book.ledger")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--claims", default="book/claims.yml", type=Path)
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        text = build_ledger(args.results, args.claims)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_page(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
