"""What writers of the processing tables wait for, so that several importers can run at once.

SQLite has one writer at a time (``BEGIN IMMEDIATE``): every transaction here simply takes turns.

PostgreSQL lets importers of different batches run side by side. A small batch takes the import
lock *shared*, then transaction-scoped advisory locks on exactly what two batches can contend for:

* its file (the SHA-256 the ``batches`` row is keyed by), so one file is imported once;
* its terminal, so a terminal's batch sequence and chain continuity are checked one batch at a time;
* each of its cards, so a card's account, points and replay state move one batch at a time and the
  ``records`` key (card, counter) never waits on another importer's uncommitted row.

They are always taken in that order, the cards sorted by key, so two importers cannot deadlock on them.
An importer with other files to do asks without waiting (``wait=False``): a batch whose terminal or
cards another importer holds raises ``BatchBusy`` before anything is written, and is taken again after
the others, so two importers work side by side instead of queuing behind each other's shared cards.
Everything else (desk posting, replacement transfers, quarantine, settlement, a batch with more cards
than ``CARD_LOCKS_UP_TO``) takes the import lock *exclusively* and so runs alone, as before: a batch of
a hundred thousand cards would fill PostgreSQL's lock table (``max_locks_per_transaction`` × connections),
and it is one importer's whole share of the work anyway.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from processing.db import committed

IMPORT_LOCK = 0x5350_0001  # the import lock's key: "SP" + 1
_FILE, _TERMINAL, _CARD = 0x5350_0002, 0x5350_0003, 0x5350_0004  # the classes of the two-key advisory locks
CARD_LOCKS_UP_TO = 2_000  # a batch with more distinct cards runs alone (the lock table is shared and small)


@dataclass(frozen=True)
class BatchLocks:
    """What one batch's import contends for with other importers."""

    digest: str  # the file's SHA-256, hex
    terminal_id: int
    cards: frozenset[str]

    @property
    def runs_alongside(self) -> bool:
        """Whether this batch can be imported while other batches are (few enough cards to lock one by one)."""
        return len(self.cards) <= CARD_LOCKS_UP_TO


class BatchBusy(Exception):
    """Another importer holds this batch's terminal or one of its cards (only with ``wait=False``)."""


@contextmanager
def import_transaction(engine: Engine, batch: BatchLocks | None = None, wait: bool = True) -> Iterator[Connection]:
    """A transaction that holds what it writes: the whole import lock, or a batch's own locks.

    Without ``batch`` (or for a batch of many cards) the transaction runs alone. Commits at the end,
    rolls back on any exception. ``wait=False``: raise ``BatchBusy`` rather than wait for a batch's locks."""
    alongside = batch is not None and batch.runs_alongside
    with _begin(engine, alone=not alongside) as conn:
        if alongside and conn.dialect.name != "sqlite" and batch is not None and not _lock_batch(conn, batch, wait):
            conn.rollback()
            raise BatchBusy(batch.digest)
        with committed(conn):
            yield conn


@contextmanager
def group_transaction(engine: Engine, alone: bool) -> Iterator[Connection]:
    """A transaction for a group of batches (processing.group_import). SQLite: its one writer. PostgreSQL:
    ``alone``, the import lock exclusively, for a group of more cards than ``CARD_LOCKS_UP_TO`` (too many
    to lock one by one); else shared, each batch then locked with ``try_lock_batch``."""
    with _begin(engine, alone) as conn, committed(conn):
        yield conn


@contextmanager
def _begin(engine: Engine, alone: bool) -> Iterator[Connection]:
    """A connection in a writing transaction: SQLite's one writer; on PostgreSQL the import lock, exclusively
    (``alone``) or shared."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            take = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
            conn.execute(text(f"SELECT {take}(:k)"), {"k": IMPORT_LOCK})
        yield conn


def try_lock_batch(conn: Connection, batch: BatchLocks, alone: bool) -> bool:
    """Take one batch's locks in a ``group_transaction`` without waiting; whether they were all taken (always
    on SQLite and in a group that runs ``alone``). Locks taken before a refusal stay held until the end of the
    transaction: they cost another importer a retry, never a deadlock, since a group never waits."""
    return alone or conn.dialect.name == "sqlite" or _lock_batch(conn, batch, wait=False)


def _lock_batch(conn: Connection, batch: BatchLocks, wait: bool) -> bool:
    """The batch's file, terminal and card locks, in that order, the cards in ascending key order; whether
    all were taken (always, with ``wait``; without, the caller rolls back what was).

    The card keys go to the server as one sorted array and are locked as ``unnest`` yields them (an
    aggregate consumes its input in order): one round trip, and the same order in every importer."""
    take, every = ("pg_advisory_xact_lock", "count") if wait else ("pg_try_advisory_xact_lock", "bool_and")
    answers = [conn.exec_driver_sql(f"SELECT {take}(%(class)s, %(key)s)", {"class": cls, "key": key}).scalar()
               for cls, key in ((_FILE, _int4(bytes.fromhex(batch.digest))), (_TERMINAL, _wrap(batch.terminal_id)))]
    keys = card_keys(batch.cards)
    if keys and (wait or all(answers)):
        answers.append(conn.exec_driver_sql(f"SELECT {every}({take}(%(class)s, k)) FROM unnest(%(keys)b::int4[]) k",
                                            {"class": _CARD, "keys": keys}).scalar())
    return wait or all(answers)


def card_keys(numbers: Iterable[str]) -> list[int]:
    """The cards' lock keys, distinct and ascending: a CRC-32 of the number as a signed 32-bit integer.

    Two cards may share a key; they then wait for each other, which costs time, never correctness."""
    return sorted({_wrap(zlib.crc32(n.encode())) for n in numbers})


def _int4(data: bytes) -> int:
    return int.from_bytes(data[:4], "big", signed=True)


def _wrap(value: int) -> int:
    """Any integer as a signed 32-bit one (the advisory lock's key type)."""
    return (value + 2**31) % 2**32 - 2**31
