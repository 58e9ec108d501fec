"""Plain-text / Markdown tables for the terminal and the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, dict) and "mean" in value:
        m, s = value["mean"], value.get("std", float("nan"))
        if m is None or (isinstance(m, float) and math.isnan(m)):
            return "-"
        return f"{m:.{digits}f}" if s is None or math.isnan(s) else f"{m:.{digits}f}±{s:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 1
                   ) -> str:
    """A Markdown table that also reads well as plain text (columns padded)."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])
