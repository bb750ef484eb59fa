"""The whole page: one self-contained HTML document from a ``DashboardData``.

Pure: no database, no clock, no file system, so the same data always gives the same
bytes (the demo's "same seed, identical reports" holds for the dashboard too). The
page has no script, no link and no URL: everything it needs is inline.
"""

from __future__ import annotations

from html import escape

from processing.dashboard import sections
from processing.dashboard.fmt import currency_code
from processing.dashboard.model import DashboardData
from processing.dashboard.style import CSS


def render_dashboard(data: DashboardData) -> str:
    """The dashboard as an HTML string, ready to write to a file and open anywhere."""
    f = sections.Fmt(data.exponent, currency_code(data.currency))
    period = f"{data.period_from.isoformat()} – {data.period_to.isoformat()}"
    generated = data.generated.strftime("%Y-%m-%d %H:%M %Z").strip()
    header = (
        '<header class="top"><div><h1>Accountant\'s dashboard</h1>'
        f'<div class="issuer">{escape(data.issuer)}</div></div>'
        f"<dl><dt>Period</dt><dd id=\"period\">{escape(period)}</dd>"
        f"<dt>Currency</dt><dd>{escape(f.currency)}</dd>"
        f"<dt>Generated</dt><dd>{escape(generated)}</dd></dl></header>"
    )
    body = "".join((
        header,
        sections.kpis(data, f),
        sections.terminals(data, f),
        sections.daily_sales(data, f),
        sections.float_over_time(data, f),
        sections.settlement(data, f),
        sections.points_liability(data, f),
        sections.anomalies(data, f),
        "<footer>All amounts are exact, computed from integer minor units. Every chart's figures are printed in "
        "the table beside it and come from the same functions as <code>smartpurse report … --format json</code>."
        "</footer>",
    ))
    title = f"{data.issuer} — dashboard {period}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta name=\"color-scheme\" content=\"light\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>{body}</main></body></html>\n"
    )
