"""Reports for accountants: settlement, float, card statement, points liability, anomalies, terminals.

Every figure comes from the record sub-ledger, its per-batch daily aggregates (``sales``,
for the settlement, terminals and float reports), the points per day (``points_days``, for the
points report), the cards' days of use (``card_days``, for the cards report and the payback) or the
ledger, grouped in SQL on the ``day``
column (UTC days since 1970), so the same query runs on SQLite and PostgreSQL. A report run
every day reads aggregates where they exist, not a year of records (docs/processing.md,
"What each report reads").
The float report carries the economics of the seed article: money paid onto cards in
advance is an interest-free loan to the shop, worth average float x annual rate.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, case, func, select

from processing import card_days
from processing.books import BOOK_KINDS, journal_report, ledger_report, trial_balance_report
from processing.payback import PaybackInputs, payback_lines
from processing.reportfmt import Col, Report
from processing.schema import stored_utc
from processing.schema.desk import DepositMove, card_deposits
from processing.schema.loads import loads
from processing.schema.processing import (
    LOADS_AND_CASH_OUTS,
    anomalies,
    batches,
    card_accounts,
    card_points,
    journal_entries,
    money_effect_sql,
    points_days,
    programs,
    records,
    sales,
    settlements,
    transfers_posted,
)
from processing.schema.registry import cards, merchants, terminals
from processing.settlement import EPOCH, day_number, fee_for
from purse.errors import UserError
from purse.protocol import RecordType
from purse.records import record_details

KINDS = ("settlement", "float", "statement", "points", "anomalies", "terminals", "cards", "dormant", *BOOK_KINDS,
         "payback")
DORMANT_AFTER_DAYS = 180  # a card holding money and unused this long is dormant (report dormant)
SILENT_AFTER_DAYS = 2  # a terminal whose last batch is older than this (or that never sent one) is silent


def _date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def _day_range(start: dt.date | None, end: dt.date | None) -> tuple[int | None, int | None]:
    """The period as card day numbers, None where it is open."""
    return (None if start is None else day_number(start)), (None if end is None else day_number(end))


def _range(r: Any, start: dt.date | None, end: dt.date | None) -> list[Any]:
    first, last = _day_range(start, end)
    cond = []
    if first is not None:
        cond.append(r.day >= first)
    if last is not None:
        cond.append(r.day <= last)
    return cond


def build(conn: Connection, kind: str, *, start: dt.date | None = None, end: dt.date | None = None,
          card: str | None = None, rate: Decimal | None = None, account: str | None = None,
          idle_days: int = DORMANT_AFTER_DAYS) -> Report:
    if kind == "settlement":
        return settlement_report(conn, start, end)
    if kind == "float":
        return float_report(conn, start, end, rate if rate is not None else Decimal(0))
    if kind == "statement":
        if not card:
            raise UserError("the statement report needs --card NUMBER")
        return statement_report(conn, card, start, end)
    if kind == "points":
        return points_report(conn, start, end)
    if kind == "anomalies":
        return anomalies_report(conn, start, end)
    if kind == "terminals":
        return terminals_report(conn, start, end)
    if kind == "cards":
        return cards_report(conn, start, end)
    if kind == "dormant":
        return dormant_report(conn, end, idle_days)
    if kind == "journal":
        return journal_report(conn, start, end)
    if kind == "ledger":
        return ledger_report(conn, start, end, account)
    if kind == "trial-balance":
        return trial_balance_report(conn, start, end)
    if kind == "payback":
        raise UserError("the payback report takes its parameters: use payback_report(inputs)")
    raise UserError(f"unknown report {kind!r} ({', '.join(KINDS)})")


def settlement_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    s = sales.c  # the per-batch daily aggregates: a few rows per terminal and day, not one per record
    rows = conn.execute(
        select(s.day, s.merchant_id, s.terminal_id, func.sum(s.purchase_count), func.sum(s.purchase_total),
               func.sum(s.cancel_count), func.sum(s.cancel_total))
        .where(*_range(s, start, end))
        .group_by(s.day, s.merchant_id, s.terminal_id).order_by(s.day, s.merchant_id, s.terminal_id)).all()
    info = {m: (n, bps) for m, n, bps in conn.execute(select(merchants.c.merchant_id, merchants.c.name,
                                                             merchants.c.fee_bps))}
    out = []
    for day, m, t, pc, gross, cc, canc in rows:
        name, bps = info.get(m, (f"merchant {m}", 0))
        net_sales = int(gross) - int(canc)
        fee = fee_for(net_sales, bps)
        out.append([_date(day), m, name, t, int(pc), int(gross), int(cc), int(canc), net_sales, fee,
                    net_sales - fee])
    cols = [Col("day", "date"), Col("merchant_id", "int"), Col("merchant"), Col("terminal_id", "int"),
            Col("purchases", "int"), Col("gross", "money"), Col("cancels", "int"), Col("cancellations", "money"),
            Col("net_sales", "money"), Col("fee", "money"), Col("net", "money")]
    totals = ["TOTAL", None, None, None] + [sum(row[i] for row in out) for i in range(4, 11)]
    return Report("settlement", "Merchant settlement per merchant, terminal and day", cols, out, totals,
                  {"from": start, "to": end, "note": "fee estimated per day and terminal; statements from "
                   "'smartpurse settle' are authoritative"})


def float_report(conn: Connection, start: dt.date | None, end: dt.date | None, rate_pct: Decimal) -> Report:
    per_day = _float_moves(conn)
    # A replaced card's value leaves the float the day processing moves it to replacement_payable, and
    # comes back as a load when a desk puts it on the new card (the old card's records still hold it).
    moved = {day_number(d): int(v) for d, v in conn.execute(
        select(journal_entries.c.day, func.sum(transfers_posted.c.amount))
        .select_from(transfers_posted.join(journal_entries, journal_entries.c.id == transfers_posted.c.entry_id))
        .where(transfers_posted.c.to_chip.is_(True)).group_by(journal_entries.c.day))}
    # A transfer load puts a replaced card's value on its new card: not money loaded at a desk (the one
    # definition of "loaded": cash taken for a load), but value coming back onto the float.
    lo_, r = loads.c, records.c
    transfers_in = {int(d): int(v) for d, v in conn.execute(
        select(r.day, func.sum(r.amount))
        .select_from(records.join(loads, (lo_.card_number == r.card_number) & (lo_.counter == r.counter)))
        .where(LOADS_AND_CASH_OUTS, r.record_type == int(RecordType.LOAD), lo_.transfer_id.is_not(None))
        .group_by(r.day))}
    for d in moved:
        per_day.setdefault(d, (0, 0, 0, 0))
    if not per_day and (start is None or end is None):
        return Report("float", "Card float (issuer liability) per day", _float_cols(), [], None,
                      {"average_float": 0, "annual_rate_pct": str(rate_pct), "days": 0, "interest_for_period": 0})
    first = day_number(start) if start else min(per_day)
    last = day_number(end) if end else max(per_day)
    if last < first:
        raise UserError("--to is before --from")
    opening = sum(lo - pu + ca - co - moved.get(d, 0) for d, (lo, pu, ca, co) in per_day.items() if d < first)
    rows: list[list[Any]] = []
    closing, closings = opening, []
    sums = [0, 0, 0, 0, 0, 0]
    for d in range(first, last + 1):
        lo, pu, ca, co = per_day.get(d, (0, 0, 0, 0))
        out, back = moved.get(d, 0), transfers_in.get(d, 0)
        change = lo - pu + ca - co - out
        closing += change
        closings.append(closing)
        sums = [sums[0] + lo - back, sums[1] + back, sums[2] + pu, sums[3] + ca, sums[4] + co, sums[5] + out]
        rows.append([_date(d), opening if d == first else None, lo - back, back, pu, ca, co, out, change, closing])
    days = len(closings)
    average = (Decimal(sum(closings)) / days).quantize(Decimal(1), ROUND_HALF_UP)
    annual = (average * rate_pct / 100).quantize(Decimal(1), ROUND_HALF_UP)
    period = (average * rate_pct / 100 * days / 365).quantize(Decimal(1), ROUND_HALF_UP)
    totals = ["TOTAL", opening, *sums, sums[0] + sums[1] - sums[2] + sums[3] - sums[4] - sums[5], closing]
    summary = {"from": _date(first), "to": _date(last), "days": days, "opening_float": opening,
               "closing_float": closing, "average_float": int(average), "annual_rate_pct": str(rate_pct),
               "interest_per_year_at_average_float": int(annual), "interest_for_period": int(period),
               "meaning": "money paid onto cards in advance is interest-free working capital: borrowing the "
                          "average float at the given annual rate would cost this much (amounts in minor units)"}
    return Report("float", "Card float (issuer liability) per day", _float_cols(), rows, totals, summary)


def _float_moves(conn: Connection) -> dict[int, tuple[int, int, int, int]]:
    """Card day -> loads, purchases, cancellations, cash-outs: what the records of each day moved on the
    float, read from aggregates, not from the records. Purchases and cancellations come from ``sales``
    (which ``smartpurse check`` proves equal to their records); loads and cash-outs, a few among the
    records, from the partial index that holds only them (``ix_records_loads_cash_outs``). So the report
    costs the days and the loads, whatever a year of purchases stored."""
    s, r = sales.c, records.c
    per_day: dict[int, list[int]] = {}
    for d, purchases, cancels in conn.execute(
            select(s.day, func.sum(s.purchase_total), func.sum(s.cancel_total)).group_by(s.day)):
        per_day[int(d)] = [0, int(purchases), int(cancels), 0]
    for d, loaded, paid_out in conn.execute(
            select(r.day, *[func.sum(case((r.record_type == int(kind), r.amount), else_=0))
                            for kind in (RecordType.LOAD, RecordType.CASH_OUT)])
            .where(LOADS_AND_CASH_OUTS).group_by(r.day)):
        moves = per_day.setdefault(int(d), [0, 0, 0, 0])
        moves[0], moves[3] = int(loaded), int(paid_out)
    return {d: (lo, pu, ca, co) for d, (lo, pu, ca, co) in per_day.items()}


def _float_cols() -> list[Col]:
    return [Col("day", "date"), Col("opening", "money"), Col("loads", "money"), Col("transfer_loads", "money"),
            Col("purchases", "money"), Col("cancellations", "money"), Col("cash_outs", "money"),
            Col("replaced_cards", "money"),
            Col("net_change", "money"), Col("closing_float", "money")]


def statement_report(conn: Connection, number: str, start: dt.date | None, end: dt.date | None) -> Report:
    r = records.c
    acct = conn.execute(select(card_accounts).where(card_accounts.c.card_number == number)).mappings().first()
    if acct is None:
        raise UserError(f"no records of card {number}")
    signed = money_effect_sql(r.record_type, r.amount)
    rows = []
    for counter, kind, term, merch, amount, batch, raw in conn.execute(
            select(r.counter, r.record_type, r.terminal_id, r.merchant_id, signed, r.batch_id, r.raw)
            .where(r.card_number == number, *_range(r, start, end)).order_by(r.counter)):
        d = record_details(bytes(raw))
        rows.append([dt.datetime.fromtimestamp(d.time, dt.UTC).replace(tzinfo=None), counter,
                     RecordType(kind).name.lower(), term, merch, int(amount), d.balance_after, d.program_id or None,
                     d.points_after if d.program_id else None, batch])
    cols = [Col("time", "datetime"), Col("counter", "int"), Col("type"), Col("terminal_id", "int"),
            Col("merchant_id", "int"), Col("amount", "money"), Col("balance_after", "money"),
            Col("program_id", "int"), Col("points_after", "int"), Col("batch_id", "int")]
    n_anom = conn.execute(select(func.count()).where(anomalies.c.card_number == number)).scalar_one()
    totals = ["TOTAL", None, None, None, None, sum(x[5] for x in rows), None, None, None, None]
    return Report("statement", f"Statement of card {number}", cols, rows, totals,
                  {"card_number": number, "shadow_balance": int(acct["balance"]),
                   "chain_counter": int(acct["chain_counter"]), "highest_counter": int(acct["max_counter"]),
                   "anomalies": int(n_anom)}, title_ru=f"Выписка по карте {number}")


def points_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    """Per program: points outstanding now, and the period's reconciliation: the points on cards at its
    opening, earned, redeemed, lapsed (expiry) and turned into prizes, at its closing, and the difference,
    which is 0 for every card whose records chain (a record whose points before are not what the card's
    chain left shows there).

    From ``points_days`` (processing.points_days), not records: the few rows of each day and program. The
    points on cards at a day's end are the sum of every ``held_change`` up to it; the moves are the period's
    sums. A record counts once its card's chain reaches it: one waiting behind a gap (an anomaly of its own
    once the gap is old) counts when the gap closes."""
    cp, pd = card_points.c, points_days.c
    outstanding = {p: (int(n), int(s)) for p, n, s in conn.execute(
        select(cp.program_id, func.count(), func.sum(cp.points)).group_by(cp.program_id))}

    def held_until(day: int | None) -> dict[int, int]:
        """Per program, the points on cards at the end of the days before ``day`` (None: all days)."""
        upto = [pd.day < day] if day is not None else []
        return {int(p): int(n) for p, n in conn.execute(
            select(pd.program_id, func.sum(pd.held_change)).where(*upto).group_by(pd.program_id))}

    first = day_number(start) if start is not None else None
    last = day_number(end) + 1 if end is not None else None
    at_opening = held_until(first) if first is not None else {}
    at_closing = held_until(last)
    period = [*([pd.day >= first] if first is not None else []), *([pd.day < last] if last is not None else [])]
    moved = {int(p): [int(e), int(r), int(lp), int(pz)] for p, e, r, lp, pz in conn.execute(
        select(pd.program_id, func.sum(pd.earned), func.sum(pd.redeemed), func.sum(pd.lapsed),
               func.sum(pd.to_prizes)).where(*period).group_by(pd.program_id))}
    names = {int(i): n for i, n in conn.execute(select(programs.c.program_id, programs.c.name))}
    rows = []
    for p in sorted(set(outstanding) | set(moved) | set(at_closing)):
        earned, redeemed, lapsed, prizes = moved.get(p, [0, 0, 0, 0])
        at_open, at_close = at_opening.get(p, 0), at_closing.get(p, 0)
        rows.append([p, names.get(p, f"Program {p}"), outstanding.get(p, (0, 0))[0], outstanding.get(p, (0, 0))[1],
                     at_open, earned, redeemed, lapsed, prizes, at_close,
                     at_close - (at_open + earned - redeemed - lapsed - prizes)])
    cols = [Col("program_id", "int"), Col("program"), Col("cards", "int"), Col("points_outstanding", "int"),
            Col("points_opening", "int"), Col("points_earned", "int"), Col("points_redeemed", "int"),
            Col("points_lapsed", "int"), Col("points_to_prizes", "int"), Col("points_closing", "int"),
            Col("points_difference", "int")]
    totals = ["TOTAL", None] + [sum(x[i] for x in rows) for i in range(2, 11)]
    return Report("points", "Points liability per program", cols, rows, totals,
                  {"from": start, "to": end, "reconciles": all(row[10] == 0 for row in rows),
                   "rule": "opening + earned - redeemed - lapsed - to prizes = closing"})


def anomalies_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    a = anomalies.c
    stmt = select(a.detected_at, a.kind, a.card_number, a.counter, a.terminal_id, a.batch_id, a.detail,
                  a.evidence).order_by(a.id)
    if start is not None:
        stmt = stmt.where(a.detected_at >= dt.datetime.combine(start, dt.time(), dt.UTC))
    if end is not None:
        stmt = stmt.where(a.detected_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC))
    rows = [[(d if d.tzinfo is None else d.astimezone(dt.UTC).replace(tzinfo=None)), k, c, n, t, b, detail,
             json.dumps(ev, sort_keys=True)] for d, k, c, n, t, b, detail, ev in conn.execute(stmt)]
    cols = [Col("detected_at", "datetime"), Col("kind"), Col("card_number", "card"), Col("counter", "int"),
            Col("terminal_id", "int"), Col("batch_id", "int"), Col("detail"), Col("evidence")]
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row[1]] = by_kind.get(row[1], 0) + 1
    return Report("anomalies", "Anomalies with evidence", cols, rows, None, {"by_kind": json.dumps(by_kind)})


def terminals_report(conn: Connection, start: dt.date | None, end: dt.date | None,
                     now: dt.datetime | None = None) -> Report:
    """Every registered terminal: its last batch received, and its sales in the period.

    A terminal that stopped sending batches is the first thing an operator must see: its
    sales are on the cards but in no ledger, and its log is the only copy of them. It is
    ``silent`` when its last accepted batch came more than ``SILENT_AFTER_DAYS`` days before
    ``now`` (the end of the period, or today), or when it never sent one."""
    t, b, s = terminals.c, batches.c, sales.c
    names = {int(m): n for m, n in conn.execute(select(merchants.c.merchant_id, merchants.c.name))}
    last = {int(tid): (int(n), int(seq), at) for tid, n, seq, at in conn.execute(
        select(b.terminal_id, func.count(), func.max(b.batch_seq), func.max(b.imported_at))
        .where(b.status == "accepted").group_by(b.terminal_id))}
    activity = {int(tid): (int(pc), int(gross) - int(canc)) for tid, pc, gross, canc in conn.execute(
        select(s.terminal_id, func.sum(s.purchase_count), func.sum(s.purchase_total), func.sum(s.cancel_total))
        .where(*_range(s, start, end)).group_by(s.terminal_id))}
    if now is None:
        now = (dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC) if end is not None
               else dt.datetime.now(dt.UTC))
    rows = []
    for tid, mid, name in conn.execute(select(t.terminal_id, t.merchant_id, t.name).order_by(t.terminal_id)):
        count, seq, at = last.get(int(tid), (0, None, None))
        at = None if at is None else stored_utc(at)
        quiet = None if at is None else max(0, (now - at).days)
        purchases, net = activity.get(int(tid), (0, 0))
        rows.append([int(tid), name or "", int(mid), names.get(int(mid), f"merchant {mid}"), count, seq,
                     None if at is None else at.astimezone(dt.UTC).replace(tzinfo=None), quiet,
                     "silent" if quiet is None or quiet > SILENT_AFTER_DAYS else "sending", purchases, net])
    cols = [Col("terminal_id", "int"), Col("name"), Col("merchant_id", "int"), Col("merchant"),
            Col("batches", "int"), Col("last_batch_seq", "int"), Col("last_batch_at", "datetime"),
            Col("days_since_last_batch", "int"), Col("state"), Col("purchases", "int"), Col("net_sales", "money")]
    totals = ["TOTAL", None, None, None, sum(r[4] for r in rows), None, None, None, None,
              sum(r[9] for r in rows), sum(r[10] for r in rows)]
    silent = sum(1 for r in rows if r[8] == "silent")
    return Report("terminals", "Terminals: last batch received and sales in the period", cols, rows, totals,
                  {"from": start, "to": end, "silent_terminals": silent, "silent_after_days": SILENT_AFTER_DAYS})


def cards_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    """Cards in the registry by state, those issued in the period, and those used in it.

    *Used* is a card with at least one purchase, cancellation or load posted on a day of the
    period: the share of issued cards that are really in use is what a loyalty scheme is
    judged by, and cards never used are value the issuer holds with no customer behind it."""
    c = cards.c
    by_state = {str(state): int(n) for state, n in conn.execute(select(c.state, func.count()).group_by(c.state))}
    issued_cond = []
    if start is not None:
        issued_cond.append(c.issued_at >= dt.datetime.combine(start, dt.time(), dt.UTC))
    if end is not None:
        issued_cond.append(c.issued_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC))
    issued_in_period = int(conn.execute(select(func.count()).select_from(cards).where(*issued_cond)).scalar_one())
    used = card_days.cards_used(conn, *_day_range(start, end))
    rows = [[state, by_state.get(state, 0)] for state in ("issued", "blocked", "replaced")]
    rows += [[state, n] for state, n in sorted(by_state.items()) if state not in ("issued", "blocked", "replaced")]
    total = sum(by_state.values())
    return Report("cards", "Cards in the registry by state", [Col("state"), Col("cards", "int")], rows,
                  ["TOTAL", total], {"from": start, "to": end, "registered": total,
                                     "issued_in_period": issued_in_period, "used_in_period": used})


# -- the payback of the scheme (processing.payback) -------------------------------------------------
_MONTH_DAYS = Decimal(365) / 12


def payback_inputs(conn: Connection, start: dt.date | None, end: dt.date | None, **parameters: Any) -> PaybackInputs:
    """The scheme's own figures over a period, per month: cards in use, the average float (as the float
    report computes it), the loads, and what a card holder spends."""
    floated = float_report(conn, start, end, Decimal(0))
    summary = floated.summary
    days = int(summary["days"])
    if not days or floated.totals is None:
        raise UserError("no records in the period: the payback needs the scheme's own figures "
                        "(or a scenario: --cards, --monthly-load, --left)")
    cards_used = card_days.cards_used(conn, *_day_range(summary["from"], summary["to"]))
    total = dict(zip((c.name for c in floated.columns), floated.totals, strict=True))  # the period's, by column
    loads = total["loads"] + total["transfer_loads"]
    spent = total["purchases"] - total["cancellations"]
    per_month = _MONTH_DAYS / days
    return PaybackInputs(cards=cards_used, average_float=int(summary["average_float"]),
                         monthly_loads=int((loads * per_month).quantize(Decimal(1), ROUND_HALF_UP)),
                         monthly_spend_per_card=int((spent * per_month / max(cards_used, 1))
                                                    .quantize(Decimal(1), ROUND_HALF_UP)),
                         **parameters)


def payback_report(inputs: PaybackInputs, period: tuple[dt.date | None, dt.date | None] = (None, None)) -> Report:
    """The payback table: each line's formula and amount (money) or figure (cards, months)."""
    rows = [[line.item, line.formula, line.value if line.kind == "money" else None,
             None if line.kind == "money" else str(line.value)] for line in payback_lines(inputs)]
    summary = {"from": period[0], "to": period[1], **{k: (str(v) if isinstance(v, Decimal) else v)
                                                      for k, v in inputs.__dict__.items()}}
    return Report("payback", "Payback of the card scheme", [Col("item"), Col("formula"), Col("amount", "money"),
                                                          Col("figure")], rows, None, summary)


# -- settlement statements: the documents `settle` made, listed and printed again ------------------------------
def statements_list(conn: Connection, merchant_id: int | None = None) -> list[dict[str, Any]]:
    """Every statement ``settle`` made (newest first), its number being its id."""
    st, m = settlements.c, merchants.c
    query = (select(st.id, st.merchant_id, m.name, st.until, st.purchase_count, st.gross, st.cancellations,
                    st.fee, st.net)
             .select_from(settlements.outerjoin(merchants, m.merchant_id == st.merchant_id)).order_by(st.id.desc()))
    if merchant_id is not None:
        query = query.where(st.merchant_id == merchant_id)
    return [{"statement": int(i), "merchant_id": int(mid), "merchant": name or f"merchant {mid}", "until": until,
             "purchases": int(pc), "gross": int(g), "cancellations": int(c), "fee": int(f), "net": int(n)}
            for i, mid, name, until, pc, g, c, f, n in conn.execute(query)]


def statement_document(conn: Connection, number: int) -> Report:
    """Statement ``number`` as its merchant receives it: the sales it paid per day and terminal, the totals,
    the fee and the net payable; the same document every time it is printed."""
    st = conn.execute(select(settlements).where(settlements.c.id == number)).mappings().first()
    if st is None:
        raise UserError(f"no statement {number} (`smartpurse statements list` shows them)")
    merchant = conn.execute(select(merchants).where(merchants.c.merchant_id == st["merchant_id"])).mappings().first()
    s = sales.c
    rows: list[list[Any]] = []
    for day, terminal, pc, gross, cc, canc in conn.execute(
            select(s.day, s.terminal_id, func.sum(s.purchase_count), func.sum(s.purchase_total),
                   func.sum(s.cancel_count), func.sum(s.cancel_total))
            .where(s.settlement_id == number).group_by(s.day, s.terminal_id).order_by(s.day, s.terminal_id)):
        rows.append([_date(day), int(terminal), int(pc), int(gross), int(cc), int(canc), int(gross) - int(canc)])
    cols = [Col("day", "date"), Col("terminal_id", "int"), Col("purchases", "int"), Col("gross", "money"),
            Col("cancels", "int"), Col("cancellations", "money"), Col("net_sales", "money")]
    totals: list[Any] = ["TOTAL", None, *[sum(int(r[i]) for r in rows) for i in range(2, 7)]]
    name = (merchant["legal_name"] or merchant["name"]) if merchant else f"merchant {st['merchant_id']}"
    summary = {"statement": number, "merchant_id": int(st["merchant_id"]), "merchant": name,
               "tax_number": merchant["tax_number"] if merchant else None,
               "until": st["until"], "gross": int(st["gross"]), "cancellations": int(st["cancellations"]),
               "fee_bps": int(st["fee_bps"]), "fee": int(st["fee"]), "net": int(st["net"])}
    return Report("statement-document", f"Settlement statement No. {number}: {name}, sales before {st['until']}",
                  cols, rows, totals, summary,
                  title_ru=f"Отчёт о расчётах № {number}: {name}, продажи до {st['until']:%d.%m.%Y}")


# -- dormant and expired cards that still hold money ------------------------------------------------


def dormant_report(conn: Connection, end: dt.date | None, idle_days: int = DORMANT_AFTER_DAYS) -> Report:
    """Cards holding money that nobody uses: no transaction for ``idle_days`` before ``end`` (dormant), or
    past their expiry (expired): money the issuer owes that may never be spent, nor claimed back."""
    if idle_days < 1:
        raise UserError("--idle-days must be at least 1")
    as_of = end or dt.datetime.now(dt.UTC).date()
    as_of_ts = int(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp())
    idle_before = as_of_ts - idle_days * 86_400
    a, c, d = card_accounts.c, cards.c, card_deposits.c
    held = (select(d.card_number.label("n"), func.sum(case((d.move == DepositMove.TAKEN, d.amount), else_=-d.amount))
                   .label("deposit")).group_by(d.card_number).subquery())
    rows: list[list[Any]] = []
    for number, balance, deposit, last, expiry, state in conn.execute(
            select(a.card_number, a.balance, held.c.deposit, a.chain_time, c.expiry, c.state)
            .select_from(card_accounts.outerjoin(cards, c.number == a.card_number)
                         .outerjoin(held, held.c.n == a.card_number))
            .where(a.balance > 0, (a.chain_time < idle_before) | (c.expiry < as_of_ts))
            .order_by(a.card_number)):
        expired = expiry is not None and int(expiry) < as_of_ts
        last_day = dt.datetime.fromtimestamp(int(last), dt.UTC).date()
        rows.append([number, state or "unregistered", int(balance), int(deposit or 0), last_day,
                     (as_of - last_day).days,
                     dt.datetime.fromtimestamp(int(expiry), dt.UTC).date() if expiry is not None else None,
                     "expired" if expired else "dormant"])
    cols = [Col("card_number", "card"), Col("state"), Col("balance", "money"), Col("deposit", "money"),
            Col("last_used", "date"), Col("idle_days", "int"), Col("expiry", "date"), Col("reason")]
    total, deposits = sum(int(r[2]) for r in rows), sum(int(r[3]) for r in rows)
    return Report("dormant", f"Cards holding money unused for {idle_days} days or expired, as of {as_of}", cols, rows,
                  ["TOTAL", None, total, deposits, None, None, None, f"{len(rows)} cards"],
                  {"as_of": as_of, "idle_days": idle_days, "cards": len(rows), "balance": total,
                   "deposits": deposits, "expired": sum(1 for r in rows if r[7] == "expired")},
                  title_ru=f"Карты с деньгами без операций {idle_days} дн. или с истёкшим сроком на {as_of:%d.%m.%Y}")
