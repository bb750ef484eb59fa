"""Opening batches: each one's ``batches`` row and journal entry, once its header fits what is stored.

A header fits when its terminal is registered to its merchant and it continues its terminal log's chain:
the previous batch of the same log ends where this one starts (chain MAC and record index), and the next,
if it came first, starts where this one ends. Batch numbers count within one log (the header's ``log_id``).

A group (processing.group_import) opens dozens of small batches in one transaction. Opened one at a time,
each cost three statements and a log lookup, a round trip each on PostgreSQL: 1.1 s of 7.4 s for a day of
250 batches of 400 records (docs/performance.md, "Seventh round"). Here the neighbours of every batch are
read in one query, the logs that came before a new log in another, the checks run in memory over what is
stored and what this call has opened so far, in the order given (so a batch may continue one opened just
before it, and a second copy of a file is its duplicate), and the rows and entries are written in one
statement each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, tuple_

from processing import ledger
from processing.anomalies import Anomaly, AnomalyKind
from processing.batchfile import BatchFile, BatchRejected, Header
from processing.schema import stored_utc
from processing.schema.processing import batches

_NEIGHBOURS = (batches.c.id, batches.c.sha256, batches.c.terminal_id, batches.c.log_id, batches.c.batch_seq,
               batches.c.first_index, batches.c.record_count, batches.c.prev_chain_mac, batches.c.final_chain_mac)


@dataclass
class OpenedBatch:
    """A batch's row and journal entry, written once its header fits what is stored."""

    batch_id: int
    entry_id: int
    found: list[Anomaly]  # what its header alone says (a batch number sent again, a new terminal log)


@dataclass
class _Row:
    """What the checks read of a ``batches`` row: one stored, or one this call opens (``id`` 0 until written)."""

    id: int
    sha256: str
    log_id: bytes
    batch_seq: int
    first_index: int
    record_count: int
    prev_chain_mac: bytes
    final_chain_mac: bytes
    order: tuple[Any, ...] = ()  # which of a terminal's batches came last (``_log_started``)
    status: str = "accepted"
    imported_at: dt.datetime | None = None


@dataclass
class _Opening:
    """A batch whose header fits: its row to write, and what its header told of the rows around it."""

    batch: BatchFile
    row: _Row
    stale_id: int | None  # the row of this file's earlier quarantine, replaced by this one
    reused: list[_Row] = field(default_factory=list)  # rows of the same batch number with other content
    previous_log: _Row | None = None  # the last batch of the terminal's previous log, when this one starts a log
    entry_id: int = 0


def open_batch_rows(conn: Connection, files: Sequence[tuple[BatchFile, str]], imported: dict[str, Any],
                    merchants: dict[int, int], imported_at: dt.datetime
                    ) -> list[OpenedBatch | BatchRejected | Any]:
    """Open each ``(batch, digest)`` in the order given; for each, its ``OpenedBatch``, the ``BatchRejected``
    that refuses it (nothing of it written), or, for a file accepted before, the accepted row (``id``,
    ``imported_at``) it duplicates.

    ``imported``: digest -> its ``batches`` row (``id``, ``status``, ``imported_at``), the files' own rows read
    before; each row opened joins it. ``merchants``: terminal -> its merchant, for the files' terminals."""
    headers = [batch.header for batch, _ in files]
    stored = _neighbours(conn, headers)
    logs = _last_of_each_log(conn, {h.terminal_id for h in headers if h.batch_seq == 1})
    verdicts: list[_Opening | BatchRejected | Any] = []
    for position, (batch, digest) in enumerate(files):
        h = batch.header
        existing = imported.get(digest)
        if existing is not None and existing.status == "accepted":
            verdicts.append(existing)
            continue
        row = _Row(0, digest, h.log_id, h.batch_seq, h.first_index, h.record_count, h.prev_chain_mac,
                   batch.trailer.final_chain_mac, (1, position), imported_at=imported_at)
        opening = _Opening(batch, row, None if existing is None else existing.id)
        try:
            _check_terminal(merchants.get(h.terminal_id), h)
            opening.reused = _check_continuity(h, row, stored)
        except BatchRejected as e:
            verdicts.append(e)
            continue
        if h.batch_seq == 1:
            opening.previous_log = _log_started(h, logs.get(h.terminal_id, ()))
        imported[digest] = row  # a copy of this file further on is its duplicate
        stored.setdefault((h.terminal_id, h.log_id, h.batch_seq), []).append(row)
        logs.setdefault(h.terminal_id, []).append(row)
        verdicts.append(opening)
    _write([v for v in verdicts if isinstance(v, _Opening)], conn)
    return [OpenedBatch(v.row.id, v.entry_id, _told(v)) if isinstance(v, _Opening) else v for v in verdicts]


def _neighbours(conn: Connection, headers: Sequence[Header]) -> dict[tuple[int, bytes, int], list[_Row]]:
    """The accepted rows of each header's log numbered one below, the same as, or one above it."""
    wanted = sorted({(h.terminal_id, seq) for h in headers for seq in (h.batch_seq - 1, h.batch_seq, h.batch_seq + 1)})
    logs = {h.log_id for h in headers}
    b = batches.c
    out: dict[tuple[int, bytes, int], list[_Row]] = {}
    for r in conn.execute(select(*_NEIGHBOURS).where(b.status == "accepted", tuple_(b.terminal_id, b.batch_seq)
                                                     .in_(wanted)).order_by(b.id)):
        log_id = bytes(r.log_id)
        if log_id in logs:
            out.setdefault((r.terminal_id, log_id, r.batch_seq), []).append(
                _Row(r.id, r.sha256, log_id, r.batch_seq, r.first_index, r.record_count, bytes(r.prev_chain_mac),
                     bytes(r.final_chain_mac)))
    return out


def _last_of_each_log(conn: Connection, terminals: Iterable[int]) -> dict[int, list[_Row]]:
    """Of each terminal, the accepted batch its each log sent last: where a log starting anew left the old."""
    wanted = sorted(terminals)
    if not wanted:
        return {}
    b = batches.c
    last = func.row_number().over(partition_by=(b.terminal_id, b.log_id),
                                  order_by=(b.imported_at.desc(), b.id.desc())).label("last")
    ranked = select(*_NEIGHBOURS, b.imported_at, last).where(b.status == "accepted",
                                                             b.terminal_id.in_(wanted)).subquery()
    out: dict[int, list[_Row]] = {}
    for r in conn.execute(select(ranked).where(ranked.c.last == 1)):
        moment = stored_utc(r.imported_at)
        out.setdefault(r.terminal_id, []).append(
            _Row(r.id, r.sha256, bytes(r.log_id), r.batch_seq, r.first_index, r.record_count,
                 bytes(r.prev_chain_mac), bytes(r.final_chain_mac), (0, moment, r.id)))
    return out


def _check_terminal(merchant: int | None, h: Header) -> None:
    """The header's terminal must be registered (``merchant``: its merchant, None if not), to its merchant."""
    if merchant is None:
        raise BatchRejected("terminal", f"terminal {h.terminal_id} is not registered")
    if merchant != h.merchant_id:
        raise BatchRejected("terminal", f"header names merchant {h.merchant_id}, terminal {h.terminal_id} "
                            f"belongs to merchant {merchant}")


def _check_continuity(h: Header, mine: _Row, stored: dict[tuple[int, bytes, int], list[_Row]]) -> list[_Row]:
    """The header must continue the previous batch's chain of the same log, and the next must continue ours;
    the rows of the same number with other content (a batch number sent again).

    A log that starts again begins at batch 1 from a zero chain MAC under a new identity: not a reuse of
    the old log's numbers (``_log_started``)."""
    if h.batch_seq == 1 and h.prev_chain_mac != bytes(8):
        raise BatchRejected("chain continuity", "the first batch of a terminal log must start the chain from zero")
    for row in stored.get((h.terminal_id, h.log_id, h.batch_seq - 1), ()):
        if row.final_chain_mac != h.prev_chain_mac or row.first_index + row.record_count != h.first_index:
            raise BatchRejected("chain continuity", f"header does not continue batch {row.batch_seq} of terminal "
                                f"{h.terminal_id} (previous chain MAC or record index differ)")
    for row in stored.get((h.terminal_id, h.log_id, h.batch_seq + 1), ()):
        if row.prev_chain_mac != mine.final_chain_mac or h.first_index + h.record_count != row.first_index:
            raise BatchRejected("chain continuity", f"batch {row.batch_seq} of terminal {h.terminal_id}, already "
                                "imported, does not continue this batch's chain")
    return [row for row in stored.get((h.terminal_id, h.log_id, h.batch_seq), ()) if row.sha256 != mine.sha256]


def _log_started(h: Header, last_of_logs: Iterable[_Row]) -> _Row | None:
    """A terminal log's first batch, from a terminal whose other logs sent batches before: their last batch."""
    others = [row for row in last_of_logs if row.log_id != h.log_id]
    return max(others, key=lambda row: row.order) if others else None


def _write(openings: list[_Opening], conn: Connection) -> None:
    """The rows (replacing the files' quarantined ones) and their journal entries, a statement each."""
    if not openings:
        return
    b = batches.c
    stale = [o.stale_id for o in openings if o.stale_id is not None]
    if stale:  # quarantined before: tried again (a terminal or key may have been added since)
        conn.execute(delete(batches).where(b.id.in_(stale)))
    rows = conn.execute(insert(batches).returning(b.id, sort_by_parameter_order=True), [
        {"sha256": o.row.sha256, "status": "accepted", "file_name": o.batch.path.name,
         "terminal_id": o.batch.header.terminal_id, "merchant_id": o.batch.header.merchant_id,
         "batch_seq": o.batch.header.batch_seq, "first_index": o.batch.header.first_index,
         "record_count": o.batch.header.record_count, "created": o.batch.header.created,
         "prev_chain_mac": o.batch.header.prev_chain_mac, "final_chain_mac": o.row.final_chain_mac,
         "log_id": o.batch.header.log_id, "imported_at": o.row.imported_at} for o in openings]).all()
    for o, (batch_id,) in zip(openings, rows, strict=True):
        o.row.id = batch_id
    entries = ledger.open_entries(conn, [
        ("batch", f"batch {o.batch.header.batch_seq} of terminal {o.batch.header.terminal_id}",
         ledger.entry_day(o.batch.header.created), o.row.id) for o in openings])
    for o, entry_id in zip(openings, entries, strict=True):
        o.entry_id = entry_id


def _told(o: _Opening) -> list[Anomaly]:
    """What the batch's header says of the rows around it, once every row has its id."""
    h = o.batch.header
    found = [Anomaly(
        AnomalyKind.BATCH_SEQ_REUSED, f"batchseq:{h.terminal_id}:{h.log_id.hex()}:{h.batch_seq}:{o.row.sha256}",
        f"terminal {h.terminal_id} batch {h.batch_seq} was already imported with different content",
        {"imported_batch_id": row.id, "imported_sha256": row.sha256, "imported_records": row.record_count,
         "this_sha256": o.row.sha256, "this_records": h.record_count}, terminal_id=h.terminal_id)
        for row in o.reused]
    last = o.previous_log
    if last is not None:
        found.append(Anomaly(
            AnomalyKind.TERMINAL_LOG_STARTED, f"logstart:{h.terminal_id}:{h.log_id.hex()}",
            f"terminal {h.terminal_id} started a new log ({h.log_id.hex()}); its previous log "
            f"({last.log_id.hex()}) last sent batch {last.batch_seq}: records it had not sent are "
            "lost unless its file is recovered and exported",
            {"log_id": h.log_id.hex(), "previous_log_id": last.log_id.hex(),
             "previous_last_batch": last.batch_seq}, terminal_id=h.terminal_id))
    return found
