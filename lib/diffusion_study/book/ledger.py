"""The claims ledger page, generated from the claim list and the results the notebooks write.

    python -m diffusion_study.book.ledger --results results --claims book/claims.yml \
        --out book/_generated/claims.md

One table per paper, its sections in the order of the chapters that test them, a screen
each: one row per claim part and setting (N1 in 2D, N1 on digits, ...), with its verdict as
a coloured badge (book/_static/verdicts.css, one colour per class of eval.verdicts) and the
link to its evidence, the measured effect (in Unicode: ±, ×, ‖x‖²), its 95% interval and its
minimum detectable effect at 80% power. A claim no result records reads "not yet tested". The
conditions of each chapter are listed once, below the tables; a summary count opens the page.
A result naming a claim id the list lacks is an error.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from diffusion_study.book.results import LEGACY_VERDICTS, read_results, write_page
from diffusion_study.eval import verdicts as rules

NOT_TESTED = "not yet tested"
BADGE_ORDER = rules.EMPIRICAL + LEGACY_VERDICTS + rules.IDENTITY + (NOT_TESTED,)
LEGACY_NOTE = "old rule"
MISSING = "—"


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
    found: dict[str, list[dict]] = {}
    for record in records:
        for cid, verdict in (record.get("claims") or {}).items():
            if cid not in known_ids:
                raise ValueError(
                    f"{source}/{record['path']}: claim {cid!r} is not in the claim list "
                    f"(known: {', '.join(sorted(known_ids))})"
                )
            found.setdefault(cid, []).append({**verdict, "result": record})
    return found


def overall_verdict(entries: list[dict]) -> str:
    """One class for a claim over its rows: "not yet tested" without any; eval.verdicts.combine
    when every row uses its classes; otherwise (old-rule verdicts) the verdict all rows share,
    or "mixed"."""
    found = [part["verdict"] for entry in entries for part in (entry.get("parts") or [entry])]
    if not found:
        return NOT_TESTED
    if all(v in rules.CLASSES for v in found):
        return rules.combine(found)
    return found[0] if len(set(found)) == 1 else rules.MIXED


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------

# ASCII stand-ins the chapters' effect texts use, and their Unicode (longest first where they overlap).
_REPLACEMENTS = (
    ("+-", "±"), ("+/-", "±"), ("<=", "≤"), (">=", "≥"), ("->", "→"), ("!=", "≠"),
    ("x0_hat", "x̂₀"), ("x_hat", "x̂"), ("E[x0|x_t]", "E[x₀ | xₜ]"), ("I(x0; x_t)", "I(x₀; xₜ)"),
    ("beta~_t", "β̃ₜ"), ("lambda_t", "λₜ"), ("dlambda", "Δλ"), ("lambda", "λ"), ("eta=", "η = "),
    ("sigma", "σ"), ("Frechet", "Fréchet"), ("||", "‖"), ("^2", "²"),
)
_SUBSCRIPTS = re.compile(r"(?<![\w/])([xzwq])_([ts])(?![\w/])")  # x_t -> xₜ, z_s -> zₛ
_X0 = re.compile(r"(?<![\w/])x0(?![\w/.])")  # x0 alone, not the configuration x0/ddim
# A factor: "x2", "x0.5", "x92.5" before a space or punctuation, "10x " after a number, "64 x 3".
_FACTOR = re.compile(r"(?<![\w/])x(?=(?:[1-9]\d*(?:\.\d+)?|0\.\d+)(?:\s|[,;:)\]]|$))|(?<=\d)x(?=\s)")
_TIMES = re.compile(r"(?<=\d) x (?=\d)")
_MINUS = re.compile(r"(?<![\w.])-(?=\d)|(?<= )-(?= )")
_SUB = {"t": "ₜ", "s": "ₛ"}


def unicode_text(text: str) -> str:
    """A chapter's effect text with Unicode for its ASCII stand-ins: ± for +-, × for a factor x2,
    ‖x̂₀ − x₀‖² for ||x0_hat - x0||^2, ≤, →, minus signs, Greek letters written out."""
    out = " ".join(str(text).split())
    for ascii_, uni in _REPLACEMENTS:
        out = out.replace(ascii_, uni)
    out = _SUBSCRIPTS.sub(lambda m: m.group(1) + _SUB[m.group(2)], out)
    out = _X0.sub("x₀", out)
    out = _FACTOR.sub("×", out)
    out = _TIMES.sub(" × ", out)
    return _MINUS.sub("−", out)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _evidence_link(label: str) -> str:
    role = "numref" if label.startswith(("fig-", "tbl-")) else "ref"
    return f"{{{role}}}`{label}`"


def _slug(verdict: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", verdict.lower()).strip("-")


def badge(verdict: str) -> str:
    """The verdict as a coloured badge (raw HTML; its colour from book/_static/verdicts.css)."""
    label = f"{verdict} ({LEGACY_NOTE})" if verdict in LEGACY_VERDICTS else verdict
    return f'<span class="verdict verdict-{_slug(verdict)}">{label}</span>'


def _number(x) -> str:
    if isinstance(x, str):
        return unicode_text(x)
    x = float(x)
    if math.isinf(x):
        return "∞"
    if math.isnan(x):
        return MISSING
    return f"{x:.3g}".replace("-", "−")


def _interval(row: dict) -> str:
    iv = row.get("interval")
    return f"[{_number(iv[0])}, {_number(iv[1])}]" if iv else MISSING


def _chapter(record: dict) -> str:
    """"ch. 4" for a result named 04_ndm_2d; the result's name otherwise."""
    match = re.match(r"^0*(\d+)_", record.get("name", ""))
    return f"ch. {match.group(1)}" if match else record.get("name", record["path"])


def rows_of(entry: dict) -> list[dict]:
    """The ledger rows of one result's record of a claim: one per part, or the record itself."""
    base = {"setting": entry.get("setting") or _chapter(entry["result"]), "evidence": entry["evidence"],
            "result": entry["result"]}
    parts = entry.get("parts") or [entry]
    return [{**base, **{k: part[k] for k in ("setting", "verdict", "effect", "interval", "mde", "margin")
                        if part.get(k) not in (None, "")}} for part in parts]


def _segments(text: str) -> list[str]:
    return [s.strip() for s in str(text or "").split(";") if s.strip()]


def _chapter_conditions(records: list[dict], by_claim: dict[str, list[dict]]) -> list[str]:
    """One paragraph per chapter: what its claims share, then each claim's own additions."""
    lines = []
    for record in records:
        entries = {cid: e for cid, es in by_claim.items() for e in es if e["result"] is record}
        if not entries:
            continue
        segments = {cid: _segments(e.get("conditions")) for cid, e in entries.items()}
        shared = [s for s in next(iter(segments.values())) if all(s in seg for seg in segments.values())]
        params = record.get("params", {})
        commit = (record["provenance"].get("git_commit") or "unknown")[:7]
        made = f"profile {params.get('profile', '?')}, seed {params.get('seed', '?')}, commit `{commit}`"
        text = f"**{_chapter(record)}** (`{record.get('name', record['path'])}`; {made})"
        own = [f"{cid}: " + unicode_text("; ".join(s for s in seg if s not in shared))
               for cid, seg in sorted(segments.items()) if any(s not in shared for s in seg)]
        if shared:
            text += ": " + unicode_text("; ".join(shared)) + (". Besides, " if own else "")
        elif own:
            text += ": "
        text += "; ".join(own)
        lines += [_cell(text) + ".", ""]
    return lines


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{badge(k)} {counts[k]}" for k in BADGE_ORDER if counts.get(k))


def render(groups: list[dict], found: dict[str, list[dict]], source: str) -> str:
    """Return the ledger page as MyST markdown."""
    records: list[dict] = []
    for entries in found.values():
        for e in entries:
            if all(e["result"] is not r for r in records):
                records.append(e["result"])
    records.sort(key=lambda r: r["path"])
    order = {id(r): k for k, r in enumerate(records)}

    def first_chapter(group: dict) -> int:
        ks = [order[id(e["result"])] for c in group["claims"] for e in found.get(c["id"], [])]
        return min(ks, default=len(records))

    groups = sorted(groups, key=first_chapter)  # stable: ties keep the claim list's order
    row_counts: dict[str, int] = {}
    claim_counts: dict[str, int] = {}
    for group in groups:
        for claim in group["claims"]:
            entries = found.get(claim["id"], [])
            key = overall_verdict(entries)
            claim_counts[key] = claim_counts.get(key, 0) + 1
            for row in [r for e in entries for r in rows_of(e)] or [{"verdict": NOT_TESTED}]:
                row_counts[row["verdict"]] = row_counts.get(row["verdict"], 0) + 1
    n_claims, n_rows = sum(claim_counts.values()), sum(row_counts.values())
    lines = [
        "(claims-ledger)=",
        "# Claims ledger",
        "",
        f"**{n_claims} claims in {n_rows} rows** (one per claim part and setting). "
        f"Rows: {_summary(row_counts)}.",
        "",
        f"Claims, their rows combined: {_summary(claim_counts)}.",
        "",
        "Each claim the book tests, with the verdict the chapters measured. This page is generated "
        f"when the book is built, from the claim list `book/claims.yml`, the thresholds "
        f"`book/thresholds.yml` (fixed before the results they judge) and the result files the "
        f"notebooks write under `{source}/`; rerunning a chapter updates it.",
        "",
        "An **empirical** verdict comes from a measurement that could have come out either way, judged "
        "by its 95% interval over seeds against the claim's margin: *supported* (the interval lies "
        "beyond the margin), *contradicted* (it lies on the other side), *inconclusive* (it spans the "
        "margin: the seeds could not tell), *mixed* (the parts of a claim were each decided and "
        "disagree), *not testable here*, *inadequate model* (the model did not beat its baselines). "
        "*Not supported (old rule)* marks a verdict written before these rules, which did not tell "
        "*contradicted* from *inconclusive*. A **verified identity** is a mathematical statement "
        "checked numerically against the library's own formulas: it can find a bug in the code, never "
        "a wrong paper. *MDE* is the minimum detectable effect: the smallest distance from the margin "
        f"that the row's seeds detect with 80% power; {MISSING} where the chapter did not record it.",
        "",
    ]
    for group in groups:
        # The heading is plain text (a role there shows raw in the page's contents); the
        # citation goes in the sentence below it.
        lines += [f"## {group['title']}", "", f"Claims of {{cite:t}}`{group['cite']}`.", ""]
        lines += ["| Claim | Verdict | Effect | 95% interval | MDE |", "| --- | --- | --- | --- | --- |"]
        for claim in group["claims"]:
            entries = sorted(found.get(claim["id"], []), key=lambda e: order[id(e["result"])])
            rows = [r for e in entries for r in rows_of(e)]
            text = f"**{claim['id']}.** {_cell(claim['text'])}"
            if not rows:
                lines.append(f"| {text} | {badge(NOT_TESTED)} | | | |")
                continue
            for k, row in enumerate(rows):
                setting = f"*({_cell(row['setting'])})*"
                head = f"{text} {setting}" if k == 0 else f"**{claim['id']}** {setting}"
                effect = unicode_text(row.get("effect", ""))
                if row.get("margin"):
                    effect += f"; margin {unicode_text(row['margin'])}"
                lines.append(
                    f"| {head} | {badge(row['verdict'])} {_evidence_link(row['evidence'])} "
                    f"| {_cell(effect)} | {_cell(_interval(row))} "
                    f"| {_cell(_number(row['mde'])) if row.get('mde') is not None else MISSING} |"
                )
        lines.append("")
    lines += ["## Conditions", "", "Each chapter's conditions, once: what its claims share, then what each adds.", ""]
    lines += _chapter_conditions(records, found)
    return "\n".join(lines).rstrip() + "\n"


def build_ledger(results_dir: str | Path, claims_path: str | Path) -> str:
    """Read the claim list and every result under `results_dir`; return the ledger markdown."""
    groups = load_claims(claims_path)
    known = {c["id"] for g in groups for c in g["claims"]}
    source = Path(results_dir).as_posix()
    found = collect_verdicts(read_results(results_dir), known, source)
    return render(groups, found, source)


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


# ---------------------------------------------------------------------------------------
# A chapter's closing table: the same columns in every chapter
# ---------------------------------------------------------------------------------------

CLOSING_COLUMNS = ("Claim", "Setting", "Verdict", "Effect", "95% interval", "Smallest detectable", "Margin")


def closing_rows(claims: dict[str, dict]) -> list[list[str]]:
    """One row per claim part, `CLOSING_COLUMNS`, from a chapter's `claims` (the dict it hands to
    `write_result`): the verdict as computed, the effect in Unicode, the interval, the minimum detectable
    effect and the margin ("—" where a part has none, e.g. a verified identity)."""
    rows = []
    for cid, claim in claims.items():
        for part in claim.get("parts") or [claim]:
            mde = part.get("mde")
            rows.append([cid, unicode_text(part.get("setting") or "all"), part["verdict"],
                         unicode_text(part.get("effect", MISSING)), _interval(part),
                         MISSING if mde is None else _number(mde), unicode_text(part.get("margin") or MISSING)])
    return rows


def closing_table(claims: dict[str, dict]):
    """A chapter's closing table (HTML with a plain-text form, `book.plotting.html_table`): the same columns in
    every chapter, the verdict column as computed by the chapter."""
    from diffusion_study.book.plotting import html_table

    return html_table(closing_rows(claims), CLOSING_COLUMNS)
