"""The pieces every HTML report is made of: one page, its tables, its embedded charts.

Reports are single files that open in a browser with no network: the style sheet is inline,
charts are PNG data URIs, there is no script and no external reference. Every string that comes
from a run (scenario text, violation details, node names) is escaped here, in one place.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:18px 28px 48px;background:#fff}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;margin:30px 0 8px;
border-bottom:1px solid #dde1e6;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e6;padding:3px 9px;text-align:right;vertical-align:top}
th{background:#f0f2f5}td.l,th.l{text-align:left}
.pass{color:#17803d;font-weight:600}.fail{color:#c62828;font-weight:600}
.banner{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:700}
.banner.pass{background:#17803d;color:#fff}.banner.fail{background:#c62828;color:#fff}
.note{color:#5b6570;font-size:13px}code,pre{font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{background:#f3f4f6;padding:6px 9px;overflow-x:auto;margin:4px 0}
figure{margin:10px 0 16px}figure img{max-width:100%;height:auto;border:1px solid #e5e8eb}
figcaption{color:#5b6570;font-size:13px}
"""


class Html(str):
    """Markup this module built: inserted as is, where any other value is escaped."""


def esc(value: object) -> str:
    return value if isinstance(value, Html) else html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str]) -> str:
    """A complete HTML document: inline style, no script, nothing fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], left: int = 1) -> Html:
    """A table whose first `left` columns are text (left-aligned), the rest numbers."""

    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{esc(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def mark(ok: bool) -> Html:
    return Html('<span class="pass">pass</span>' if ok else '<span class="fail">FAIL</span>')


def banner(ok: bool, text: str) -> Html:
    return Html(f'<span class="banner {"pass" if ok else "fail"}">{esc(text)}</span>')


def code(text: str) -> Html:
    return Html(f"<code>{esc(text)}</code>")


def figure(data_uri: str, caption: str) -> Html:
    return Html(
        f'<figure><img src="{data_uri}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for a table, '-' for a value the run could not measure."""
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.1f} ms"


def num(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}g}"
