"""Importing several small batches in one transaction: a group commit.

A city network sends thousands of small batches a day, each touching a few hundred cards. Imported one
transaction each, a batch of 400 records cost ten times what storing its rows costs: the commit (on
SQLite it writes every index page the batch dirtied, and records of random cards dirty one page each),
the cards' states read and written back, the records version counted, a dozen statements. A group
pays these once for all its batches: the card states of all its cards are read in one query, walked
batch after batch in file order and written once, the version is counted once, and one commit makes
the group durable.

Each batch keeps what makes it a batch: its own ``batches`` row, journal entry, sales, anomalies and
holders' events, and its own verdict. A batch is verified whole before the transaction begins, and a
batch whose header does not fit what is stored is refused before anything of it is written
(``importer.open_batch_rows``), so one bad batch is quarantined without undoing the others. If anything
else fails, the whole group rolls back and its files are still where they were: importing them again
is idempotent, as for a single batch.

On PostgreSQL a group of a few cards takes the import lock shared and each batch's own locks without
waiting (processing.locks): a batch another importer holds is left out of the group and given back to
the caller, who imports it alone and waits for it then. Such a group never waits for a batch's lock, so
two cannot deadlock, whatever order their cards come in. A group of more cards than ``CARD_LOCKS_UP_TO``
(the lock table is small and shared) takes the import lock exclusively: importers then take turns at
storing, while each verifies its next group, which is done before the transaction begins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from processing.anomalies import Anomaly
from processing.batch_rows import OpenedBatch
from processing.batchfile import BatchFile, BatchRejected, open_batch
from processing.importer import (
    BatchLookups,
    BookWrites,
    ImportOptions,
    ImportResult,
    ImportStatus,
    Posted,
    book,
    card_cache,
    file_digest,
    gc_paused,
    held_anomalies,
    match_loads,
    open_batch_rows,
    quarantine,
    take_stored,
)
from processing.keys import CardMacs, ProcessingKeys
from processing.locks import CARD_LOCKS_UP_TO, BatchLocks, group_transaction, try_lock_batch
from processing.points_replay import replay_cards
from processing.reconcile import Reconciler, open_gaps
from processing.rows import BATCH_ID, CARD_NUMBER, ROW_FIELDS, Row
from processing.store import RecordStore, Stored
from processing.verify import BatchVerifier, HeldRecord, check_envelope
from processing.worker import card_macs as worker_card_macs


@dataclass
class GroupOutcome:
    """What became of a group's files: each one's result, in the order given, except those another
    importer holds (PostgreSQL), which are given back untouched to be imported alone."""

    results: list[tuple[Path, ImportResult]]
    busy: list[Path]


@dataclass
class VerifiedBatch:
    """A batch file read and verified whole, with no database (here or in the verifying worker): its rows
    to store, or why it is refused; then what its import made of it."""

    path: Path
    result: ImportResult
    digest: str = ""
    batch: BatchFile | None = None  # None: the file could not be read (nothing stored, nothing quarantined)
    rows: list[Row] = field(default_factory=list)
    held: list[HeldRecord] = field(default_factory=list)
    refusal: tuple[str, str, int | None] | None = None  # (check, detail, record): ``BatchRejected``'s
    cards: set[str] = field(default_factory=set)
    opened: OpenedBatch | None = None
    posted: Posted = field(default_factory=Posted)
    found: list[Anomaly] = field(default_factory=list)

    def refuse(self, e: BatchRejected) -> None:
        self.refusal = (e.check, e.detail, e.record)


def verify_batches(paths: Sequence[Path], keys: ProcessingKeys, card_macs: CardMacs | None,
                   chunk_records: int) -> list[VerifiedBatch]:
    """Read and verify each file whole; ``card_macs`` None in the verifying worker, which keeps its own."""
    macs = card_macs or worker_card_macs(keys)
    return [_verified(Path(path), keys, macs, chunk_records) for path in paths]


def import_group(engine: Engine, members: list[VerifiedBatch], options: ImportOptions) -> GroupOutcome:
    """Import these verified batches (each small: below ``options.parallel_min_records``) in one transaction.

    Never raises for a bad batch: it is rejected and quarantined as ``import_batch`` would. Raises for what
    stops the whole group (a database that cannot be written), with nothing of it stored."""
    busy: list[Path] = []
    cache = card_cache(engine)
    now = int(options.now())
    ready = [m for m in members if m.batch is not None and m.refusal is None]
    alone = len(set().union(*(m.cards for m in ready))) > CARD_LOCKS_UP_TO
    with group_transaction(engine, alone) as conn, gc_paused():
        store = RecordStore(conn, versioned=False)  # counted once, by the cache (CardCache.stage)
        held: list[VerifiedBatch] = []
        for m in ready:
            assert m.batch is not None
            locks = BatchLocks(m.digest, m.batch.header.terminal_id, frozenset(m.cards))
            if try_lock_batch(conn, locks, alone):
                held.append(m)
            else:
                busy.append(m.path)
        # Everything is read once the batches are locked: another importer may have committed one of these files,
        # or another batch of these cards, just before. The cards' states read now stay theirs to the commit.
        mine = sorted(set().union(*(m.cards for m in held)))
        rec = Reconciler(conn, now=now, gap_seconds=options.gap_seconds, cached=cache.take(conn))
        rec.prepare_cards(mine)
        lookups = BatchLookups.read(conn, [m.digest for m in held],
                                    [m.batch.header.terminal_id for m in held if m.batch is not None], mine)
        booked: list[VerifiedBatch] = []
        opened = open_batch_rows(conn, [(m.batch, m.digest, m.result) for m in held if m.batch is not None], options,
                                 lookups)
        for m, verdict in zip(held, opened, strict=True):
            if isinstance(verdict, BatchRejected):
                m.refuse(verdict)
            elif verdict is not None:
                m.opened = verdict
                m.rows = _with_ids(m.rows, verdict)
                booked.append(m)
        stored = store.store_entries([(m.rows, m.opened.entry_id) for m in booked if m.opened is not None])
        for m, outcome in zip(booked, stored, strict=True):
            _walk(m, outcome, rec)
            match_loads(conn, m.posted, m.found)
        if booked:  # the cards walked again from the database at the end speak with the last batch
            rec.found = booked[-1].found
        touched = rec.finish()
        if booked:  # what the cards say as a whole is told with the group's last batch, as a serial import would
            booked[-1].found.extend(replay_cards(conn, touched, options.programs))
            booked[-1].found.extend(open_gaps(conn, now, options.gap_seconds))
        moved = set(touched)
        writes = BookWrites()
        for m in booked:
            assert m.batch is not None and m.opened is not None
            book(conn, m.batch, m.opened, m.posted, m.found, sorted(m.cards & moved), options, m.result, lookups,
                 writes)
        writes.write(conn)
        # The group's cards were read under their locks and written here; if another importer committed since
        # (``stage`` sees it), the other cached states may be older than the database's, and only these are kept.
        cache.stage(conn, rec.cards, mine, rec.kept)
    cache.committed()
    for m in members:
        if m.refusal is not None:
            quarantine(engine, m.path, m.digest, m.batch.header if m.batch is not None else None,
                       BatchRejected(*m.refusal), options, m.result)
    return GroupOutcome([(m.path, m.result) for m in members if m.path not in busy], busy)


def _verified(path: Path, keys: ProcessingKeys, card_macs: CardMacs, chunk_records: int) -> VerifiedBatch:
    m = VerifiedBatch(path, ImportResult(str(path), ImportStatus.REJECTED))
    try:
        m.digest = file_digest(path)
    except OSError as e:  # as import_batch: a file that cannot be read is neither stored nor quarantined
        m.result.reason = f"file: cannot read {path}: {e.strerror}"
        return m
    try:
        m.batch = batch = open_batch(path)
        h = batch.header
        m.result.terminal_id, m.result.batch_seq, m.result.records = h.terminal_id, h.batch_seq, h.record_count
        verifier = BatchVerifier(batch, check_envelope(batch, keys), card_macs)
        for start, data in batch.chunks(chunk_records):
            m.rows += verifier.chunk(start, data)
        verifier.finish()
    except BatchRejected as e:
        m.refuse(e)
        return m
    m.held = verifier.held
    m.cards = {r[CARD_NUMBER] for r in m.rows} | {r.card_number for r in m.held}
    return m


assert ROW_FIELDS[BATCH_ID:] == ("batch_id", "entry_id", "raw")  # what ``_with_ids`` unpacks


def _with_ids(rows: list[Row], opened: OpenedBatch) -> list[Row]:
    """The rows of a batch verified before it had its row and journal entry, carrying their ids (unpacked by
    name: twice as fast as slicing, and this runs for every record of a group)."""
    b, e = opened.batch_id, opened.entry_id
    return [(number, counter, kind, amount, terminal, seq, day, merchant, b, e, raw)
            for number, counter, kind, amount, terminal, seq, day, merchant, _, _, raw in rows]


def _walk(m: VerifiedBatch, stored: Stored, rec: Reconciler) -> None:
    """Walk a member's new records after the members before it, and tell what its header and held records say."""
    assert m.batch is not None and m.opened is not None
    rec.next_batch(m.cards)
    rec.found = m.found
    m.found.extend(m.opened.found)
    take_stored(m.rows, stored, rec, m.posted, m.result)
    m.found.extend(held_anomalies(m.held, m.batch.header.terminal_id))
    m.result.held = len(m.held)
