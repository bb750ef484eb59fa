"""The accountant's dashboard: exact figures, a self-contained page, charts really drawn.

The renderer is tested on hand-built data (every figure must appear as text, nothing
may reach the network); then the page is loaded in headless Chromium, where a probe
script measures every chart mark with getBBox() and counts the resources the page
fetched, and --dump-dom hands the measurements back to the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert
from stdnum import luhn
from support import cards as purse_env
from support.backoffice import World
from support.browser import CHROMIUM, chrome

import cli as smartpurse_cli
from processing.dashboard import (
    Anomaly,
    DailySales,
    DashboardData,
    FloatPoint,
    PointsLiability,
    SettlementRow,
    TerminalRow,
    collect_dashboard_data,
    render_dashboard,
    write_dashboard,
)
from processing.dashboard.fmt import axis_money, currency_code, money, nice_ticks
from processing.importer import ImportOptions, import_batch
from processing.keys import ProcessingKeys
from processing.schema.loads import loads
from processing.schema.registry import merchants, terminals
from processing.settlement import settle
from purse.card.storage import MemoryStorage
from purse.loyalty import ProgramPolicy
from purse.loyalty.program import program_from_dict
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, KeyRef
from purse.terminal import CreditTerminal, Terminal
from purse.terminal_log import TerminalLog
from purse.transport.virtual import VirtualTransport

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
        points=[PointsLiability("Coffee club", 123_456, 180, 20_000, 1_500), PointsLiability("Fuel rewards", 4_521, 9)],
        anomalies=[
            Anomaly(datetime(2025, 3, 4, 12, 5), "counter_gap", "6277000000000456", "counters 5..7 missing",
                    "info", 5, 7),
            Anomaly(datetime(2025, 3, 3, 8, 0), "clone", "6277000000000123", "two records with counter 17",
                    "critical", 17, 3),
        ],
        anomaly_kinds={"clone": 1, "counter_gap": 4, "points_mismatch": 2},
        settlement=[
            SettlementRow(MERCHANTS[0], 1_055_530, 1_250, 10_543, 700_000, 354_280, date(2025, 3, 8)),
            SettlementRow(MERCHANTS[1], 1_250_795, 0, 12_508, 1_250_795, 0, date(2025, 3, 9)),
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
        assert {money(s.gross, 2), money(s.net_sales, 2), money(s.fees, 2), money(s.settled, 2),
                money(s.pending, 2)} <= text
    assert {"123,456", "4,521", "20,000", "1,500", "partial", "settled"} <= text
    assert "6277000000000123" in text and "two records with counter 17" in text
    assert page.by_id("kpi-sales")["data-value"] == str(sum(r.net for r in data.daily_sales))
    assert page.by_id("kpi-float")["data-value"] == str(data.float_series[-1].balance)
    assert page.by_id("kpi-points")["data-value"] == "127977"
    assert page.by_id("kpi-anomalies")["data-value"] == "7"
    assert page.by_id("kpi-pending")["data-value"] == "354280"
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
    wide = ["chart-sales", "chart-float", "chart-loads", "chart-settlement", "chart-points", "chart-anomalies"]
    assert [c["id"] for c in charts] == [name for chart in wide for name in (chart, f"{chart}-narrow")]
    for chart in wide:  # the phone's drawing shows the same marks with the same values
        assert [(m["data-series"], m["data-category"], m["data-value"]) for m in page.marks(chart)] == \
               [(m["data-series"], m["data-category"], m["data-value"]) for m in page.marks(f"{chart}-narrow")]
    for c in charts:
        assert c["role"] == "img"
        assert c["aria-labelledby"] == f"{c['id']}-t {c['id']}-d"
        assert f'<title id="{c["id"]}-t">' in html and f'<desc id="{c["id"]}-d">' in html
    drawn = {(m["data-series"], m["data-category"]): int(m["data-value"]) for m in page.marks("chart-sales")}
    assert drawn == expected_sales_marks(data)
    assert [int(m["data-value"]) for m in page.marks("chart-float")] == [p.balance for p in data.float_series]
    assert [int(m["data-value"]) for m in page.marks("chart-loads")] == [p.loads for p in data.float_series if p.loads]
    bars = page.marks("chart-settlement")
    assert sum(int(m["data-value"]) for m in bars if m["data-series"] == "pending") == 354_280
    assert [int(m["data-value"]) for m in page.marks("chart-anomalies")] == [4, 2, 1]  # all of the period, by kind
    assert len(page.by_id("chart-sales")) and html.count("<title>") >= len(drawn)


def test_terminals_show_the_silent_ones_first_and_the_headline_counts_them() -> None:
    sent = datetime(2025, 3, 31, 20, 0)
    rows = [TerminalRow(7, "Cafe North", 12, sent, 0, False, 40, 12_345_00),
            TerminalRow(9, "Fuel Station 7", 3, datetime(2025, 3, 20, 9, 0), 11, True, 5, 1_000_00),
            TerminalRow(8, "Cafe North", 0, None, None, True)]
    data = replace(sample_data(), terminals=rows, previous_net_sales=1_000_000_00, previous_purchases=10)
    page = Page(render_dashboard(data))
    assert page.by_id("kpi-silent")["data-value"] == "2"
    html = render_dashboard(data)
    table = html.split('id="table-terminals"')[1].split("</table>")[0]
    assert [int(x) for x in re.findall(r'<th data-label="Terminal" scope=row>(\d+)</th>', table)] == [8, 9, 7]
    assert "never" in table and table.count("badge critical") == 2
    net = sum(r.net for r in data.daily_sales)
    purchases = sum(r.count for r in data.daily_sales)
    assert page.by_id("kpi-ticket")["data-value"] == str(net // purchases)
    assert "% vs 1,000,000.00 before" in " ".join(page.texts)


def test_the_cards_figure_says_how_many_cards_are_used() -> None:
    data = replace(sample_data(), cards_by_state={"issued": 200, "blocked": 3, "replaced": 1}, cards_used=150)
    page = Page(render_dashboard(data))
    assert page.by_id("kpi-cards")["data-value"] == "200"
    assert "150 used in period (75%); 3 blocked, 1 replaced, 204 registered" in page.texts


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


# Measures what the browser really drew, and counts what the page fetched (must be nothing).
PROBE = """<script>
const shown = (el) => el.getClientRects().length > 0;  // not inside a display:none twin
for (const svg of document.querySelectorAll("svg.chart")) {
  if (!shown(svg)) continue;
  const r = svg.getBoundingClientRect();
  svg.setAttribute("data-box", r.width.toFixed(0) + " " + r.height.toFixed(0));
  for (const el of svg.querySelectorAll(".mark")) {
    const b = el.getBBox();
    el.setAttribute("data-bbox", b.width.toFixed(2) + " " + b.height.toFixed(2));
  }
}
// The smallest text a reader sees: HTML at its computed size, SVG text at its size times the chart's scale.
let smallest = 1000, smallestText = "";
for (const el of document.querySelectorAll("body *")) {
  if (!shown(el) || ["SCRIPT", "STYLE", "TITLE", "DESC"].includes(el.tagName.toUpperCase())) continue;
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  let size = parseFloat(getComputedStyle(el).fontSize);
  if (el instanceof SVGElement) size *= el.ownerSVGElement.getScreenCTM().a;
  if (size < smallest) { smallest = size; smallestText = el.textContent.trim().slice(0, 40); }
}
document.body.setAttribute("data-smallest-text", smallest.toFixed(2) + " " + smallestText);
document.body.setAttribute("data-scroll-width", String(document.documentElement.scrollWidth));
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


def drawn_dom(html: str, tmp_path: Path, width: int = 1280) -> Page:
    """The page as Chromium laid it out in a window ``width`` px wide, with the probe's measurements."""
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return Page(chromium(tmp_path, f"--window-size={width},900", "--dump-dom", probed.as_uri()))


def assert_charts_drawn(dom: Page, data: DashboardData) -> None:
    """Every mark has a real size on screen, each chart has its expected marks, nothing was fetched."""
    body = next(a for t, a in dom.elements if t == "body")
    assert body["data-resources"] == "0"
    drawn = [attrs for tag, attrs in dom.elements if tag == "svg" and "data-box" in attrs]
    assert [a["id"] for a in drawn] == ["chart-sales", "chart-float", "chart-loads", "chart-settlement",
                                        "chart-points", "chart-anomalies"]  # wide drawings; narrow twins hidden
    for attrs in drawn:
        width, height = map(int, attrs["data-box"].split())
        assert width > 300 and height > 60, attrs["id"]
    marks = [m for a in drawn for m in dom.marks(a["id"])]
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


PHONE_PROBE = """
const shown = (el) => el.getClientRects().length > 0;
let smallest = 1000, smallestText = "";
for (const el of document.querySelectorAll("body *")) {
  if (!shown(el) || ["SCRIPT", "STYLE", "TITLE", "DESC"].includes(el.tagName.toUpperCase())) continue;
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  let size = parseFloat(getComputedStyle(el).fontSize);
  if (el instanceof SVGElement) size *= el.ownerSVGElement.getScreenCTM().a;
  if (size < smallest) { smallest = size; smallestText = el.textContent.trim().slice(0, 40); }
}
const wide = [...document.querySelectorAll("body *")].filter((el) => shown(el)
  && el.getBoundingClientRect().right > window.innerWidth + 0.5).map((el) => el.tagName + "#" + el.id);
const drawn = [...document.querySelectorAll("svg.chart")].filter(shown).map((svg) => [svg.id,
  [...svg.querySelectorAll(".mark")].filter((m) => m.getBBox().width > 0 && m.getBBox().height > 0).length]);
return {viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, smallest, smallestText,
        wide: wide.slice(0, 10), drawn};
"""


def phone(html_path: Path, tmp_path: Path) -> dict[str, object]:
    """The page in Debian's Chromium through chromedriver, emulating a 390 px phone; what PHONE_PROBE measured."""
    with chrome(tmp_path / "phone-profile", phone=True) as driver:
        driver.get(html_path.as_uri())
        return dict(driver.execute_script(PHONE_PROBE))


def test_a_phone_reads_the_dashboard_without_zoom_or_sideways_scrolling(tmp_path: Path) -> None:
    """390 px wide: nothing wider than the screen, no text under 11 px, every chart drawn for the phone."""
    data = sample_data(days=31)
    page = tmp_path / "dashboard.html"
    page.write_text(render_dashboard(data), encoding="utf-8")
    seen = phone(page, tmp_path)
    assert seen["viewport"] == 390
    assert seen["scrollWidth"] == 390 and seen["wide"] == [], seen
    assert float(seen["smallest"]) >= 11, seen  # type: ignore[arg-type]
    drawn = dict(seen["drawn"])  # type: ignore[call-overload]
    assert list(drawn) == [f"chart-{c}-narrow" for c in ("sales", "float", "loads", "settlement", "points",
                                                         "anomalies")]
    assert drawn["chart-loads-narrow"] == sum(1 for p in data.float_series if p.loads)
    assert drawn["chart-sales-narrow"] == len(expected_sales_marks(data))
    assert drawn["chart-float-narrow"] == len(data.float_series)


# --- end to end: real cards, real terminals, real processing, the JSON reports -----------

DAY = 86_400
SHOPS = {7: (42, "Cafe North", 100), 8: (43, "Fuel Station 7", 250)}  # terminal -> merchant, name, fee bps


class Clock:
    def __init__(self) -> None:
        self.now = purse_env.NOW

    def __call__(self) -> float:
        return self.now


def _card_number(i: int) -> str:
    body = f"600100{i:09d}"
    return body + luhn.calc_check_digit(body)


def shop_history(w: World, issuer: purse_env.Issuer) -> None:
    """Three days of two shops on real virtual cards: loads at the desk, sales, a cancel, a clone, a settlement.

    Every record is made by the card applet and certified by it, every batch is written by
    the terminal library, and processing imports them exactly as ``smartpurse process`` does.
    """
    keys = ProcessingKeys(dict(issuer.masters[KeyRef.TXN]), {1: issuer.term_master}, DEFAULT_SYSTEM_IDENTIFIER)
    with w.engine.begin() as conn:
        for tid, (mid, name, bps) in SHOPS.items():
            conn.execute(insert(merchants).values(merchant_id=mid, name=name, fee_bps=bps))
            conn.execute(insert(terminals).values(terminal_id=tid, merchant_id=mid, log_key_version=1))
    clock = Clock()
    logs = {tid: TerminalLog(w.tmp / f"t{tid}.log", terminal_id=tid, merchant_id=mid, log_key=issuer.log_key(tid))
            for tid, (mid, _, _) in SHOPS.items()}
    desk_log = TerminalLog(":memory:", terminal_id=900, merchant_id=0, log_key=None)
    policy = ProgramPolicy(program_from_dict({"program": {"id": 17, "name": "Coffee club"},
                                              "earn": {"per_visit": 3}}))

    def pos(card: VirtualTransport, tid: int) -> Terminal:
        return Terminal(card, issuer.pos_sam(tid), logs[tid], terminal_id=tid, merchant_id=SHOPS[tid][0], clock=clock)

    cards = [issuer.card(number=_card_number(i)) for i in range(1, 5)]
    with w.engine.begin() as conn:
        for card, amount in zip(cards, (50_000, 30_000, 20_000, 10_000), strict=True):
            r = CreditTerminal(card, issuer.credit_sam(900), desk_log, terminal_id=900, clock=clock).load(amount)
            assert r.record is not None
            conn.execute(insert(loads).values(card_number=r.card_number, counter=r.counter, amount=r.amount,
                                              balance_after=r.balance, terminal_id=900, terminal_seq=r.terminal_seq,
                                              time=r.time, record=r.record.to_bytes()))
    a, b, c, d = cards
    pos(a, 7).debit(12_345, points=policy)
    pos(b, 8).debit(2_000)
    refunded = pos(b, 7)
    refunded.debit(500)
    refunded.cancel_last()
    clock.now += DAY
    pos(a, 8).debit(1_000)
    pos(c, 7).debit(7_777, points=policy)
    clock.now += DAY
    pos(c, 7).debit(100, points=policy)
    clone = VirtualTransport(MemoryStorage(d.storage.size, d.storage.journal_size, d.storage.image_bytes()))
    pos(d, 7).debit(3_000)
    pos(clone, 8).debit(4_000)  # the copy spends the same counter again: a clone
    options = ImportOptions(quarantine_dir=w.tmp / "q", now=lambda: clock.now + DAY)
    for tid in SHOPS:
        batch = pos(a, tid).export_batch(w.tmp / f"t{tid}.spb")
        result = import_batch(w.engine, batch.path, keys, options)
        assert result.status == "accepted", result.reason
    settle(w.engine, D0 + timedelta(days=1))  # day one settled, days two and three pending


D0 = date(2023, 11, 14)  # the UTC day of purse_env.NOW


def json_report(w: World, kind: str, tmp_path: Path) -> dict[str, Any]:
    """What ``smartpurse report KIND --format json`` writes, through the real CLI."""
    out = tmp_path / f"{kind}.json"
    args = ["--home", str(tmp_path / "home"), "--db", w.url, "report", kind, "--format", "json", "--out", str(out)]
    done = CliRunner().invoke(smartpurse_cli.root, args, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def test_dashboard_figures_equal_the_json_reports(processing_db: World, purse_issuer: purse_env.Issuer,
                                                  tmp_path: Path) -> None:
    w = processing_db
    shop_history(w, purse_issuer)
    page = write_dashboard(w.engine, tmp_path / "out" / "report.html", issuer="Test issuer",
                           generated=datetime(2023, 11, 17, 8, 0, tzinfo=UTC))
    data = collect_dashboard_data(w.engine, issuer="Test issuer", generated=datetime(2023, 11, 17, tzinfo=UTC))
    settlement, floats = json_report(w, "settlement", tmp_path), json_report(w, "float", tmp_path)
    points, anomalies = json_report(w, "points", tmp_path), json_report(w, "anomalies", tmp_path)

    # the story is what the cards did: the report agrees with it, and so must the dashboard
    net: dict[tuple[str, str], int] = {}
    for row in settlement["rows"]:
        key = (row["merchant"], date.fromisoformat(row["day"]).strftime("%d %b"))
        net[key] = net.get(key, 0) + row["net_sales"]
    assert net == {("Cafe North", "14 Nov"): 12_345, ("Fuel Station 7", "14 Nov"): 2_000,
                   ("Fuel Station 7", "15 Nov"): 1_000, ("Cafe North", "15 Nov"): 7_777,
                   ("Cafe North", "16 Nov"): 3_100}  # the clone's second spending is evidence, not a sale
    assert expected_sales_marks(data) == net
    assert [(p.day.isoformat(), p.balance, p.loads) for p in data.float_series] == \
        [(r["day"], r["closing_float"], r["loads"]) for r in floats["rows"]]
    assert data.float_series[-1].balance == floats["summary"]["closing_float"] == 110_000 - 26_222
    assert [(p.program, p.points, p.cards, p.earned) for p in data.points] == \
        [(r["program"], r["points_outstanding"], r["cards"], r["points_earned"])
         for r in points["rows"]]
    assert sum(p.points for p in data.points) == 9  # three visits of the coffee club, 3 points each
    assert data.anomaly_counts == json.loads(anomalies["summary"]["by_kind"])
    assert data.anomaly_counts.get("clone") == 1
    assert any(a.kind == "clone" and a.card_number == _card_number(4) and a.severity == "critical"
               for a in data.anomalies)
    by_merchant = {s.merchant: s for s in data.settlement}
    for name in ("Cafe North", "Fuel Station 7"):
        rows = [r for r in settlement["rows"] if r["merchant"] == name]
        s = by_merchant[name]
        assert (s.gross, s.cancellations, s.fees) == (sum(r["gross"] for r in rows),
                                                      sum(r["cancellations"] for r in rows),
                                                      sum(r["fee"] for r in rows))
        assert s.settled + s.pending == s.net_sales
    assert (by_merchant["Cafe North"].settled, by_merchant["Cafe North"].pending) == (12_345, 10_877)
    assert by_merchant["Cafe North"].last_settled == D0

    # and what the browser draws is those same figures
    dom = drawn_dom(page.read_text(encoding="utf-8"), tmp_path)
    assert_charts_drawn(dom, data)
    drawn = {(m["data-series"], m["data-category"]): int(m["data-value"]) for m in dom.marks("chart-sales")}
    assert drawn == net
    assert [int(m["data-value"]) for m in dom.marks("chart-float")] == [r["closing_float"] for r in floats["rows"]]
    assert dom.by_id("kpi-float")["data-value"] == str(floats["summary"]["closing_float"])
    assert dom.by_id("kpi-sales")["data-value"] == str(settlement["totals"]["net_sales"])
    assert dom.by_id("kpi-points")["data-value"] == str(points["totals"]["points_outstanding"])
    assert dom.by_id("kpi-anomalies")["data-value"] == str(len(anomalies["rows"]))
    assert money(settlement["totals"]["net_sales"], 2) in dom.texts


@pytest.mark.parametrize(("days", "unit"), [(31, "day"), (120, "week"), (400, "month")])
def test_a_long_period_is_drawn_per_week_or_month_with_the_same_total(days: int, unit: str) -> None:
    data = sample_data(days=days)
    page = Page(render_dashboard(data))
    marks = page.marks("chart-sales")
    start = {"day": lambda d: d, "week": lambda d: d - timedelta(days=d.weekday()),
             "month": lambda d: d.replace(day=1)}[unit]
    net: dict[tuple[object, str], int] = {}
    for r in data.daily_sales:
        net[start(r.day), r.merchant] = net.get((start(r.day), r.merchant), 0) + r.net
    assert len({m["data-category"] for m in marks}) == len({b for (b, _), v in net.items() if v})
    assert sum(int(m["data-value"]) for m in marks) == sum(r.net for r in data.daily_sales)
    assert (f"per {unit} (the table below: per day)" in " ".join(page.texts)) == (unit != "day")
    assert len(page.marks("chart-sales-narrow")) == len(marks)
