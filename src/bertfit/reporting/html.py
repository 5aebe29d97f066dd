"""The report's HTML pieces: its style sheet, sections, tables and how values are written.

Shared by the report and the label audit's page, so both read alike.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from bertfit.reporting.plots import NOT_RECORDED

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .note { background: #fff4d6; padding: 0.5em 1em; border-left: 4px solid #e0a800; }
.missing { color: #666; font-style: italic; } td.text { max-width: 600px; overflow-wrap: anywhere; }
"""


def section(id_: str, title: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{escape(title)}</h2>{body}</section>\n'


def part(id_: str, title: str, body: str) -> str:
    return f'<div id="{id_}"><h3>{escape(title)}</h3>{body}</div>\n'


def missing(what: str = "") -> str:
    return f'<p class="missing">{escape(what.capitalize() + ": " if what else "")}{NOT_RECORDED}.</p>'


def facts(pairs: list[tuple[str, Any]], none: str = NOT_RECORDED) -> str:
    """A two-column table; a value of None reads ``none`` ('not recorded')."""
    if not pairs:
        return missing()
    rows = "".join(f"<tr><th>{escape(str(key))}</th><td>{fmt(value, none)}</td></tr>" for key, value in pairs)
    return f"<table>{rows}</table>"


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(name))}</th>" for name in header)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if isinstance(v, (int, float)) else ""}>{fmt(v, "")}</td>'
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def fmt(value: Any, none: str = "n/a") -> str:
    """A value as escaped text: floats to 4 places (small ones in e-notation), containers as compact JSON."""
    if value is None:
        return escape(none)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, (dict, list, tuple)):
        return escape(json.dumps(value, default=str))
    return escape(str(value))
