"""The small HTML vocabulary of the pages a person reads: the bench report and the
deletion-request record page.

Pages are self-contained (CSS inline, images embedded as base64 PNG) so that one file can be
mailed or archived. Every piece of text is escaped unless it is already :class:`Html`, the
marker for markup this module produced; so no caller ever writes raw text into a page.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterable, Sequence

CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--bg-alt:#f5f7fa;
 --good:#1a7f37;--good-bg:#dafbe1;--bad:#b42318;--bad-bg:#fee4e2;
 --unsure:#8a5a00;--unsure-bg:#fff4ce;--na:#5b6475;--na-bg:#eef0f3}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:var(--fg);max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:32px 0 8px;
 border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
p,li{max-width:80ch}.muted,.note{color:var(--muted)}.note{font-size:13px}
code,.hash{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:13px}
.hash{word-break:break-all}
pre{background:var(--bg-alt);padding:8px 12px;overflow-x:auto;white-space:pre-wrap}
.scroll{overflow-x:auto;max-width:100%;margin:8px 0}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
thead th{background:var(--bg-alt);border-bottom:2px solid var(--line);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:hover{background:#fafbfc}
caption{text-align:left;font-weight:600;padding:4px 0}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;
 font-weight:600;white-space:nowrap;margin:1px 2px 1px 0;border:1px solid transparent}
.good{color:var(--good);background:var(--good-bg);border-color:var(--good)}
.bad{color:var(--bad);background:var(--bad-bg);border-color:var(--bad)}
.unsure{color:var(--unsure);background:var(--unsure-bg);border-color:var(--unsure)}
.na{color:var(--na);background:var(--na-bg)}
.badge[title]{cursor:help}
.big .badge{font-size:18px;padding:4px 14px;border-radius:16px;white-space:normal}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px}
.card h3{margin:0 0 8px}
.summary{background:var(--bg-alt);border-radius:8px;padding:8px 16px;margin:12px 0}
.warn{background:#fff3cd;border:2px solid #d39e00;padding:8px 12px;border-radius:6px}
figure{margin:12px 0}figcaption{color:var(--muted);font-size:13px;max-width:100ch}
img{max-width:100%;height:auto}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dt{color:var(--muted)}dd{margin:0}
"""

_NUMERIC = re.compile(r"^[-+−]?(\d|\.\d)|^—$")


class Html(str):
    """Markup produced here; :func:`esc` leaves it alone."""


def esc(value: object) -> Html:
    """Text as HTML: escaped, unless it already is :class:`Html`."""
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    """Several fragments (texts escaped) as one."""
    return Html("".join(esc(p) for p in parts if p is not None))


def tag(name: str, *content: object, **attrs: object) -> Html:
    """``<name attrs>content</name>``; ``class_`` gives ``class``; None or False attributes
    are left out."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"'
                   for k, v in attrs.items() if v is not None and v is not False)
    return Html(f"<{name}{text}>{join(content)}</{name}>")


def page(title: str, *body: object) -> str:
    """A whole HTML5 document: head with charset, viewport, title and the inline CSS."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body>{join(body)}</body></html>\n")


def is_numeric(cell: object) -> bool:
    """Whether a cell is a number ("52.1±0.3 [2/3]", "—" for none): right-aligned."""
    return not isinstance(cell, Html) and bool(_NUMERIC.match(str(cell).strip()))


def table(headers: Sequence[object], rows: Iterable[Sequence[object]],
          caption: object | None = None, titles: Sequence[str | None] | None = None) -> Html:
    """A table in a horizontal-scroll wrapper (a wide table scrolls, never the page).

    Cells are text (escaped; numbers right-aligned) or :class:`Html`; ``titles`` gives
    header tooltips."""
    titles = list(titles or [None] * len(headers))
    head = tag("tr", *(tag("th", h, scope="col", title=t) for h, t in zip(headers, titles)))
    body = [tag("tr", *(tag("td", c, class_="num" if is_numeric(c) else None) for c in row))
            for row in rows]
    return tag("div", tag("table", tag("caption", caption) if caption is not None else None,
                          tag("thead", head), tag("tbody", *body)), class_="scroll")


BADGE_CLASS = {True: "good", False: "bad", None: "unsure"}


def badge(text: object, passed: bool | None | str, title: str | None = None) -> Html:
    """A verdict badge: green when passed is True, red when False, amber when None
    (inconclusive), grey for "na" (no verdict); ``title`` is its tooltip (the rule)."""
    cls = "na" if passed == "na" else BADGE_CLASS.get(passed, "na")  # type: ignore[arg-type]
    return tag("span", text, class_=f"badge {cls}", title=title)


def figure_png(fig, alt: str, caption: object | None = None, dpi: int = 100) -> Html:
    """A matplotlib figure as an embedded PNG ``<figure>`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    # src in single quotes: what readers of older reports (and their tests) look for
    img = Html(f"<img src='data:image/png;base64,{base64.b64encode(data).decode()}' "
               f'alt="{esc(alt)}" width="{width}" height="{height}">')
    return tag("figure", img, tag("figcaption", caption) if caption is not None else None)


def definitions(items: Iterable[tuple[object, object]]) -> Html:
    """A two-column list of name / value pairs (values None are left out)."""
    return tag("dl", *(join([tag("dt", k), tag("dd", v)]) for k, v in items if v is not None))
