"""The double-entry general ledger: a chart of accounts, balanced journal entries.

Postings are signed in the API (positive = debit, negative = credit) and stored as
separate debit/credit columns, so every report reads like an accountant's journal.
``post`` refuses an unbalanced entry before it touches the database: a posting error
is a bug, never a silently wrong ledger (docs/design.md, "Ledger"). Card-level detail lives
in the ``records`` sub-ledger; the general ledger holds aggregates per batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, func, insert, select

from processing.schema import insert_once
from processing.schema.processing import accounts, journal_entries, postings

CASH = "cash"  # money taken at the issuer's load desks
BANK = "bank"  # the issuer's bank account, from which merchants are paid
LOAD_SUSPENSE = "load_suspense"  # loads seen on cards but unknown to the issuer's desk
CARD_FLOAT = "card_float"  # the issuer's liability for money on cards
REPLACEMENT_PAYABLE = "replacement_payable"  # a replaced card's value, until a desk loads it onto the new card
CARD_DEPOSITS = "card_deposits"  # deposits taken at issue, owed back when the card is returned
FEE_INCOME = "fee_income"

_CHART = {
    CASH: ("Cash at load desks", "asset"),
    BANK: ("Bank account", "asset"),
    LOAD_SUSPENSE: ("Loads awaiting issuer records (suspense)", "asset"),
    CARD_FLOAT: ("Card float: money on cards", "liability"),
    REPLACEMENT_PAYABLE: ("Replaced cards' value awaiting the new card", "liability"),
    CARD_DEPOSITS: ("Card deposits held", "liability"),
    FEE_INCOME: ("Merchant fee income", "income"),
}


# The entries that post card records (the records sub-ledger names them): a terminal's batch, the desks'
# loads and their cash-outs at card return. Every other entry moves money between accounts only.
RECORD_ENTRY_KINDS = ("batch", "load", "cash_out")


class UnbalancedEntry(AssertionError):
    """A bug: an entry whose debits and credits differ must never be written."""


def merchant_payable(merchant_id: int) -> str:
    return f"merchant_payable:{merchant_id}"


def account_id(conn: Connection, code: str, known: dict[str, int] | None = None) -> int:
    """The account's id, creating it from the chart on first use. ``known``: the ids this transaction has
    read already (a group of batches posts to the same few accounts), kept up to date."""
    if known is not None and code in known:
        return known[code]
    found = conn.execute(select(accounts.c.id).where(accounts.c.code == code)).scalar()
    if found is None:
        found = _open_account(conn, code)
    if known is not None:
        known[code] = int(found)
    return int(found)


def _open_account(conn: Connection, code: str) -> int:
    if code.startswith("merchant_payable:"):
        merchant = int(code.split(":", 1)[1])
        name, kind, merchant_id = f"Payable to merchant {merchant}", "liability", merchant
    else:
        (name, kind), merchant_id = _CHART[code], None
    # Once, even if two importers open a new merchant's account at the same moment: the second waits
    # for the first's row and then reads it.
    insert_once(conn, accounts, {"code": code, "name": name, "kind": kind, "merchant_id": merchant_id}, ["code"])
    return int(conn.execute(select(accounts.c.id).where(accounts.c.code == code)).scalar_one())


def entry_day(unix: int) -> dt.date:
    """The day (UTC) an entry made at ``unix`` seconds is dated."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).date()


def open_entry(conn: Connection, kind: str, description: str, day: dt.date, batch_id: int | None = None) -> int:
    """Create an entry header; its postings follow with ``post`` in the same transaction."""
    return open_entries(conn, [(kind, description, day, batch_id)])[0]


def open_entries(conn: Connection, entries: Sequence[tuple[str, str, dt.date, int | None]]) -> list[int]:
    """``open_entry`` for each ``(kind, description, day, batch_id)`` in one statement (a group's batches,
    processing.batch_rows); their ids, in order."""
    je = journal_entries.c
    rows = conn.execute(insert(journal_entries).returning(je.id, sort_by_parameter_order=True), [
        {"kind": kind, "description": description, "day": day, "batch_id": batch_id}
        for kind, description, day, batch_id in entries]).all()
    return [int(entry_id) for (entry_id,) in rows]


def post(conn: Connection, entry_id: int, lines: Iterable[tuple[str, int]],
         known: dict[str, int] | None = None) -> None:
    """Write ``(account code, signed amount)`` lines; zero lines are dropped; must balance. ``known``: as
    ``account_id``'s."""
    rows = posting_rows(conn, entry_id, lines, known)
    if rows:
        conn.execute(insert(postings), rows)


def posting_rows(conn: Connection, entry_id: int, lines: Iterable[tuple[str, int]],
                 known: dict[str, int] | None = None) -> list[dict[str, int]]:
    """The ``postings`` rows of ``post``, checked to balance, for a caller that writes several entries' at once."""
    lines = [(code, amount) for code, amount in lines if amount]
    if sum(amount for _, amount in lines) != 0:
        raise UnbalancedEntry(f"entry {entry_id} does not balance: {lines}")
    return [{"entry_id": entry_id, "account_id": account_id(conn, code, known),
             "debit": amount if amount > 0 else 0, "credit": -amount if amount < 0 else 0} for code, amount in lines]


def balance(conn: Connection, code: str) -> int:
    """Debit-positive balance of an account (a liability's balance is negative)."""
    row = conn.execute(
        select(func.coalesce(func.sum(postings.c.debit), 0), func.coalesce(func.sum(postings.c.credit), 0))
        .select_from(postings.join(accounts, accounts.c.id == postings.c.account_id))
        .where(accounts.c.code == code)).one()
    return int(row[0]) - int(row[1])


def card_float(conn: Connection) -> int:
    """The issuer's liability for money on cards, as a positive number."""
    return -balance(conn, CARD_FLOAT)


def batch_lines(merchant_id: int | None, purchases: int, cancellations: int, loads: int,
                unmatched_loads: int, transfer_loads: int = 0) -> list[tuple[str, int]]:
    """The postings of one batch's new records (aggregates; the records are the detail).

    ``loads`` took cash at a desk; ``transfer_loads`` paid replacement transfers onto new cards
    (no cash: the value comes out of ``replacement_payable``)."""
    lines: list[tuple[str, int]] = []
    if purchases or cancellations:
        payable = merchant_payable(int(merchant_id or 0))
        lines += [(CARD_FLOAT, purchases), (payable, -purchases), (payable, cancellations),
                  (CARD_FLOAT, -cancellations)]
    lines += [(CASH, loads), (CARD_FLOAT, -loads), (LOAD_SUSPENSE, unmatched_loads), (CARD_FLOAT, -unmatched_loads),
              (REPLACEMENT_PAYABLE, transfer_loads), (CARD_FLOAT, -transfer_loads)]
    return lines


def replacement_payable(conn: Connection) -> int:
    """Replaced cards' value not yet loaded onto their new cards, as a positive number."""
    return -balance(conn, REPLACEMENT_PAYABLE)
