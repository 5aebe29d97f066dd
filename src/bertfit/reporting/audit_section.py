"""The label audit as HTML: a section of the report (``bertfit train --audit``) and ``bertfit audit``'s page.

Both read the audit's summary, a plain dict (``audit.json`` in a model folder): the method, the
estimated label-error rate per split, the (given, suggested) counts, the strongest suspects, and
how many training rows ``--drop-suspects`` left out or ``--relabel-suspects`` relabelled.
"""

from __future__ import annotations

from html import escape
from typing import Any

from bertfit.reporting.html import CSS, facts, part, section, table

AUDIT_SUMMARY = "audit.json"  # in a model folder trained with --audit
MATRIX_CLASSES = 12  # the classes most involved in flagged rows; a 77-class matrix would not be read


def audit_section(summary: dict[str, Any]) -> str:
    """The ``<section id="audit">`` of a report."""
    return section("audit", "Label audit", audit_body(summary))


def audit_page(summary: dict[str, Any]) -> str:
    """``bertfit audit``'s whole page, in the report's style."""
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>bertfit audit</title>'
            f"<style>{CSS}</style></head><body>\n<h1>bertfit audit</h1>\n{audit_body(summary)}\n</body></html>\n")


def audit_body(summary: dict[str, Any]) -> str:
    dropped, relabelled = summary.get("dropped"), summary.get("relabelled")
    parts = [
        f"<p>Evidence: {escape(str(summary.get('method')))}, {summary.get('folds')} folds, out of fold (the test "
        "rows by models fitted on train and validation). A flagged row is one whose given label the "
        "evidence confidently disagrees with (confident learning); read the suspects before you act.</p>",
        facts(([("training rows left out (--drop-suspects)", dropped)] if dropped is not None else [])
              + ([("training rows given the suggested label (--relabel-suspects)", relabelled)]
                 if relabelled is not None else [])
              + [("near-duplicates labelled apart (rows)", summary.get("near_duplicate_rows")),
                 ("outliers for their label", summary.get("outliers")),
                 ("seconds", summary.get("seconds"))]),
        part("rates", "Estimated label-error rate", _rates(summary.get("per_split", {}))),
        part("pairs", "Given label (rows) by suggested label (columns), flagged rows", _matrix(summary)),
        part("suspects", f"The {len(summary.get('top', []))} strongest suspects", _suspects(summary.get("top", []))),
    ]
    return "".join(parts)


def _rates(per_split: dict[str, dict[str, Any]]) -> str:
    rows = [[name, s["rows"], s["flagged"],
             f"{s['error_rate']:.1%} ({s['interval_95'][0]:.1%} to {s['interval_95'][1]:.1%})"]
            for name, s in per_split.items()]
    return table(["split", "rows", "flagged", "flagged share (95% interval)"], rows)


def _matrix(summary: dict[str, Any]) -> str:
    pairs = [(str(given), str(suggested), int(count)) for given, suggested, count in summary.get("pairs", [])]
    if not pairs:
        return "<p>No row flagged.</p>"
    involvement: dict[str, int] = {}
    for given, suggested, count in pairs:
        involvement[given] = involvement.get(given, 0) + count
        involvement[suggested] = involvement.get(suggested, 0) + count
    shown = sorted(involvement, key=lambda name: -involvement[name])[:MATRIX_CLASSES]
    counts = {(given, suggested): count for given, suggested, count in pairs}
    cells = [[given, *(counts.get((given, suggested)) or "" for suggested in shown)] for given in shown]
    left = len(involvement) - len(shown)
    note = f"<p>{left} more classes are involved; audit.csv has every row.</p>" if left > 0 else ""
    return table(["given \\ suggested", *shown], cells) + note


def _suspects(rows: list[dict[str, Any]]) -> str:
    cells = [[r["split"], r["row"], r["text"][:300] + (f" || {r['text_pair'][:150]}" if r.get("text_pair") else ""),
              r["given_label"], r["suggested_label"], r["score"], r["reason"]] for r in rows]
    return table(["split", "row", "text", "given", "suggested", "score", "reason"], cells) if cells else \
        "<p>No suspect.</p>"
