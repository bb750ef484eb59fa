"""One function per dashboard section: a chart for the eye, a table with the same figures as text.

Each section prints every figure it draws, so the page reads without the charts
(screen readers, a printout in black and white, an auditor who wants the numbers) and
a test can compare the text with the JSON reports.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from html import escape

from processing.dashboard import svg
from processing.dashboard.fmt import axis_count, axis_money, group, money
from processing.dashboard.model import DashboardData

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


class Fmt:
    """Money formatting bound to the page's currency, so no section can forget the exponent."""

    def __init__(self, exponent: int, currency: str) -> None:
        self.exponent = exponent
        self.currency = currency

    def money(self, minor: int) -> str:
        return money(minor, self.exponent)

    def tick(self, minor: int, step: int) -> str:
        return axis_money(minor, self.exponent, step)


def _td(value: int | str, fmt: Fmt | None = None, *, cls: str = "") -> str:
    """A table cell; integers are money when ``fmt`` is given, counts otherwise, right-aligned."""
    if isinstance(value, int):
        text = fmt.money(value) if fmt else group(value)
        return f'<td class="{" ".join(filter(None, ("num", cls)))}" data-value="{value}">{text}</td>'
    return f'<td class="{cls}">{escape(value)}</td>' if cls else f"<td>{escape(value)}</td>"


def _table(caption: str, head: Sequence[tuple[str, bool]], rows: Iterable[str], foot: str = "",
           table_id: str = "") -> str:
    """A scrollable data table; ``head`` is (label, numeric) pairs."""
    ths = "".join(f'<th scope="col"{" class=num" if num else ""}>{escape(label)}</th>' for label, num in head)
    tid = f' id="{table_id}"' if table_id else ""
    labels = [label for label, _ in head]
    body = "".join(_labelled(row, labels) for row in rows)
    footer = f"<tfoot>{_labelled(foot, labels)}</tfoot>" if foot else ""
    return (f'<div class="scroll"><table class="stack"{tid}><caption>{escape(caption)}</caption><thead><tr>{ths}'
            f'</tr></thead><tbody>{body}</tbody>{footer}</table></div>')


NARROW_WIDTH = 330  # a chart drawn for a phone: at 390 px (342 px inside the cards) labels stay >= 11 px


def _responsive(draw: Callable[..., str], chart_id: str, **options: object) -> str:
    """The chart twice: as designed, for a screen or a page, and redrawn narrow for a phone.

    An SVG scales as a picture: a 960-unit chart on a 358 px phone draws its 11.5-unit labels
    at 4 px. Drawn again at 330 units it keeps every label readable; CSS shows the one that
    fits (style.py, ``.wide-only``/``.narrow-only``), and print always takes the wide one."""
    wide = draw(chart_id=chart_id, **options)
    narrow_options = {**options, "width": NARROW_WIDTH}
    if "label_width" in narrow_options:
        narrow_options["label_width"] = min(int(narrow_options["label_width"]), 110)  # type: ignore[call-overload]
    narrow = draw(chart_id=f"{chart_id}-narrow", **narrow_options)
    return f'<div class="wide-only">{wide}</div><div class="narrow-only">{narrow}</div>'


_CELL = re.compile(r"<(td|th)\b")


def _labelled(row: str, labels: Sequence[str]) -> str:
    """Each cell of a row gets its column's name (``data-label``), so a phone can show rows as cards."""
    cells = iter(labels)
    return _CELL.sub(lambda m: f'<{m.group(1)} data-label="{escape(next(cells, ""), quote=True)}"', row)


def _legend(items: Sequence[tuple[str, str]]) -> str:
    lis = "".join(f'<li><span class="swatch" style="background:{c}" aria-hidden="true"></span>{escape(n)}</li>'
                  for n, c in items)
    return f'<ul class="legend" aria-label="Legend">{lis}</ul>'


def _source(data: DashboardData, key: str) -> str:
    text = data.sources.get(key)
    return f'<p class="source">Source: {escape(text)}</p>' if text else ""


def _section(section_id: str, title: str, lede: str, body: str, source: str) -> str:
    return (f'<section class="card" id="{section_id}" aria-labelledby="{section_id}-h">'
            f'<h2 id="{section_id}-h">{escape(title)}</h2><p class="lede">{escape(lede)}</p>{body}{source}</section>')


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _short_day(d: date) -> str:
    return d.strftime("%d %b")


def kpis(data: DashboardData, f: Fmt) -> str:
    """The headline figures; each tile carries its integer in ``data-value`` for tests and scripts."""
    net_sales = sum(r.net for r in data.daily_sales)
    purchases = sum(r.count for r in data.daily_sales)
    tiles: list[tuple[str, str, int, bool, str, str]] = [
        ("kpi-sales", "Net sales", net_sales, True, f"{group(purchases)} purchases; {_versus(data, net_sales, f)}", ""),
    ]
    silent = [t for t in data.terminals if t.silent]
    if data.terminals:
        tiles.append(("kpi-silent", "Terminals silent", len(silent), False,
                      f"of {group(len(data.terminals))}: no batch for over 2 days" if silent else
                      f"all {group(len(data.terminals))} sending batches", "alert" if silent else ""))
    if data.cards_by_state:
        registered = sum(data.cards_by_state.values())
        in_use = data.cards_by_state.get("issued", 0)
        used = data.cards_used or 0
        share = f" ({used * 100 // in_use}%)" if in_use else ""
        tiles.append(("kpi-cards", "Cards in use", in_use, False,
                      f"{group(used)} used in period{share}; {group(data.cards_by_state.get('blocked', 0))} blocked, "
                      f"{group(data.cards_by_state.get('replaced', 0))} replaced, {group(registered)} registered", ""))
    if purchases:
        tiles.append(("kpi-ticket", "Average ticket", net_sales // purchases, True, "net sales per purchase", ""))
    if data.float_series:
        closing = data.float_series[-1].balance
        loads = sum(p.loads for p in data.float_series)
        tiles.append(("kpi-float", f"Card float on {data.float_series[-1].day.isoformat()}", closing, True,
                      f"loaded {f.money(loads)} in period", ""))
    else:
        tiles.append(("kpi-float", "Card float", 0, True, "no ledger movements", ""))
    points = sum(p.points for p in data.points)
    earned = sum(p.earned for p in data.points)
    redeemed = sum(p.redeemed for p in data.points)
    lapsed = sum(p.lapsed for p in data.points)
    rate = f" ({redeemed * 100 // earned}%)" if earned else ""
    tiles.append(("kpi-points", "Points outstanding", points, False,
                  f"in period: {group(earned)} earned, {group(redeemed)} redeemed{rate}, {group(lapsed)} expired", ""))
    shown = len(data.anomalies)
    total = sum(data.anomaly_counts.values())
    critical = sum(1 for a in data.anomalies if a.severity == "critical")
    tiles.append(("kpi-anomalies", "Anomalies", total, False, f"{group(critical)} critical among the top {shown}"
                  if total > shown else f"{group(critical)} critical", "alert" if critical else ""))
    pending = sum(s.pending for s in data.settlement)
    settled = sum(s.settled for s in data.settlement)
    tiles.append(("kpi-pending", "Settlement pending", pending, True, f"settled {f.money(settled)}", ""))
    out = ['<section class="kpis" aria-label="Key figures">']
    for tid, label, value, is_money, sub, extra in tiles:
        shown_value = (f'{f.money(value)}<small>{escape(f.currency)}</small>' if is_money else group(value))
        out.append(f'<div class="kpi {extra}" id="{tid}" data-value="{value}"><div class="label">{escape(label)}</div>'
                   f'<div class="value">{shown_value}</div><div class="sub">{escape(sub)}</div></div>')
    out.append("</section>")
    return "".join(out)


def _versus(data: DashboardData, net_sales: int, f: Fmt) -> str:
    """How the period compares with as many days just before it."""
    before = data.previous_net_sales
    if before is None:
        return "no earlier period"
    if before == 0:
        return "nothing in the days before" if net_sales else "nothing before either"
    change = (net_sales - before) * 1000 // abs(before)  # per mille, integer: no float in a figure
    sign = "+" if change >= 0 else "−"
    return f"{sign}{abs(change) // 10}.{abs(change) % 10}% vs {f.money(before)} before"


def terminals(data: DashboardData, f: Fmt) -> str:
    """Every terminal with its last batch, silent ones first: a terminal that stopped sending holds sales no
    ledger has seen yet, and its log is their only copy."""
    title = "Terminals and their last batch"
    lede = "A terminal is silent when no batch came from it for more than 2 days: call its shop."
    if not data.terminals:
        return _section("terminals", title, lede, _empty("No terminal is registered."), _source(data, "terminals"))
    ordered = sorted(data.terminals, key=lambda t: (not t.silent, -(t.days_silent or 10**6), t.terminal_id))
    head = [("Terminal", False), ("Merchant", False), ("State", False), ("Last batch", False),
            ("Days since", True), ("Purchases", True), (f"Net sales, {f.currency}", True)]
    rows = []
    for t in ordered:
        state = '<span class="badge critical">silent</span>' if t.silent else '<span class="badge settled">sending'\
                '</span>'
        last = t.last_batch_at.strftime("%Y-%m-%d %H:%M") if t.last_batch_at else "never"
        days = _td(t.days_silent) if t.days_silent is not None else "<td class=num>—</td>"
        rows.append(f"<tr><th scope=row>{t.terminal_id}</th>{_td(t.merchant)}<td>{state}</td>{_td(last)}{days}"
                    f"{_td(t.purchases)}{_td(t.net, f)}</tr>")
    table = _table("Terminals, silent first", head, rows, table_id="table-terminals")
    return _section("terminals", title, lede, table, _source(data, "terminals"))


WEEKLY_FROM_DAYS = 93  # a longer period is drawn a column per week; beyond MONTHLY_FROM_DAYS, per month
MONTHLY_FROM_DAYS = 367


def _bucket(days: int) -> tuple[str, Callable[[date], date], Callable[[date], str]]:
    """How the sales chart groups a period of ``days``: (unit, start of a day's bucket, its label)."""
    if days >= MONTHLY_FROM_DAYS:
        return "month", lambda d: d.replace(day=1), lambda d: d.strftime("%b %Y")
    if days >= WEEKLY_FROM_DAYS:
        return "week", lambda d: d - timedelta(days=d.weekday()), lambda d: f"W{d.isocalendar()[1]} {d:%b}"
    return "day", lambda d: d, _short_day


def daily_sales(data: DashboardData, f: Fmt) -> str:
    """Stacked columns: one per day (per week or month in a long period), a colour per merchant; the
    day-by-day pivot table below."""
    title = "Sales per merchant"
    lede = f"Purchases less cancellations, per calendar day, in {f.currency}."
    if not data.daily_sales:
        return _section("sales", title, lede, _empty("No sales in this period."), _source(data, "sales"))
    merchants = sorted({r.merchant for r in data.daily_sales})
    by_key: dict[tuple[date, str], int] = defaultdict(int)
    counts: dict[date, int] = defaultdict(int)
    for r in data.daily_sales:
        by_key[r.day, r.merchant] += r.net
        counts[r.day] += r.count
    days_with_data = sorted({r.day for r in data.daily_sales})
    first, last = min(days_with_data[0], data.period_from), max(days_with_data[-1], data.period_to)
    unit, start_of, label = _bucket((last - first).days + 1)
    if unit != "day":
        lede = f"Purchases less cancellations, per {unit} (the table below: per day), in {f.currency}."
    buckets = sorted({start_of(d) for d in _days(first, last)})
    in_bucket: dict[tuple[date, str], int] = defaultdict(int)
    for (d, m), net in by_key.items():
        in_bucket[start_of(d), m] += net
    colors = {m: svg.color(i) for i, m in enumerate(merchants)}
    series = [svg.Series(m, [in_bucket.get((b, m), 0) for b in buckets], colors[m]) for m in merchants]
    total = sum(by_key.values())
    desc = (f"{len(buckets)} {unit}s from {buckets[0].isoformat()} to {last.isoformat()}, {len(merchants)} "
            f"merchants; total net sales {f.money(total)} {f.currency}.")
    chart = _responsive(svg.column_chart, "chart-sales", title=title, desc=desc,
                        categories=[label(b) for b in buckets], tip_categories=[b.isoformat() for b in buckets],
                        series=series, value_text=f.money, tick_text=f.tick)
    rows = []
    for d in days_with_data:
        cells = "".join(_td(by_key.get((d, m), 0), f) for m in merchants)
        day_total = sum(by_key.get((d, m), 0) for m in merchants)
        rows.append(f"<tr><th scope=row>{d.isoformat()}</th>{cells}{_td(day_total, f)}{_td(counts[d])}</tr>")
    foot_cells = "".join(_td(sum(by_key.get((d, m), 0) for d in days_with_data), f) for m in merchants)
    foot = f"<tr><th scope=row>Total</th>{foot_cells}{_td(total, f)}{_td(sum(counts.values()))}</tr>"
    head = [("Day", False), *((m, True) for m in merchants), ("Total", True), ("Purchases", True)]
    table = _table(f"Net sales per day and merchant, {f.currency}", head, rows, foot, "table-sales")
    body = _legend([(m, colors[m]) for m in merchants]) + f"<figure>{chart}</figure>" + table
    return _section("sales", title, lede, body, _source(data, "sales"))


def float_over_time(data: DashboardData, f: Fmt) -> str:
    """The issuer's liability for money on cards, closing balance per day."""
    title = "Card float over time"
    lede = ("Money held on cards: the issuer's liability (ledger account card float), closing balance per day. "
            "Loads raise it, purchases lower it, cancellations give it back.")
    pts = sorted(data.float_series, key=lambda p: p.day)
    if not pts:
        return _section("float", title, lede, _empty("No ledger movements in this period."), _source(data, "float"))
    desc = (f"Closing card float from {pts[0].day.isoformat()} ({f.money(pts[0].balance)} {f.currency}) "
            f"to {pts[-1].day.isoformat()} ({f.money(pts[-1].balance)} {f.currency}); "
            f"highest {f.money(max(p.balance for p in pts))}.")
    chart = _responsive(svg.line_chart, "chart-float", title=title, desc=desc, xs=[p.day.toordinal() for p in pts],
                        labels=[_short_day(p.day) for p in pts], values=[p.balance for p in pts],
                        value_text=f.money, tick_text=f.tick, name="Card float")
    if any(p.loads for p in pts):  # what the desks took in, day by day: the cash an issuer banks
        loaded = sum(p.loads for p in pts)
        loads_desc = (f"Loads per day from {pts[0].day.isoformat()} to {pts[-1].day.isoformat()}: "
                      f"{f.money(loaded)} {f.currency} in all.")
        chart += _responsive(svg.column_chart, "chart-loads", title="Loads per day", desc=loads_desc,
                             categories=[_short_day(p.day) for p in pts],
                             tip_categories=[p.day.isoformat() for p in pts],
                             series=[svg.Series("Loaded", [p.loads for p in pts], svg.PALETTE[2])],
                             value_text=f.money, tick_text=f.tick, height=180)
    rows = [f"<tr><th scope=row>{p.day.isoformat()}</th>{_td(p.loads, f)}{_td(p.spent, f)}{_td(p.balance, f)}</tr>"
            for p in pts]
    foot = (f"<tr><th scope=row>Period</th>{_td(sum(p.loads for p in pts), f)}{_td(sum(p.spent for p in pts), f)}"
            f"{_td(pts[-1].balance, f)}</tr>")
    table = _table(f"Card float per day, {f.currency}", [("Day", False), ("Loaded", True),
                   ("Spent (net)", True), ("Closing float", True)], rows, foot, "table-float")
    return _section("float", title, lede, f"<figure>{chart}</figure>{table}", _source(data, "float"))


def points_liability(data: DashboardData, f: Fmt) -> str:
    """Outstanding points per loyalty program, as bars and as a table."""
    title = "Points liability per program"
    lede = "Points on cards now, not yet turned into prizes or redeemed; earned and redeemed in the period."
    progs = sorted(data.points, key=lambda p: (-p.points, p.program))
    if not progs:
        return _section("points", title, lede, _empty("No loyalty program has points on cards."),
                        _source(data, "points"))
    rows_svg = [svg.HBarRow(p.program, [("points", p.points, svg.color(i))], group(p.points))
                for i, p in enumerate(progs)]
    desc = "; ".join(f"{p.program}: {group(p.points)} points on {group(p.cards)} cards" for p in progs)
    chart = _responsive(svg.hbar_chart, "chart-points", title=title, desc=desc, rows=rows_svg, value_text=group,
                        tick_text=axis_count)
    columns = ("cards", "points", "earned", "redeemed", "lapsed", "to_prizes")
    rows = [f"<tr><th scope=row>{escape(p.program)}</th>{''.join(_td(getattr(p, k)) for k in columns)}</tr>"
            for p in progs]
    totals = "".join(_td(sum(getattr(p, k) for p in progs)) for k in columns)
    head = [("Program", False), ("Cards", True), ("Outstanding", True), ("Earned", True), ("Redeemed", True),
            ("Expired", True), ("To prizes", True)]
    table = _table("Points per program", head, rows, f"<tr><th scope=row>Total</th>{totals}</tr>", "table-points")
    body = f'<div class="split"><figure>{chart}</figure>{table}</div>'
    return _section("points", title, lede, body, _source(data, "points"))


def settlement(data: DashboardData, f: Fmt) -> str:
    """Each merchant's net sales of the period: how much a settlement statement has covered, how much waits."""
    title = "Settlement status per merchant"
    lede = (f"Net sales of the period (purchases less cancellations) per merchant: settled by a statement or "
            f"pending, in {f.currency}. Fees are deducted from the payout.")
    rows_in = sorted(data.settlement, key=lambda s: s.merchant)
    if not rows_in:
        return _section("settlement", title, lede, _empty("No merchant sales in this period."),
                        _source(data, "settlement"))
    parts = (("settled", "#59a14f"), ("pending", "#f28e2b"))
    rows_svg = [svg.HBarRow(s.merchant, [("settled", s.settled, parts[0][1]), ("pending", s.pending, parts[1][1])],
                            f"{f.money(s.pending)} pending") for s in rows_in]
    desc = "; ".join(f"{s.merchant}: net sales {f.money(s.net_sales)}, settled {f.money(s.settled)}, "
                     f"pending {f.money(s.pending)}" for s in rows_in)
    chart = _responsive(svg.hbar_chart, "chart-settlement", title=title, desc=desc, rows=rows_svg, value_text=f.money,
                           tick_text=f.tick, width=960, row_height=30)
    rows = []
    for s in rows_in:
        last = s.last_settled.isoformat() if s.last_settled else "—"
        badge = s.status.replace(" ", "-")
        rows.append(f"<tr><th scope=row>{escape(s.merchant)}</th>{_td(s.gross, f)}{_td(s.cancellations, f)}"
                    f"{_td(s.net_sales, f)}{_td(s.fees, f)}{_td(s.settled, f)}{_td(s.pending, f)}"
                    f'<td><span class="badge {badge}">{escape(s.status)}</span></td><td>{last}</td></tr>')
    keys = ("gross", "cancellations", "net_sales", "fees", "settled", "pending")
    totals = "".join(_td(sum(getattr(s, k) for s in rows_in), f) for k in keys)
    foot = f"<tr><th scope=row>Total</th>{totals}<td></td><td></td></tr>"
    head = [("Merchant", False), ("Gross", True), ("Cancellations", True), ("Net sales", True), ("Fees", True),
            ("Settled", True), ("Pending", True), ("Status", False), ("Settled until", False)]
    table = _table(f"Settlement per merchant, {f.currency}", head, rows, foot, "table-settlement")
    body = _legend([(n.capitalize(), c) for n, c in parts]) + f"<figure>{chart}</figure>{table}"
    return _section("settlement", title, lede, body, _source(data, "settlement"))


def anomalies(data: DashboardData, f: Fmt) -> str:
    """The most serious fraud signals first; a bar per kind to see what dominates."""
    title = "Top anomalies"
    counts = sorted(data.anomaly_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(n for _, n in counts)
    lede = (f"Fraud signals and reconciliation conflicts found by processing: {group(total)} in the period"
            + (f", the {len(data.anomalies)} most serious shown." if total > len(data.anomalies) else "."))
    if not data.anomalies:
        return _section("anomalies", title, lede, _empty("No anomalies: every record reconciled."),
                        _source(data, "anomalies"))
    items = sorted(data.anomalies, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), -a.detected.timestamp()))
    rows_svg = [svg.HBarRow(k, [("anomalies", n, "#e15759")], group(n)) for k, n in counts]
    desc = "; ".join(f"{k}: {n}" for k, n in counts)
    chart = _responsive(svg.hbar_chart, "chart-anomalies", title="Anomalies in the period, by kind", desc=desc,
                           rows=rows_svg, value_text=group, tick_text=axis_count, width=640, row_height=28,
                           label_width=170)
    rows = []
    for a in items:
        counter = _td(a.counter) if a.counter is not None else "<td></td>"
        terminal = _td(str(a.terminal_id)) if a.terminal_id is not None else "<td></td>"
        rows.append(f'<tr><td>{a.detected.strftime("%Y-%m-%d %H:%M")}</td>'
                    f'<td><span class="badge {escape(a.severity)}">{escape(a.severity)}</span></td>'
                    f"<td>{escape(a.kind)}</td>{_td(a.card_number, cls='card-no')}{counter}{terminal}"
                    f"<td>{escape(a.detail)}</td></tr>")
    head = [("Detected", False), ("Severity", False), ("Kind", False), ("Card", False), ("Counter", True),
            ("Terminal", False), ("Detail", False)]
    table = _table("Anomalies, most serious first", head, rows, table_id="table-anomalies")
    return _section("anomalies", title, lede, f'<figure class="narrow">{chart}</figure>{table}',
                    _source(data, "anomalies"))
