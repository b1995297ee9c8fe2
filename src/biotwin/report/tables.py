"""Small HTML tables: the report's parameter table and the notebook views of biotwin's values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from numbers import Real


def number(value: object, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("–" for a missing or infinite one); text as it is."""
    if value is None:
        return "–"
    if isinstance(value, Real) and not isinstance(value, bool):
        return f"{float(value):.{digits}g}" if math.isfinite(float(value)) else "–"
    return str(value)


def html_table(header: Sequence[str], rows: Iterable[Sequence[object]], caption: str | None = None) -> str:
    """An HTML ``<table>`` of ``rows`` under ``header``; numbers shown with 4 significant digits, text escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(number(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table class="biotwin">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
