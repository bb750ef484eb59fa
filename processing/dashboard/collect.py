"""Reading the dashboard's figures from the database, through the JSON reports' own functions.

Every figure the charts show is taken from ``processing.reports.build`` — the function
behind ``smartpurse report settlement|float|points|anomalies --format json`` — with the
same period, then only regrouped (summed per day and merchant, per merchant). So the
dashboard cannot disagree with the reports an accountant files. The one figure no
report carries yet, how much of a merchant's sales a settlement statement has covered,
is read from the daily sales aggregates that ``smartpurse settle`` stamps (``sales.settlement_id``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, select

from processing import reports
from processing.dashboard.model import (
    Anomaly,
    DailySales,
    DashboardData,
    FloatPoint,
    PointsLiability,
    SettlementRow,
    TerminalRow,
)
from processing.dashboard.render import render_dashboard
from processing.reportfmt import Report
from processing.schema.processing import sales, settlements
from processing.settlement import day_number
from purse.errors import UserError
from purse.files import write_atomic
from purse.home import Home

TOP_ANOMALIES = 20

# How urgently a person should look: a kind that means money may be lost or a card copied is
# critical; one that a late batch or a program fix may explain is a warning. Unknown kinds
# (added to processing later) default to warning rather than being hidden.
SEVERITY = {
    "clone": "critical",
    "balance_out_of_chain": "critical",
    "counter_rollback": "critical",
    "hotlisted_use": "critical",
    "batch_seq_reused": "critical",
    "bad_load_certificate": "critical",
    "bad_certificate": "critical",
    "terminal_log_started": "warning",
    "unmatched_load": "warning",
    "points_out_of_chain": "warning",
    "points_mismatch": "warning",
    "counter_gap": "info",
}

SOURCES = {
    "sales": "smartpurse report settlement --format json, column net_sales (gross less cancellations), "
             "summed per day and merchant.",
    "float": "smartpurse report float --format json: closing_float, loads, purchases less cancellations per day.",
    "settlement": "smartpurse report settlement --format json (gross, cancellations, fee) summed per merchant; "
                  "settled = net sales of records covered by a 'smartpurse settle' statement.",
    "points": "smartpurse report points --format json: points_outstanding, cards, points_earned, points_redeemed, "
              "points_lapsed, points_to_prizes.",
    "anomalies": "smartpurse report anomalies --format json; the severity ranking is the dashboard's own.",
    "cards": "smartpurse report cards --format json: cards per state; summary used_in_period.",
    "terminals": "smartpurse report terminals --format json: last_batch_at, days_since_last_batch, state, "
                 "purchases, net_sales.",
}


def _rows(report: Report) -> list[dict[str, Any]]:
    """A report's rows by column name, so a reordered column cannot shift a figure."""
    names = [c.name for c in report.columns]
    return [dict(zip(names, row, strict=True)) for row in report.rows]


def _merchant_labels(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Merchant id -> display name; a name two merchants share gets the id appended."""
    names = {int(r["merchant_id"]): str(r["merchant"]) for r in rows}
    shared = Counter(names.values())
    return {m: (n if shared[n] == 1 else f"{n} (#{m})") for m, n in names.items()}


def _settled_by_merchant(conn: Connection, start: dt.date | None, end: dt.date | None) -> dict[int, int]:
    """Net sales of the period already covered by settlement statements, per merchant id."""
    s = sales.c
    cond: list[ColumnElement[bool]] = [s.settlement_id.is_not(None)]
    if start is not None:
        cond.append(s.day >= day_number(start))
    if end is not None:
        cond.append(s.day <= day_number(end))
    return {int(m): int(v) for m, v in conn.execute(
        select(s.merchant_id, func.sum(s.purchase_total - s.cancel_total)).where(*cond).group_by(s.merchant_id))}


def _settled_until(conn: Connection) -> dict[int, dt.date]:
    """The last day each merchant's latest statement covers (a statement covers days before ``until``)."""
    s = settlements.c
    return {int(m): until - dt.timedelta(days=1)
            for m, until in conn.execute(select(s.merchant_id, func.max(s.until)).group_by(s.merchant_id))}


def _sales_and_settlement(conn: Connection, start: dt.date | None,
                          end: dt.date | None) -> tuple[list[DailySales], list[SettlementRow], int]:
    report = reports.build(conn, "settlement", start=start, end=end)
    rows = _rows(report)
    labels = _merchant_labels(rows)
    daily: dict[tuple[dt.date, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    merchant: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        m = int(r["merchant_id"])
        d = daily[r["day"], m]
        d[0] += int(r["gross"])
        d[1] += int(r["cancellations"])
        d[2] += int(r["purchases"])
        t = merchant[m]
        t[0] += int(r["gross"])
        t[1] += int(r["cancellations"])
        t[2] += int(r["fee"])
    sales = [DailySales(day, labels[m], gross, canc, count) for (day, m), (gross, canc, count) in sorted(daily.items())]
    settled = _settled_by_merchant(conn, start, end)
    until = _settled_until(conn)
    status = [SettlementRow(labels[m], gross, canc, fee, settled.get(m, 0), gross - canc - settled.get(m, 0),
                            until.get(m)) for m, (gross, canc, fee) in sorted(merchant.items())]
    return sales, status, report.exponent


def _float(conn: Connection, start: dt.date | None, end: dt.date | None) -> tuple[list[FloatPoint], dict[str, Any]]:
    report = reports.build(conn, "float", start=start, end=end, rate=Decimal(0))
    points = [FloatPoint(r["day"], int(r["closing_float"]), int(r["loads"]),
                         int(r["purchases"]) - int(r["cancellations"])) for r in _rows(report)]
    return points, report.summary


def _points(conn: Connection, start: dt.date | None, end: dt.date | None) -> list[PointsLiability]:
    report = reports.build(conn, "points", start=start, end=end)
    return [PointsLiability(str(r["program"]), int(r["points_outstanding"]), int(r["cards"]),
                            int(r["points_earned"]), int(r["points_redeemed"]), int(r["points_lapsed"]),
                            int(r["points_to_prizes"])) for r in _rows(report)]


def _anomalies(conn: Connection, start: dt.date | None, end: dt.date | None) -> tuple[list[Anomaly], dict[str, int]]:
    report = reports.build(conn, "anomalies", start=start, end=end)
    found = [Anomaly(r["detected_at"], str(r["kind"]), str(r["card_number"] or ""), str(r["detail"]),
                     SEVERITY.get(str(r["kind"]), "warning"), r["counter"], r["terminal_id"])
             for r in _rows(report)]
    rank = {"critical": 0, "warning": 1, "info": 2}
    found.sort(key=lambda a: (rank[a.severity], -a.detected.timestamp(), a.card_number))
    return found[:TOP_ANOMALIES], dict(Counter(a.kind for a in found))


def _terminals(conn: Connection, start: dt.date | None, end: dt.date | None,
               now: dt.datetime | None) -> list[TerminalRow]:
    report = reports.terminals_report(conn, start, end, now=now) if now is not None else \
        reports.build(conn, "terminals", start=start, end=end)
    return [TerminalRow(int(r["terminal_id"]), str(r["merchant"]) + (f" · {r['name']}" if r["name"] else ""),
                        int(r["batches"]), r["last_batch_at"], r["days_since_last_batch"], r["state"] == "silent",
                        int(r["purchases"]), int(r["net_sales"])) for r in _rows(report)]


def _previous(conn: Connection, start: dt.date, end: dt.date) -> tuple[int, int]:
    """Net sales and purchases of the as many days just before ``start``: what the period is compared with."""
    days = (end - start).days + 1
    rows = _rows(reports.build(conn, "settlement", start=start - dt.timedelta(days=days),
                               end=start - dt.timedelta(days=1)))
    return sum(int(r["net_sales"]) for r in rows), sum(int(r["purchases"]) for r in rows)


def collect_dashboard_data(engine: Engine, date_from: dt.date | None = None, date_to: dt.date | None = None, *,
                           issuer: str = "Card issuer", currency: int | str = 643, exponent: int | None = None,
                           generated: dt.datetime | None = None) -> DashboardData:
    """The figures of every dashboard section for the period (default: every day with records).

    ``generated`` is printed on the page; pass a fixed time where identical output matters
    (the demo's same-seed check), otherwise it is now, in UTC.
    """
    if date_from is not None and date_to is not None and date_to < date_from:
        raise UserError("--to is before --from")
    with engine.connect() as conn:
        sales, settlement, report_exponent = _sales_and_settlement(conn, date_from, date_to)
        float_series, float_summary = _float(conn, date_from, date_to)
        points = _points(conn, date_from, date_to)
        top, kinds = _anomalies(conn, date_from, date_to)
        terminal_rows = _terminals(conn, date_from, date_to, generated)  # silent as of when the page is made
        card_report = reports.build(conn, "cards", start=date_from, end=date_to)
        today = (generated or dt.datetime.now(dt.UTC)).date()
        period_from = date_from or float_summary.get("from") or today
        period_to = date_to or float_summary.get("to") or period_from
        previous_net, previous_count = _previous(conn, period_from, period_to)
    return DashboardData(
        issuer=issuer, currency=currency if isinstance(currency, str) else str(currency),
        exponent=report_exponent if exponent is None else exponent, period_from=period_from, period_to=period_to,
        generated=generated or dt.datetime.now(dt.UTC), daily_sales=sales, float_series=float_series, points=points,
        anomalies=top, anomaly_kinds=kinds, settlement=settlement, terminals=terminal_rows,
        previous_net_sales=previous_net, previous_purchases=previous_count,
        cards_by_state={str(r["state"]): int(r["cards"]) for r in _rows(card_report)},
        cards_used=int(card_report.summary["used_in_period"]), sources=dict(SOURCES))


def write_dashboard(engine: Engine, out: Path, date_from: dt.date | None = None, date_to: dt.date | None = None,
                    **options: Any) -> Path:
    """Collect, render and write the dashboard to ``out`` atomically; returns ``out``.

    ``options`` go to ``collect_dashboard_data`` (issuer, currency, exponent, generated).
    A half-written file never replaces a good one: the page goes to a temporary name first.
    """
    page = render_dashboard(collect_dashboard_data(engine, date_from, date_to, **options))
    return write_atomic(out, page.encode("utf-8"), durable=False)


def dashboard_options(home: Home) -> dict[str, Any]:
    """The issuer's name and currency from the home's configuration, as the dashboard prints them."""
    issuer = home.issuer
    return {"issuer": issuer.display_name, "currency": issuer.currency,
            "exponent": issuer.currency_exponent}
