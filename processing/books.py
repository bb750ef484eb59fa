"""The books out of the ledger: the journal, the general ledger per account and the trial balance.

Every figure is read from ``journal_entries`` and ``postings`` (processing.ledger), so the three agree
with each other and with ``check`` by construction: the trial balance's turnover is the journal's sum,
and its closing card float is the ledger balance ``check`` compares with the cards' shadow balances.
The trial balance has the six columns of a Russian оборотно-сальдовая ведомость: opening, turnover and
closing balance, each on the debit and the credit side (docs/books.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from processing.reportfmt import Col, Report
from processing.schema.processing import accounts, journal_entries, postings
from purse.errors import UserError

__all__ = ["journal_report", "ledger_report", "trial_balance_report", "BOOK_KINDS"]

BOOK_KINDS = ("journal", "ledger", "trial-balance")


def _check_period(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and end < start:
        raise UserError("--to is before --from")


def _in_period(start: dt.date | None, end: dt.date | None) -> list[Any]:
    day = journal_entries.c.day
    return [*([day >= start] if start else []), *([day <= end] if end else [])]


def journal_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    """Every entry of the period with its postings, in order; the source is the entry's kind and batch."""
    _check_period(start, end)
    e, p, a = journal_entries.c, postings.c, accounts.c
    rows = [[entry, day, kind, batch, description, code, name, int(debit), int(credit)]
            for entry, day, kind, batch, description, code, name, debit, credit in conn.execute(
                select(e.id, e.day, e.kind, e.batch_id, e.description, a.code, a.name, p.debit, p.credit)
                .select_from(postings.join(journal_entries, e.id == p.entry_id).join(accounts, a.id == p.account_id))
                .where(*_in_period(start, end)).order_by(e.day, e.id, p.id))]
    cols = [Col("entry", "int"), Col("day", "date"), Col("source"), Col("batch", "int"), Col("description"),
            Col("account"), Col("account_name"), Col("debit", "money"), Col("credit", "money")]
    debits, credits = sum(r[7] for r in rows), sum(r[8] for r in rows)
    entries = len({r[0] for r in rows})
    return Report("journal", "Journal: every entry and its postings", cols, rows,
                  ["TOTAL", None, None, None, f"{entries} entries", None, None, debits, credits],
                  {"from": start, "to": end, "entries": entries, "debits": debits, "credits": credits})


def _balances_before(conn: Connection, start: dt.date | None) -> dict[int, int]:
    """Debit-positive balance of each account before ``start`` (none before the first entry)."""
    if start is None:
        return {}
    p = postings.c
    return {int(acct): int(d) - int(c) for acct, d, c in conn.execute(
        select(p.account_id, func.sum(p.debit), func.sum(p.credit))
        .select_from(postings.join(journal_entries, journal_entries.c.id == p.entry_id))
        .where(journal_entries.c.day < start).group_by(p.account_id))}


def _accounts(conn: Connection) -> list[tuple[int, str, str, str]]:
    a = accounts.c
    return [(int(i), c, n, k) for i, c, n, k in conn.execute(select(a.id, a.code, a.name, a.kind).order_by(a.code))]


def ledger_report(conn: Connection, start: dt.date | None, end: dt.date | None,
                  account: str | None = None) -> Report:
    """The general ledger: per account, its opening balance, each posting with the running balance, closing."""
    _check_period(start, end)
    chart = _accounts(conn)
    if account is not None and account not in {code for _, code, _, _ in chart}:
        raise UserError(f"no account {account!r} (accounts: {', '.join(c for _, c, _, _ in chart) or 'none yet'})")
    opening = _balances_before(conn, start)
    e, p = journal_entries.c, postings.c
    rows: list[list[Any]] = []
    for acct, code, name, _kind in chart:
        if account is not None and code != account:
            continue
        running = opening.get(acct, 0)
        rows.append([code, name, start, None, "opening balance", None, None, running])
        for entry, day, description, debit, credit in conn.execute(
                select(e.id, e.day, e.description, p.debit, p.credit)
                .select_from(postings.join(journal_entries, e.id == p.entry_id))
                .where(p.account_id == acct, *_in_period(start, end)).order_by(e.day, e.id, p.id)):
            running += int(debit) - int(credit)
            rows.append([code, name, day, entry, description, int(debit), int(credit), running])
        rows.append([code, name, end, None, "closing balance", None, None, running])
    cols = [Col("account"), Col("account_name"), Col("day", "date"), Col("entry", "int"), Col("description"),
            Col("debit", "money"), Col("credit", "money"), Col("balance", "money")]
    return Report("ledger", "General ledger per account (balance: debit positive, credit negative)", cols, rows,
                  None, {"from": start, "to": end, "account": account})


def trial_balance_report(conn: Connection, start: dt.date | None, end: dt.date | None) -> Report:
    """Per account: opening, turnover and closing balance, on the debit and the credit side; totals balance."""
    _check_period(start, end)
    opening = _balances_before(conn, start)
    p = postings.c
    turnover = {int(acct): (int(d), int(c)) for acct, d, c in conn.execute(
        select(p.account_id, func.sum(p.debit), func.sum(p.credit))
        .select_from(postings.join(journal_entries, journal_entries.c.id == p.entry_id))
        .where(*_in_period(start, end)).group_by(p.account_id))}
    rows: list[list[Any]] = []
    for acct, code, name, kind in _accounts(conn):
        before = opening.get(acct, 0)
        debit, credit = turnover.get(acct, (0, 0))
        after = before + debit - credit
        rows.append([code, name, kind, max(before, 0), max(-before, 0), debit, credit, max(after, 0), max(-after, 0)])
    cols = [Col("account"), Col("account_name"), Col("type"), Col("opening_debit", "money"),
            Col("opening_credit", "money"), Col("turnover_debit", "money"), Col("turnover_credit", "money"),
            Col("closing_debit", "money"), Col("closing_credit", "money")]
    sums = [sum(int(r[i]) for r in rows) for i in range(3, 9)]
    totals: list[Any] = ["TOTAL", None, None, *sums]
    balanced = sums[0] == sums[1] and sums[2] == sums[3] and sums[4] == sums[5]
    return Report("trial-balance", "Trial balance: opening, turnover and closing per account", cols, rows, totals,
                  {"from": start, "to": end, "balances": balanced})
