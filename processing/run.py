"""One ``smartpurse process`` run: the desks' records, the batches, the replacement transfers that fell due.

The batches are the files given, or those waiting in a shared inbox (processing.inbox), taken once or
watched for. Either way the desks' records (loads, cash-outs, deposits) are posted before the batches
(their counters precede the purchases) and again after a pass (loads made while importing).

Small batches are imported in groups, one transaction for several (processing.group_import): a city's
terminals send thousands of batches of a few hundred records, and a transaction's fixed cost is then
paid once a group. A large batch has its own. On PostgreSQL a batch another importer is busy with,
sharing a card or a terminal with it, is put back and taken after the others (processing.locks), so
importers side by side do not queue behind each other; the results come in the order the batches
were imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from processing.desk_posting import post_desk_records
from processing.group_import import VerifiedBatch, import_group, verify_batches
from processing.importer import (
    ImportOptions,
    ImportResult,
    ImportStatus,
    import_batch,
    start_worker,
    submit_to_worker,
    worker_answer,
)
from processing.inbox import Inbox
from processing.keys import CardMacs, ProcessingKeys
from processing.locks import CARD_LOCKS_UP_TO, BatchBusy, import_transaction
from processing.schema.processing import programs as programs_table
from purse.batch import ENTRY_SIZE

ProgressFactory = Callable[[Path], AbstractContextManager[Callable[[int], None] | None]]
OnResult = Callable[[ImportResult], None]


@dataclass
class ProcessingRun:
    """What one ``smartpurse process`` run did: each batch's outcome and the replacement transfers it posted."""

    batches: list[ImportResult]
    transfers: list[dict[str, Any]]

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.batches)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.batches)

    @property
    def rejected(self) -> int:
        return sum(r.status == ImportStatus.REJECTED for r in self.batches)

    @property
    def anomalies(self) -> int:
        return sum(len(r.anomalies) for r in self.batches)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": [r.as_dict() for r in self.batches], "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": self.rejected, "anomalies": self.anomalies,
                "transfers": self.transfers}


def name_programs(conn: Connection, verified: dict[int, Any]) -> None:
    """Keep the name, version, points expiry, prize and tiers of each verified program (the newest version seen
    wins): what the holders' messages and page say of its rules, without opening the signed files."""
    p = programs_table.c
    for program_id, program in verified.items():
        row = conn.execute(select(p.version).where(p.program_id == program_id)).first()
        values = {"name": program.name, "version": program.version, "expiry_days": program.expiry_days,
                  "prize_threshold": program.prize.threshold if program.prize else None,
                  "prize_text": program.prize.text[:200] if program.prize else None,
                  "tiers": [[t.name, t.min_spend, t.discount_bp] for t in program.tiers]}
        if row is None:
            conn.execute(insert(programs_table).values(program_id=program_id, **values))
        elif program.version >= row.version:
            conn.execute(update(programs_table).where(p.program_id == program_id).values(**values))


def process_files(engine: Engine, files: Sequence[Path], keys: ProcessingKeys, options: ImportOptions,
                  progress: ProgressFactory | None = None, on_result: OnResult | None = None) -> ProcessingRun:
    """What ``smartpurse process FILES`` does: desk records, each batch, desk records and due transfers.

    A batch that fails verification does not raise: it is quarantined and its result says why
    (``REJECTED``). Raises ``SmartpurseError`` for what stops the whole run: an unreadable file, a
    database that cannot be written, a verifying worker that died. ``on_result`` hears of each batch
    as it is done (the batches of a group when the group commits).
    """
    run = _Run(engine, keys, options, progress, on_result)
    for _ in run.committed(files):
        pass
    run.end_of_pass()
    return ProcessingRun(run.results, run.transfers)


def process_inbox(engine: Engine, inbox: Inbox, keys: ProcessingKeys, options: ImportOptions,
                  progress: ProgressFactory | None = None, *, watch: float | None = None,
                  stop: threading.Event | None = None, on_result: OnResult | None = None) -> ProcessingRun:
    """What ``smartpurse process --inbox DIR`` does: the files waiting in the inbox that no other importer
    holds, claimed about a group's worth at a time; with ``watch`` (seconds), again and again until ``stop`` is set.

    ``stop`` is looked at between files: the batches claimed are imported (a group being stored and one being
    verified at most), the files put back and not retaken are released for other importers. ``on_result``
    hears of each batch as it is done."""
    stop = stop or threading.Event()
    run = _Run(engine, keys, options, progress, on_result)
    while True:
        claimed: dict[Path, str] = {}  # path -> digest, until the file is finished
        try:
            for done in run.committed(_claim_each(inbox, stop, claimed, options.group_records), stop):
                inbox.finish_all([(path, claimed[path], result) for path, result in done])
                for path, _ in done:
                    del claimed[path]
        finally:
            for digest in claimed.values():  # put back and not retaken, or not begun, when the run stopped or failed
                inbox.release(digest)
        run.end_of_pass()
        if watch is None or stop.wait(watch):
            return ProcessingRun(run.results, run.transfers)


def _claim_each(inbox: Inbox, stop: threading.Event, claimed: dict[Path, str], group_records: int) -> Iterator[Path]:
    """The waiting files this importer wins, claimed about a group's worth at a time (``group_records`` records,
    at least one file) as the run reaches them, and noted in ``claimed``."""
    waiting = inbox.waiting()
    start = 0
    while start < len(waiting):
        if stop.is_set():
            return
        end, records = start + 1, _records_in(waiting[start]) or 0
        while end < len(waiting) and records < group_records and end - start < _CLAIM_AT_MOST:
            records += _records_in(waiting[end]) or 0
            end += 1
        won = inbox.claim_all(waiting[start:end])
        claimed.update(won)
        for path in waiting[start:end]:
            if path in won:
                if stop.is_set():
                    return  # claimed and not begun: released by the caller
                yield path
        start = end


_CLAIM_AT_MOST = 256  # files claimed in one statement


def _records_in(path: Path) -> int | None:
    """About how many records a file holds, from its size; None if it cannot be read (gone already)."""
    try:
        return os.path.getsize(path) // ENTRY_SIZE
    except OSError:
        return None


Committed = list[tuple[Path, ImportResult]]  # the files one transaction imported, with their results


@dataclass
class _Group:
    """Files to import as one group, and their verification if the worker is doing it."""

    paths: list[Path]
    verifying: Future[list[VerifiedBatch]] | None = None


class _Run:
    """The steps every run takes: programs named and desk records posted first, then batches, then a pass's end."""

    def __init__(self, engine: Engine, keys: ProcessingKeys, options: ImportOptions,
                 progress: ProgressFactory | None, on_result: OnResult | None) -> None:
        self.engine, self.keys, self.macs = engine, keys, CardMacs(keys)
        self.options = replace(options, post_desk=False)
        self.progress, self.on_result = progress, on_result
        self.results: list[ImportResult] = []
        self.transfers: list[dict[str, Any]] = []
        with import_transaction(engine) as conn:
            name_programs(conn, self.options.programs)
            self._post_desk(conn)

    def committed(self, files: Iterable[Path], stop: threading.Event | None = None) -> Iterator[Committed]:
        """Import each file; yield each transaction's files with their results, once it has committed (a group's
        together). A file busy at another importer comes again at the end.

        Small files go in groups of up to ``ImportOptions.group_records`` records, one transaction each
        (processing.group_import), and a full group is verified by the worker process while the one
        before it is stored; a large file goes alone, in its own transaction. Waiting only for the files
        put back guarantees progress: the second time a batch waits for its locks."""
        put_back: list[Path] = []
        group: list[Path] = []
        records = 0
        verifying: _Group | None = None  # a full group the worker verifies while the one before is stored
        for path in files:
            size = self._small(path)
            if size is None:
                yield from self._group(verifying, put_back)
                yield from self._group(_Group(group), put_back)
                verifying, group, records = None, [], 0
                yield from self._unless_busy(path, put_back)
                continue
            group.append(path)
            records += size
            if records >= self.options.group_records:
                # the worker verifies a full group while the one before is stored; while it starts (most of a
                # second), the run's first group is verified here instead of waiting for it
                in_worker = len(group) > 1 and (verifying is not None or start_worker())
                full = _Group(group, self._verify_in_worker(group) if in_worker else None)
                yield from self._group(verifying, put_back)
                verifying, group, records = full, [], 0
        yield from self._group(verifying, put_back)
        yield from self._group(_Group(group), put_back)
        for path in put_back:
            if stop is not None and stop.is_set():
                return
            yield [(path, self._one(path, wait=True))]

    def _small(self, path: Path) -> int | None:
        """About how many records a file holds if it is small enough to go in a group, else None: too many
        to verify before storing (``parallel_min_records``) or to lock card by card, or not readable."""
        records = _records_in(path)
        if records is None:
            return None
        return records if records < min(self.options.parallel_min_records, CARD_LOCKS_UP_TO) else None

    def _verify_in_worker(self, paths: list[Path]) -> Future[list[VerifiedBatch]]:
        return submit_to_worker(verify_batches, paths, self.keys, None, self.options.chunk_records)

    def _group(self, group: _Group | None, put_back: list[Path]) -> Iterator[Committed]:
        if group is None or not group.paths:
            return
        if len(group.paths) == 1:
            yield from self._unless_busy(group.paths[0], put_back)
            return
        members = worker_answer(group.verifying) if group.verifying is not None else None
        if members is None:  # verified here: a last, partial group, or the worker died (the files are still there)
            members = verify_batches(group.paths, self.keys, self.macs, self.options.chunk_records)
        outcome = import_group(self.engine, members, self.options)
        put_back += outcome.busy
        for _, result in outcome.results:
            self._done(result)
        if outcome.results:
            yield outcome.results

    def _unless_busy(self, path: Path, put_back: list[Path]) -> Iterator[Committed]:
        """One batch in its own transaction, or put back if another importer holds its terminal or a card."""
        try:
            yield [(path, self._one(path, wait=False))]
        except BatchBusy:
            put_back.append(path)

    def _one(self, path: Path, wait: bool) -> ImportResult:
        with (self.progress(path) if self.progress is not None else nullcontext()) as advance:
            result = import_batch(self.engine, path, self.keys, self.options, self.macs, advance, wait=wait)
        self._done(result)
        return result

    def _done(self, result: ImportResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def end_of_pass(self) -> None:
        """The desk records made while importing, and the replacement transfers now due."""
        from processing.transfers import post_due_transfers

        with import_transaction(self.engine) as conn:
            self._post_desk(conn)
            self.transfers += post_due_transfers(conn, int(self.options.now()), self.options.gap_seconds)

    def _post_desk(self, conn: Connection) -> None:
        post_desk_records(conn, self.macs, now=int(self.options.now()), gap_seconds=self.options.gap_seconds)
