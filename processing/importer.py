"""Importing batch files: verify, store once, reconcile, post — or reject whole into quarantine.

One batch is one database transaction. Entries are streamed in chunks: each chunk is
verified (chain MACs, certificates), stored through the driver's bulk path, and its new
records walked by the reconciler; the trailer is checked at the end. Any failure rolls
the whole transaction back, so nothing of a bad batch is posted, and the file is
copied to the quarantine folder with the reason (record and check) in ``batches``.
The exception is a record whose card certificate alone fails in a batch whose chain and
batch MAC verify: it is held (a ``bad_certificate`` anomaly naming the card, with the
record's bytes), and the rest of the batch is posted (docs/processing.md, "Held records").

On PostgreSQL several ``smartpurse process`` runs import side by side: a batch locks its file,
its terminal and its cards (processing.locks), so two batches wait for each other only where
they share a card or a terminal. On SQLite they take turns at its write lock. Either way the
unique keys of ``records`` make a record posted once even if those locks were bypassed.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from processing import anomalies as anomaly_store
from processing import batch_rows, card_days, ledger, lifeline
from processing.anomalies import Anomaly, AnomalyKind, clone_anomaly, record_evidence
from processing.batch_rows import OpenedBatch
from processing.batchfile import BatchFile, BatchRejected, open_batch
from processing.columns import CANCEL, LOAD, PURCHASE, EntryColumns, distinct_card_numbers
from processing.desk_posting import post_desk_records
from processing.holders.events import batch_events, card_holders
from processing.keys import CardMacs, ProcessingKeys
from processing.locks import BatchLocks, import_transaction
from processing.points_days import merge_moves
from processing.points_replay import replay_cards
from processing.reconcile import CardCache, Reconciler, open_gaps
from processing.rows import AMOUNT, RECORD_TYPE, Row, StoredRow
from processing.sales import sales_by_day, sales_rows
from processing.schema.loads import loads
from processing.schema.processing import batches, journal_entries, postings, sales
from processing.schema.registry import terminals
from processing.store import RecordStore, Stored
from processing.verify import BatchVerifier, HeldRecord, check_envelope
from processing.worker import Verdict, WalkJob, verify_and_walk
from purse.batch import BATCH_MAGIC, ENTRY_SIZE
from purse.errors import SmartpurseError
from purse.files import PRIVATE, copy_atomic

DEFAULT_GAP_SECONDS = 72 * 3600
T = TypeVar("T")


@dataclass
class ImportOptions:
    quarantine_dir: Path
    gap_seconds: int = DEFAULT_GAP_SECONDS
    now: Callable[[], float] = time.time
    chunk_records: int = 32_768
    programs: dict[int, Any] = field(default_factory=dict)  # program id -> purse.loyalty.Program
    parallel_min_records: int = 50_000  # from this size a second process verifies the MACs
    # a ``process`` run imports smaller batches in groups of about this many records, a transaction each
    # (processing.group_import); 0 imports every batch in its own transaction. A group pays a commit, a read
    # and a write of each of its cards' states, and a claim: 100,000 records (250 batches of 400) import a day
    # of a million cards a fifth faster than 20,000, in about 250 MiB more (docs/performance.md, "Ninth round")
    group_records: int = 100_000
    # ... and walks the card chains too when the batch has at least this many records per card:
    # sending a card's chain state to the worker and back costs about three records' walk
    worker_walk_records_per_card: float = 3.0
    post_desk: bool = True  # post the desk's new records first (``process`` does it once per run instead)
    low_balance: int = 0  # minor units: a holder's card falling below it is an event ([notify] low_balance)


class ImportStatus(StrEnum):
    """What became of one batch file."""

    ACCEPTED = "accepted"  # verified and posted (possibly with anomalies)
    DUPLICATE = "duplicate"  # this exact file was accepted before: nothing changed
    REJECTED = "rejected"  # failed verification: quarantined, nothing of it posted


@dataclass
class ImportResult:
    """One batch's outcome; ``as_dict`` is its JSON shape (``smartpurse --json process``)."""

    file: str
    status: ImportStatus
    batch_id: int | None = None
    terminal_id: int | None = None
    batch_seq: int | None = None
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    held: int = 0  # records whose card certificate does not verify: flagged, not posted
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    quarantine: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is imported.

    An import allocates millions of tuples (one row per record, one walk state per card) that
    all die by reference counting; the cyclic collector would scan them again and again and
    cost 10-15 % of the import. The collector is back on as soon as the batch is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Rejected(Exception):
    def __init__(self, error: BatchRejected, header: Any) -> None:
        self.error, self.header = error, header


class _HoldsRecords(Exception):
    """The worker found records to hold in a batch the importer stored whole: store it again, serially."""


def import_batch(engine: Engine, path: Path, keys: ProcessingKeys, options: ImportOptions,
                 card_macs: CardMacs | None = None, progress: Callable[[int], None] | None = None,
                 wait: bool = True) -> ImportResult:
    """Import one batch file; never raises for a bad batch (it is rejected and quarantined).

    ``wait=False``: raise ``BatchBusy``, with nothing written, when another importer holds the batch's
    terminal or one of its cards (PostgreSQL), instead of waiting for it."""
    path = Path(path)
    result = ImportResult(str(path), ImportStatus.REJECTED)
    try:
        digest = file_digest(path)
    except OSError as e:
        result.reason = f"file: cannot read {path}: {e.strerror}"
        return result
    header = None
    try:
        batch = open_batch(path)
        header = batch.header
        result.terminal_id, result.batch_seq, result.records = header.terminal_id, header.batch_seq, \
            header.record_count
        log_key = check_envelope(batch, keys)
        if options.post_desk:  # its own transaction: the desk's records stand even if this batch is rejected
            with import_transaction(engine) as conn:
                post_desk_records(conn, card_macs or CardMacs(keys), now=int(options.now()),
                                  gap_seconds=options.gap_seconds)
        cache = card_cache(engine)
        macs = card_macs or CardMacs(keys)
        locks = _batch_locks(engine, batch, digest, options)

        def attempt(opts: ImportOptions, into: ImportResult, advance: Callable[[int], None] | None) -> None:
            with import_transaction(engine, locks, wait) as conn, gc_paused():
                try:
                    _import(conn, batch, digest, log_key, macs, opts, into, advance, cache)
                except BatchRejected as e:
                    raise _Rejected(e, header) from None

        try:
            attempt(options, result, progress)
        except _HoldsRecords:
            # Rare (a damaged or forged card in a large batch): rolled back, imported again by the serial
            # path, which verifies before it stores and so leaves the held records out from the start.
            result = ImportResult(str(path), ImportStatus.REJECTED, terminal_id=header.terminal_id,
                                  batch_seq=header.batch_seq, records=header.record_count)
            attempt(replace(options, parallel_min_records=header.record_count + 1), result, None)
        cache.committed()
        return result
    except BatchRejected as e:
        quarantine(engine, path, digest, header, e, options, result)
    except _Rejected as e:
        quarantine(engine, path, digest, e.header, e.error, options, result)
    return result


def _batch_locks(engine: Engine, batch: BatchFile, digest: str, options: ImportOptions) -> BatchLocks | None:
    """What this batch locks to be imported alongside others (PostgreSQL), or None to run alone: SQLite,
    and a batch large enough to take the verifying worker (its cards are not even counted)."""
    if engine.dialect.name != "postgresql" or batch.header.record_count >= options.parallel_min_records:
        return None
    numbers: set[str] = set()
    for _, data in batch.chunks(options.chunk_records):
        numbers.update(distinct_card_numbers(data))
    return BatchLocks(digest, batch.header.terminal_id, frozenset(numbers))


def _import(conn: Connection, batch: BatchFile, digest: str, log_key: bytes, card_macs: CardMacs,
            options: ImportOptions, result: ImportResult, progress: Callable[[int], None] | None,
            cache: CardCache) -> None:
    h = batch.header
    lookups = BatchLookups.read(conn, [digest], [h.terminal_id])
    opened = open_batch_row(conn, batch, digest, options, result, lookups)
    if opened is None:
        return
    now = int(options.now())
    store = RecordStore(conn, versioned=False)  # counted at the end, by the cache (CardCache.stage)
    rec = Reconciler(conn, now=now, gap_seconds=options.gap_seconds, cached=cache.take(conn))
    rec.found.extend(opened.found)
    if h.record_count >= options.parallel_min_records:
        posted = _post_in_parallel(batch, card_macs, options, store, rec, result, opened.batch_id, opened.entry_id,
                                   progress)
    else:
        posted = Posted()
        verifier = BatchVerifier(batch, log_key, card_macs, opened.batch_id, opened.entry_id)
        for start, data in batch.chunks(options.chunk_records):
            post_rows(verifier.chunk(start, data), store, rec, posted, result, opened.entry_id)
            if progress is not None:
                progress(len(data) // ENTRY_SIZE)
        verifier.finish()
        rec.found.extend(held_anomalies(verifier.held, h.terminal_id))
        result.held = len(verifier.held)
    match_loads(conn, posted, rec.found)
    touched = rec.finish()
    rec.found.extend(replay_cards(conn, touched, options.programs))
    rec.found.extend(open_gaps(conn, now, options.gap_seconds))
    writes = BookWrites()
    book(conn, batch, opened, posted, rec.found, touched, options, result, lookups, writes)
    writes.write(conn)
    cache.stage(conn, rec.cards, rec.heads.keys(), rec.kept)


@dataclass
class BatchLookups:
    """What opening and booking batches look up, read once for all the batches of one transaction: a group's
    dozens of small batches cost one query each here instead of one per batch (on PostgreSQL a round trip
    each, the larger part of a 400-record batch's own cost)."""

    imported: dict[str, Any]  # digest -> the ``batches`` row stored under it (id, status, imported_at)
    merchants: dict[int, int]  # terminal -> its merchant, for the terminals registered
    holders: dict[str, int] | None  # card -> its holder, for the cards that have one; None: read when booking
    accounts: dict[str, int] = field(default_factory=dict)  # the ledger accounts' ids (``ledger.account_id``)

    @classmethod
    def read(cls, conn: Connection, digests: Sequence[str], terminal_ids: Sequence[int],
             cards: Sequence[str] | None = None) -> BatchLookups:
        b, t = batches.c, terminals.c
        imported = {row.sha256: row for row in conn.execute(
            select(b.sha256, b.id, b.status, b.imported_at).where(b.sha256.in_(sorted(set(digests)))))}
        merchants = {int(terminal): int(merchant) for terminal, merchant in conn.execute(
            select(t.terminal_id, t.merchant_id).where(t.terminal_id.in_(sorted(set(terminal_ids)))))}
        return cls(imported, merchants, card_holders(conn, cards) if cards is not None else None)

    def holders_of(self, conn: Connection, touched: Sequence[str]) -> dict[str, int]:
        if self.holders is None:
            return card_holders(conn, touched)
        return {n: self.holders[n] for n in touched if n in self.holders}


def open_batch_row(conn: Connection, batch: BatchFile, digest: str, options: ImportOptions,
                   result: ImportResult, lookups: BatchLookups) -> OpenedBatch | None:
    """The batch's ``batches`` row and journal entry; None for a file accepted before (``result`` says so).

    Raises ``BatchRejected`` (an unknown terminal, a broken chain between batches) before writing anything."""
    opened = open_batch_rows(conn, [(batch, digest, result)], options, lookups)[0]
    if isinstance(opened, BatchRejected):
        raise opened
    return opened


def open_batch_rows(conn: Connection, files: Sequence[tuple[BatchFile, str, ImportResult]], options: ImportOptions,
                    lookups: BatchLookups) -> list[OpenedBatch | BatchRejected | None]:
    """``open_batch_row`` of each file, in order, in one statement each for all (processing.batch_rows): its
    opened row, the ``BatchRejected`` that refuses it (nothing of it written, so the others of a group go
    on), or None for a file accepted before (its ``result`` says so). The rows opened join ``lookups``, so a
    copy of a file later among them is found a duplicate."""
    verdicts = batch_rows.open_batch_rows(conn, [(batch, digest) for batch, digest, _ in files], lookups.imported,
                                          lookups.merchants, _stamp(options.now()))
    out: list[OpenedBatch | BatchRejected | None] = []
    for (batch, _, result), verdict in zip(files, verdicts, strict=True):
        if isinstance(verdict, OpenedBatch | BatchRejected):
            out.append(verdict)
            continue
        result.status, result.batch_id = ImportStatus.DUPLICATE, verdict.id
        result.reason = f"already imported as batch {verdict.id} on {verdict.imported_at:%Y-%m-%d %H:%M}: " \
                        "nothing changed"
        result.duplicates = batch.header.record_count
        out.append(None)
    return out


def match_loads(conn: Connection, posted: Posted, found: list[Anomaly]) -> None:
    """Match each load in a batch with the desk's record of it (not yet ingested); the rest are anomalies."""
    lo = loads.c
    for row in posted.load_rows:
        r = StoredRow._make(row)
        desk = conn.execute(select(lo.record, lo.transfer_id).where(lo.card_number == r.card_number,
                                                                     lo.counter == r.counter)).first()
        if desk is not None and bytes(desk.record) == r.raw:
            if desk.transfer_id is None:
                posted.matched_loads += r.amount
            else:
                posted.matched_transfers += r.amount
            continue
        found.append(Anomaly(AnomalyKind.UNMATCHED_LOAD, f"unmatched_load:{r.card_number}:{r.counter}",
                             f"card {r.card_number} counter {r.counter}: load of {r.amount} not recorded by any "
                             "load desk", {"record": record_evidence(r)}, r.card_number, r.counter, r.terminal_id))


def book(conn: Connection, batch: BatchFile, opened: OpenedBatch, posted: Posted, found: list[Anomaly],
         touched: Sequence[str], options: ImportOptions, result: ImportResult, lookups: BatchLookups,
         writes: BookWrites) -> None:
    """What a batch's new records add to the books once its cards' accounts are written: its sales per
    day, its journal entry's postings (none: the entry goes), its counts, its anomalies, its holders' events.
    The rows every batch has go to ``writes``, which the caller writes once for all its batches."""
    h = batch.header
    writes.sales += sales_rows(opened.batch_id, h.merchant_id, h.terminal_id, posted.days)
    writes.card_days |= posted.card_days.pairs()
    unmatched = posted.loads - posted.matched_loads - posted.matched_transfers
    writes.postings += ledger.posting_rows(
        conn, opened.entry_id, ledger.batch_lines(h.merchant_id, posted.purchases, posted.cancellations,
                                                  posted.matched_loads, unmatched,
                                                  transfer_loads=posted.matched_transfers), lookups.accounts)
    if not result.accepted:
        writes.empty_entries.append(opened.entry_id)
    writes.counts.append({"b_id": opened.batch_id, "n_accepted": result.accepted, "n_duplicates": result.duplicates})
    anomaly_store.save(conn, found, opened.batch_id, now=options.now())
    if result.accepted:
        batch_events(conn, opened.batch_id, lookups.holders_of(conn, touched), int(options.now()),
                     options.low_balance)
    result.status, result.batch_id = ImportStatus.ACCEPTED, opened.batch_id
    result.anomalies = [a.as_dict() for a in found]


@dataclass
class BookWrites:
    """The rows ``book`` makes for each batch, written in one statement each for all the batches of a
    transaction (a group's dozens: a round trip each saved per batch on PostgreSQL). One per transaction,
    written once at its end."""

    sales: list[dict[str, int]] = field(default_factory=list)
    postings: list[dict[str, int]] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)  # each batch's accepted and duplicate records
    empty_entries: list[int] = field(default_factory=list)  # the entries of batches that added no record
    card_days: set[tuple[int, str]] = field(default_factory=set)  # (day, card) of their uses (processing.card_days)

    def write(self, conn: Connection) -> None:
        b, je = batches.c, journal_entries.c
        if self.sales:
            conn.execute(insert(sales), self.sales)
        if self.postings:
            conn.execute(insert(postings), self.postings)
        if self.empty_entries:
            conn.execute(delete(journal_entries).where(je.id.in_(self.empty_entries)))
        if self.card_days:
            card_days.write(conn, self.card_days)
        if self.counts:
            conn.execute(update(batches).where(b.id == bindparam("b_id"))
                         .values(accepted=bindparam("n_accepted"), duplicates=bindparam("n_duplicates")), self.counts)


@dataclass
class Posted:
    """What a batch's new records add up to: the ledger lines, the loads to match, the sales per day."""

    purchases: int = 0
    cancellations: int = 0
    loads: int = 0
    load_rows: list[Row] = field(default_factory=list)
    matched_loads: int = 0  # of ``loads``, those the desk recorded (``match_loads``) ...
    matched_transfers: int = 0  # ... and those that paid a replacement transfer
    days: dict[int, list[int]] = field(default_factory=dict)  # day -> purchases, total, cancels, total
    card_days: card_days.CardDays = field(default_factory=card_days.CardDays)  # its cards' days of use

    def add_rows(self, rows: Sequence[Row]) -> None:
        for r in rows:
            kind = r[RECORD_TYPE]
            if kind == PURCHASE:
                self.purchases += r[AMOUNT]
            elif kind == CANCEL:
                self.cancellations += r[AMOUNT]
            elif kind == LOAD:
                self.loads += r[AMOUNT]
                self.load_rows.append(r)
        sales_by_day(rows, into=self.days)
        self.card_days.add_rows(rows)

    def add_columns(self, cols: EntryColumns) -> None:
        purchases, cancellations, loads_total = cols.totals()
        self.purchases += purchases
        self.cancellations += cancellations
        if loads_total:
            self.loads += loads_total
            self.load_rows.extend(cols.load_rows())
        for day, sums in cols.sales_by_day().items():
            mine = self.days.setdefault(day, [0, 0, 0, 0])
            for i, v in enumerate(sums):
                mine[i] += v
        self.card_days.add_columns(cols)


def post_rows(rows: Sequence[Row], store: RecordStore, rec: Reconciler, posted: Posted, result: ImportResult,
              entry_id: int) -> None:
    """Store a chunk given as rows, walk what is new, add it up."""
    rec.prepare(rows, check=False)
    take_stored(rows, store.store(rows, entry_id), rec, posted, result)


def take_stored(rows: Sequence[Row], stored: Stored, rec: Reconciler, posted: Posted, result: ImportResult) -> None:
    """Walk what storing ``rows`` found new (their cards prepared), tell the clones, add it up."""
    result.duplicates += stored.duplicates
    all_new = len(stored.new) == len(rows)  # the usual case: order checks ride along the walk
    if not all_new:
        rec.check_order(rows)
    for received, other in stored.conflicts:
        rec.found.append(clone_anomaly(received, other))
    rec.walk(stored.new, check_order=all_new)
    posted.add_rows(stored.new)
    result.accepted += len(stored.new)


def _post_in_parallel(batch: BatchFile, card_macs: CardMacs, options: ImportOptions, store: RecordStore,
                      rec: Reconciler, result: ImportResult, batch_id: int, entry_id: int,
                      progress: Callable[[int], None] | None) -> Posted:
    """A large batch: a worker verifies every MAC (processing.worker) while this process stores it,
    PostgreSQL as one COPY stream of prebuilt chunks, SQLite binding each chunk's rows.

    The card chains are walked as if every record were new (the usual case): by the worker when
    the batch has several records per card, here otherwise (sending a card's state to the worker
    and back costs about three records' walk). The walk is adopted when storage confirms that
    every record was new; otherwise (records sent before, clones) the card states are read again
    and the walk is done over what this batch stored, as for a small batch."""
    h = batch.header
    numbers: set[str] = set()
    for _, data in batch.chunks(options.chunk_records):
        numbers.update(distinct_card_numbers(data))
    rec.prepare_cards(sorted(numbers))
    walk_here = h.record_count < len(numbers) * options.worker_walk_records_per_card
    job = None if walk_here else WalkJob({n: rec.cards[n] for n in numbers}, rec.hotlist, batch_id, entry_id)
    worker = submit_to_worker(verify_and_walk, str(batch.path), card_macs.keys, options.chunk_records, job)
    found_before, moved_before = len(rec.found), {k: list(v) for k, v in rec.points_moved.items()}
    posted = Posted()

    def chunks(first: bool) -> Iterator[EntryColumns]:
        for _, data in batch.chunks(options.chunk_records):
            if worker.done():
                _raise_if_rejected(_verdict(worker, batch))
            cols = EntryColumns(data, h.terminal_id, h.merchant_id, batch_id, entry_id)
            yield cols
            if first:  # while the database stores this chunk; undone below unless every record was new
                posted.add_columns(cols)
                if walk_here:
                    rec.walk_columns(cols)
                if progress is not None:
                    progress(len(cols))

    all_new = store.insert_batch(chunks)
    verdict = _verdict(worker, batch)
    _raise_if_rejected(verdict)
    if verdict.held:
        raise _HoldsRecords()
    if all_new:
        rec.cards.update(verdict.cards)
        rec.found.extend(verdict.found)
        merge_moves(rec.points_moved, verdict.points_moved)
        result.accepted += h.record_count
        return posted
    del rec.found[found_before:]
    rec.points_moved = moved_before
    rec.forget(numbers)  # the database still holds every card's state from before this batch
    rec.prepare_cards(sorted(numbers))
    posted = Posted()
    for _, data in batch.chunks(options.chunk_records):
        cols = EntryColumns(data, h.terminal_id, h.merchant_id, batch_id, entry_id)
        stored = store.classify(cols.rows, entry_id)
        rec.check_order(cols.rows)
        result.duplicates += stored.duplicates
        for received, other in stored.conflicts:
            rec.found.append(clone_anomaly(received, other))
        rec.walk(stored.new)
        posted.add_rows(stored.new)
        result.accepted += len(stored.new)
    return posted


_EXECUTOR: ProcessPoolExecutor | None = None
_CARD_CACHES: weakref.WeakKeyDictionary[Engine, CardCache] = weakref.WeakKeyDictionary()


def card_cache(engine: Engine) -> CardCache:
    """One card-state cache per database engine, for the batches of one run (``CardCache``)."""
    cache = _CARD_CACHES.get(engine)
    if cache is None:
        cache = _CARD_CACHES[engine] = CardCache()
    return cache


def submit_to_worker(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Run ``fn`` in the one verifying worker process of this ``smartpurse process`` run, started on the
    first large batch (again if it died since). forkserver, not fork: the worker must not inherit the
    open database connection."""
    global _EXECUTOR
    for _ in range(2):
        if _EXECUTOR is None:
            _EXECUTOR = ProcessPoolExecutor(max_workers=1, mp_context=lifeline.forkserver_context(),
                                            initializer=lifeline.arm)  # helpers die with this process
        try:
            return _EXECUTOR.submit(fn, *args)
        except BrokenProcessPool:  # the worker died between two batches
            _EXECUTOR.shutdown(wait=False)
            _EXECUTOR = None
    raise WorkerStopped("cannot start the verifying worker process")


def start_worker() -> bool:
    """Start the verifying worker if it is not running; whether it was running already. Starting one takes
    most of a second (a forkserver, an interpreter, the verifying modules), while ``submit_to_worker`` returns
    at once: the caller verifies its first group itself meanwhile instead of waiting (processing.run)."""
    if _EXECUTOR is not None:
        return True
    submit_to_worker(os.getpid)
    return False


class WorkerStopped(SmartpurseError):
    """The verifying process died (killed, out of memory): the batch is neither accepted nor rejected."""


def _verdict(worker: Future[Verdict], batch: BatchFile) -> Verdict:
    """The worker's verdict; if the worker process died, a new one is started for the next batch and this
    batch fails as a whole (its transaction rolls back: nothing of it is posted, nothing is quarantined)."""
    verdict = worker_answer(worker)
    if verdict is None:
        raise WorkerStopped(f"{batch.path}: the verifying worker process stopped (killed or out of memory); "
                            "nothing of this batch was posted: process it again")
    return verdict


def worker_answer(job: Future[T]) -> T | None:
    """What the worker answered, or None if its process died (killed, out of memory): a new one is
    started for the next job."""
    global _EXECUTOR
    try:
        return job.result()
    except BrokenProcessPool:
        if _EXECUTOR is not None:
            _EXECUTOR.shutdown(wait=False, cancel_futures=True)
        _EXECUTOR = None
        return None


def _raise_if_rejected(verdict: Verdict) -> None:
    if verdict.rejected is not None:
        raise BatchRejected(*verdict.rejected)


def held_anomalies(held: Sequence[HeldRecord], terminal_id: int) -> list[Anomaly]:
    """One ``bad_certificate`` anomaly per held record, naming its card and carrying its bytes."""
    return [Anomaly(AnomalyKind.BAD_CERTIFICATE, f"badcert:{r.card_number}:{r.counter}:{r.raw.hex()[-16:]}",
                    f"record {r.index}: {r.reason()}: held, not posted",
                    {"record_index": r.index, "record_type": r.record_type, "amount": r.amount, "record": r.raw.hex()},
                    r.card_number, r.counter, terminal_id) for r in held]


def quarantine(engine: Engine, path: Path, digest: str, header: Any, error: BatchRejected,
                options: ImportOptions, result: ImportResult) -> None:
    """Keep the file (owner-only: a batch names cards) and the reason; nothing of the batch is posted.

    Only what is a batch file is kept: anything else given to ``process`` by mistake (a card image,
    the keystore) is refused without a copy, so no secret lands in the quarantine folder."""
    result.status, result.reason = ImportStatus.REJECTED, str(error)
    if _looks_like_a_batch(path):
        target = options.quarantine_dir / f"{digest[:16]}-{path.name}"
        if not target.exists():
            copy_atomic(path, target, mode=PRIVATE)
        result.quarantine = str(target)
    values = dict(sha256=digest, status="quarantined", file_name=path.name, reason=str(error),
                  quarantine_path=result.quarantine, imported_at=_stamp(options.now()))
    if header is not None:
        values.update(terminal_id=header.terminal_id, merchant_id=header.merchant_id, batch_seq=header.batch_seq,
                      first_index=header.first_index, record_count=header.record_count, created=header.created,
                      prev_chain_mac=header.prev_chain_mac, log_id=header.log_id)
    with import_transaction(engine) as conn:
        b = batches.c
        existing = conn.execute(select(b.id, b.status).where(b.sha256 == digest)).first()
        if existing is None:
            result.batch_id = conn.execute(insert(batches).values(**values).returning(b.id)).scalar_one()
        elif existing.status == "quarantined":
            conn.execute(update(batches).where(b.id == existing.id).values(**values))
            result.batch_id = existing.id


def _stamp(now: float) -> dt.datetime:
    """When a batch was imported, by the import's clock (``ImportOptions.now``: the wall clock, or a
    simulation's), so a replayed run such as the demo writes the same reports."""
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _looks_like_a_batch(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(BATCH_MAGIC)) == BATCH_MAGIC
    except OSError:
        return False
