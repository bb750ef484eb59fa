"""The accountant's dashboard: exact figures, a self-contained page, charts really drawn.

The renderer is tested on hand-built data (every figure must appear as text, nothing
may reach the network); then the page is loaded in headless Chromium, where a probe
script measures every chart mark with getBBox() and counts the resources the page
fetched, and --dump-dom hands the measurements back to the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from processing.dashboard import (
    Anomaly,
    DailySales,
    DashboardData,
    FloatPoint,
    PointsLiability,
    SettlementRow,
    render_dashboard,
)
from processing.dashboard.fmt import axis_money, currency_code, money, nice_ticks

MERCHANTS = ("Cafe North", "Fuel Station 7")


def sample_data(days: int = 10) -> DashboardData:
    """A small, irregular period: quiet days, a cancellation, a day with more refunds than sales."""
    d0 = date(2025, 3, 1)
    sales = []
    for i in range(days):
        day = d0 + timedelta(days=i)
        if i == 3:
            continue  # a day without sales must still be on the axis, empty
        sales.append(DailySales(day, MERCHANTS[0], 100_000 + 1_234 * i, 0 if i % 4 else 2_50, 10 + i))
        if i % 2 == 0:
            sales.append(DailySales(day, MERCHANTS[1], 250_075 + 99 * i, 0, 5 + i))
    sales.append(DailySales(d0 + timedelta(days=1), MERCHANTS[1], 1_000, 3_000, 1))  # net -20.00
    floats, balance = [], 0
    for i in range(days):
        day = d0 + timedelta(days=i)
        spent = sum(s.net for s in sales if s.day == day)
        loads = 500_000 if i % 3 == 0 else 0
        balance += loads - spent
        floats.append(FloatPoint(day, balance + 2_000_000, loads, spent))
    return DashboardData(
        issuer="Campus Card Office",
        currency="643",
        exponent=2,
        period_from=d0,
        period_to=d0 + timedelta(days=days - 1),
        generated=datetime(2025, 4, 1, 9, 30, tzinfo=UTC),
        daily_sales=sales,
        float_series=floats,
        points=[PointsLiability("Coffee club", 123_456, 180, 12), PointsLiability("Fuel rewards", 4_521, 9, 3, 45_21)],
        anomalies=[
            Anomaly(datetime(2025, 3, 4, 12, 5), "counter_gap", "6277000000000456", "counters 5..7 missing",
                    None, MERCHANTS[1], "warning"),
            Anomaly(datetime(2025, 3, 3, 8, 0), "clone", "6277000000000123", "two records with counter 17",
                    45_000, MERCHANTS[0], "critical"),
        ],
        anomaly_kinds={"clone": 1, "counter_gap": 4, "points_mismatch": 2},
        settlement=[
            SettlementRow(MERCHANTS[0], 1_055_530, 15_833, 700_000, 339_697, "partial", date(2025, 3, 8)),
            SettlementRow(MERCHANTS[1], 1_250_795, 18_762, 1_232_033, 0, "settled", date(2025, 3, 9)),
        ],
        sources={"sales": "smartpurse report settlement --format json"},
    )


# --- parsing the page (also the DOM Chromium dumps) ---------------------------------------


class Page(HTMLParser):
    """Elements with their attributes, and the text that a reader sees (not inside <title>/<style>)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self._skip: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("title", "style", "script"):
            self._skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data.strip())

    def marks(self, chart_id: str | None = None) -> list[dict[str, str]]:
        """Chart marks (bars, points) in document order, optionally of one chart."""
        out, current = [], None
        for tag, attrs in self.elements:
            if tag == "svg":
                current = attrs.get("id")
            if "mark" in attrs.get("class", "").split() and (chart_id is None or current == chart_id):
                out.append(attrs)
        return out

    def by_id(self, element_id: str) -> dict[str, str]:
        return next(a for _, a in self.elements if a.get("id") == element_id)


def expected_sales_marks(data: DashboardData) -> dict[tuple[str, str], int]:
    """(merchant, ISO day) -> net, for every non-zero cell the chart must draw."""
    cells: dict[tuple[str, str], int] = {}
    for r in data.daily_sales:
        key = (r.merchant, r.day.strftime("%d %b"))
        cells[key] = cells.get(key, 0) + r.net
    return {k: v for k, v in cells.items() if v}


# --- formatting --------------------------------------------------------------------------


def test_money_is_exact_from_integers() -> None:
    assert money(123_456_789, 2) == "1,234,567.89"
    assert money(-5, 2) == "-0.05"
    assert money(7, 0) == "7"
    assert money(1_000_001, 3) == "1,000.001"
    with pytest.raises(TypeError):
        money(12.5, 2)  # type: ignore[arg-type]


def test_ticks_cover_the_data_with_exact_labels() -> None:
    for lo, hi in [(0, 0), (0, 99), (0, 123_456), (-2_000, 1_234_567), (0, 10**11 + 1)]:
        ticks = nice_ticks(lo, hi)
        assert ticks[0] <= min(lo, 0) and ticks[-1] >= hi and 0 in ticks
        steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
        assert len(steps) == 1 and len(ticks) <= 7
    assert [axis_money(v, 2, 50_000_000) for v in (0, 50_000_000, 150_000_000)] == ["0", "0.5M", "1.5M"]
    assert [axis_money(v, 2, 500_000) for v in (0, 500_000, 1_000_000)] == ["0", "5k", "10k"]
    assert axis_money(40, 2, 20) == "0.40"
    assert currency_code(643) == "RUB" and currency_code("978") == "EUR" and currency_code(999) == "999"


# --- the rendered page -------------------------------------------------------------------


def test_every_figure_is_printed_as_text() -> None:
    data = sample_data()
    page = Page(render_dashboard(data))
    text = set(page.texts)
    for merchant in MERCHANTS:
        total = sum(r.net for r in data.daily_sales if r.merchant == merchant)
        assert money(total, 2) in text, merchant
    assert money(sum(r.net for r in data.daily_sales), 2) in text  # the sales total
    assert money(-2_000, 2) in text  # the refund day is shown, not hidden
    for p in data.float_series:
        assert money(p.balance, 2) in text
    for s in data.settlement:
        assert {money(s.gross, 2), money(s.fees, 2), money(s.settled, 2), money(s.pending, 2)} <= text
    assert {"123,456", "4,521", "45.21"} <= text
    assert "6277000000000123" in text and "two records with counter 17" in text
    assert page.by_id("kpi-sales")["data-value"] == str(sum(r.net for r in data.daily_sales))
    assert page.by_id("kpi-float")["data-value"] == str(data.float_series[-1].balance)
    assert page.by_id("kpi-points")["data-value"] == "127977"
    assert page.by_id("kpi-anomalies")["data-value"] == "7"
    assert page.by_id("kpi-pending")["data-value"] == "339697"
    assert "2025-03-01 – 2025-03-10" in text and "RUB" in text


def test_page_is_self_contained() -> None:
    html = render_dashboard(sample_data())
    lowered = html.lower()
    for forbidden in ("http:", "https:", "//", "<script", "<link", "src=", "@import", "url(", "<iframe", "<img"):
        assert forbidden not in lowered.replace("<!doctype html>", ""), forbidden


def test_charts_are_accessible_and_match_the_data() -> None:
    data = sample_data()
    html = render_dashboard(data)
    page = Page(html)
    charts = [a for t, a in page.elements if t == "svg"]
    assert [c["id"] for c in charts] == ["chart-sales", "chart-float", "chart-settlement", "chart-points",
                                         "chart-anomalies"]
    for c in charts:
        assert c["role"] == "img"
        assert c["aria-labelledby"] == f"{c['id']}-t {c['id']}-d"
        assert f'<title id="{c["id"]}-t">' in html and f'<desc id="{c["id"]}-d">' in html
    drawn = {(m["data-series"], m["data-category"]): int(m["data-value"]) for m in page.marks("chart-sales")}
    assert drawn == expected_sales_marks(data)
    assert [int(m["data-value"]) for m in page.marks("chart-float")] == [p.balance for p in data.float_series]
    bars = page.marks("chart-settlement")
    assert sum(int(m["data-value"]) for m in bars if m["data-series"] == "pending") == 339_697
    assert len(page.by_id("chart-sales")) and html.count("<title>") >= len(drawn)


def test_names_are_escaped() -> None:
    evil = "<script>alert(1)</script> & Sons"
    data = sample_data()
    data = replace(data, issuer=evil, daily_sales=[replace(r, merchant=evil) for r in data.daily_sales])
    html = render_dashboard(data)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons" in html


def test_empty_period_renders_with_explanations() -> None:
    d = date(2025, 1, 1)
    data = DashboardData("Issuer", "978", 2, d, d, datetime(2025, 1, 2, tzinfo=UTC))
    page = Page(render_dashboard(data))
    text = " ".join(page.texts)
    assert "No sales in this period." in text and "No anomalies" in text and "EUR" in text
    assert not page.marks()


def test_rendering_is_deterministic() -> None:
    assert render_dashboard(sample_data()) == render_dashboard(sample_data())


def test_negative_day_goes_below_the_zero_line() -> None:
    page = Page(render_dashboard(sample_data()))
    refund = next(m for m in page.marks("chart-sales") if int(m["data-value"]) < 0)
    positive = next(m for m in page.marks("chart-sales") if int(m["data-value"]) > 0)
    zero_y = float(positive["y"]) + float(positive["height"])  # a positive bar stands on zero
    assert float(refund["y"]) == pytest.approx(zero_y, abs=0.2)


# --- headless Chromium -------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")

# Measures what the browser really drew, and counts what the page fetched (must be nothing).
PROBE = """<script>
for (const el of document.querySelectorAll("svg .mark")) {
  const b = el.getBBox();
  el.setAttribute("data-bbox", b.width.toFixed(2) + " " + b.height.toFixed(2));
}
for (const svg of document.querySelectorAll("svg.chart")) {
  const r = svg.getBoundingClientRect();
  svg.setAttribute("data-box", r.width.toFixed(0) + " " + r.height.toFixed(0));
}
document.body.setAttribute("data-resources", String(performance.getEntriesByType("resource").length));
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with no network and a throw-away profile; its stdout."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def drawn_dom(html: str, tmp_path: Path) -> Page:
    """The page as Chromium laid it out, with the probe's measurements in attributes."""
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return Page(chromium(tmp_path, "--dump-dom", probed.as_uri()))


def assert_charts_drawn(dom: Page, data: DashboardData) -> None:
    """Every mark has a real size on screen, each chart has its expected marks, nothing was fetched."""
    body = next(a for t, a in dom.elements if t == "body")
    assert body["data-resources"] == "0"
    for tag, attrs in dom.elements:
        if tag == "svg":
            width, height = map(int, attrs["data-box"].split())
            assert width > 300 and height > 60, attrs["id"]
    marks = dom.marks()
    assert marks, "no chart marks at all"
    for m in marks:
        w, h = map(float, m["data-bbox"].split())
        assert w > 0 and h > 0, m
    assert len(dom.marks("chart-sales")) == len(expected_sales_marks(data))
    assert len(dom.marks("chart-float")) == len(data.float_series)
    assert len(dom.marks("chart-points")) == sum(1 for p in data.points if p.points)
    assert len(dom.marks("chart-anomalies")) == len(data.anomaly_counts)


def test_chromium_draws_every_chart(tmp_path: Path) -> None:
    data = sample_data(days=31)
    html = render_dashboard(data)
    dom = drawn_dom(html, tmp_path)
    assert_charts_drawn(dom, data)
    assert dom.by_id("kpi-sales")["data-value"] == str(sum(r.net for r in data.daily_sales))
    assert money(data.float_series[-1].balance, 2) in dom.texts
