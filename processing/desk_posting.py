"""Posting what the issuer's desks recorded: loads, cash-outs at card return, card deposits.

The desks are the issuer's own and online, so they write their certified records to the
database the moment money changes hands (``loads``, ``cash_outs``, ``card_deposits``); this module
posts each of them once, in the import's transaction:

* a load: Dr cash / Cr card float (a replacement transfer's load: Dr replacement payable);
* a cash-out: Dr card float / Cr cash, the balance the card paid out;
* a deposit taken: Dr cash / Cr card deposits; refunded: Dr card deposits / Cr cash.

Loads and cash-outs are card records: their certificates are checked, and they join the
records sub-ledger and the card's chain like any record from a batch (docs/books.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, delete, false, select, update

from processing import anomalies as anomaly_store
from processing import card_days, ledger
from processing.anomalies import Anomaly, AnomalyKind, clone_anomaly
from processing.holders.events import desk_events
from processing.keys import CardMacs
from processing.reconcile import Reconciler
from processing.rows import AMOUNT, CARD_NUMBER, COUNTER, StoredRow
from processing.schema.desk import DepositMove, card_deposits, cash_outs
from processing.schema.loads import loads
from processing.store import RecordStore
from purse.protocol import RecordType
from purse.records import RECORD_LAYOUT

__all__ = ["post_desk_records"]

# What a desk's record is checked and stored by, read by name (purse.records.RECORD_LAYOUT).
_DESK_RECORD = RECORD_LAYOUT.sparse(("record_type", "key_version", "uid", "card_number", "counter", "amount",
                                     "terminal_id", "terminal_seq", "time", "certificate"))
_BAD = {RecordType.LOAD: (AnomalyKind.BAD_LOAD_CERTIFICATE, "badload", "load"),
        RecordType.CASH_OUT: (AnomalyKind.BAD_CASH_OUT_CERTIFICATE, "badcashout", "cash-out")}


def post_desk_records(conn: Connection, card_macs: CardMacs, *, now: int, gap_seconds: int) -> int:
    """Post every desk record not yet posted; returns how many card records (loads, cash-outs) were new."""
    posted = _post_loads(conn, card_macs, now, gap_seconds)
    posted += _post_cash_outs(conn, card_macs, now, gap_seconds)
    _post_deposits(conn, now)
    return posted


def _unposted(conn: Connection, table: Table, *extra: Any) -> Sequence[Any]:
    """(id, record, *extra) of the rows of a desk table not posted yet, in card and counter order, read
    through the partial index of those rows: a pass costs what is left to post, not every load ever made."""
    t = table.c
    return conn.execute(select(t.id, t.record, *extra).where(t.posted.is_(false()))
                        .order_by(t.card_number, t.counter)).all()


def _mark_posted(conn: Connection, table: Table, ids: list[int]) -> None:
    """Their records are in ``records`` now (stored here, or by a batch that carried them first): posted."""
    for i in range(0, len(ids), 500):
        conn.execute(update(table).where(table.c.id.in_(ids[i : i + 500])).values(posted=True))


def _verified(raw: bytes, kind: RecordType, card_macs: CardMacs, found: list[Anomaly]) -> StoredRow | None:
    """The desk record as a sub-ledger row, or None (and an anomaly) when its certificate fails."""
    got, version, uid, bcd, counter, amount, terminal, seq, when, _ = _DESK_RECORD.unpack(raw)
    number = bcd.hex()
    if got != kind or not card_macs.verifies(version, uid, raw):
        anomaly, prefix, what = _BAD[kind]
        found.append(Anomaly(anomaly, f"{prefix}:{number}:{counter}",
                             f"card {number} counter {counter}: the desk's {what} record does not verify",
                             {"record": raw.hex()}, number, counter, terminal))
        return None
    return StoredRow(number, counter, kind, amount, terminal, seq, when // 86400, None, None, 0, raw)


def _store(conn: Connection, rows: list[StoredRow], found: list[Anomaly], entry_id: int, now: int,
           gap_seconds: int) -> list[tuple[Any, ...]]:
    """Store ``rows`` under ``entry_id`` and walk their cards' chains; the rows that were new."""
    stamped = [tuple(r._replace(entry_id=entry_id)) for r in rows]
    rec = Reconciler(conn, now=now, gap_seconds=gap_seconds)
    rec.found.extend(found)
    rec.prepare(stamped)
    stored = RecordStore(conn).store(stamped, entry_id)
    for received, other in stored.conflicts:
        rec.found.append(clone_anomaly(received, other))
    rec.walk(stored.new)
    rec.finish()
    used = card_days.CardDays()
    used.add_rows(stored.new)
    card_days.write(conn, used.pairs())
    anomaly_store.save(conn, rec.found, now=now)
    return list(stored.new)


def _post(conn: Connection, kind: str, description: str, now: int, rows: list[StoredRow], found: list[Anomaly],
          gap_seconds: int, lines: Callable[[list[tuple[Any, ...]]], list[tuple[str, int]]],
          transfers: set[tuple[str, int]] | None = None) -> int:
    """One entry for ``rows``: stored, walked, posted with ``lines(new rows)``, their holders' events
    written; the entry is dropped if nothing was new. How many rows were."""
    if not rows and not found:
        return 0
    entry_id = ledger.open_entry(conn, kind, description, ledger.entry_day(now))
    new = _store(conn, rows, found, entry_id, now, gap_seconds)
    ledger.post(conn, entry_id, lines(new))
    if not new:
        conn.execute(delete(ledger.journal_entries).where(ledger.journal_entries.c.id == entry_id))
    desk_events(conn, new, transfers or set(), now)
    return len(new)


def _post_loads(conn: Connection, card_macs: CardMacs, now: int, gap_seconds: int) -> int:
    """Loads: Dr cash / Cr card float; a load that paid a replacement transfer comes out of its payable."""
    found: list[Anomaly] = []
    rows: list[StoredRow] = []
    transfer_loads: set[tuple[str, int]] = set()  # paid a replacement transfer: no cash came in
    verified: list[int] = []  # a load whose certificate fails stays unposted, and is said again each pass
    for load_id, raw, transfer_id in _unposted(conn, loads, loads.c.transfer_id):
        row = _verified(bytes(raw), RecordType.LOAD, card_macs, found)
        if row is not None:
            rows.append(row)
            verified.append(load_id)
            if transfer_id is not None:
                transfer_loads.add((row.card_number, row.counter))

    def lines(new: list[tuple[Any, ...]]) -> list[tuple[str, int]]:
        paid = sum(r[AMOUNT] for r in new if (r[CARD_NUMBER], r[COUNTER]) in transfer_loads)
        cash = sum(r[AMOUNT] for r in new) - paid
        return ledger.batch_lines(None, 0, 0, cash, 0, transfer_loads=paid)

    new = _post(conn, "load", f"{len(rows)} loads at the issuer's desks", now, rows, found, gap_seconds, lines,
                transfer_loads)
    _mark_posted(conn, loads, verified)
    return new


def _post_cash_outs(conn: Connection, card_macs: CardMacs, now: int, gap_seconds: int) -> int:
    """Cash-outs at card return: Dr card float / Cr cash, the balance each card paid out."""
    found: list[Anomaly] = []
    rows, verified = [], []
    for cash_out_id, raw in _unposted(conn, cash_outs):
        if (row := _verified(bytes(raw), RecordType.CASH_OUT, card_macs, found)) is not None:
            rows.append(row)
            verified.append(cash_out_id)

    def lines(new: list[tuple[Any, ...]]) -> list[tuple[str, int]]:
        paid = sum(r[AMOUNT] for r in new)
        return [(ledger.CARD_FLOAT, paid), (ledger.CASH, -paid)]

    new = _post(conn, "cash_out", f"{len(rows)} cards returned at the issuer's desks: their balance paid out", now,
                rows, found, gap_seconds, lines)
    _mark_posted(conn, cash_outs, verified)
    return new


def _post_deposits(conn: Connection, now: int) -> None:
    """Deposits taken (Dr cash / Cr card deposits) and refunded (the reverse), each once, one entry a kind."""
    d = card_deposits.c
    for move, sign, description in ((DepositMove.TAKEN, 1, "card deposits taken at issue"),
                                    (DepositMove.REFUNDED, -1, "card deposits refunded at card return")):
        pending = conn.execute(select(d.id, d.amount).where(d.move == move, d.entry_id.is_(None))).all()
        if not pending:
            continue
        total = sum(int(a) for _, a in pending)
        entry_id = ledger.open_entry(conn, "deposit", f"{len(pending)} {description}", ledger.entry_day(now))
        ledger.post(conn, entry_id, [(ledger.CASH, sign * total), (ledger.CARD_DEPOSITS, -sign * total)])
        conn.execute(update(card_deposits).where(d.id.in_([i for i, _ in pending])).values(entry_id=entry_id))
