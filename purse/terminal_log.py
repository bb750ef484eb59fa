"""The terminal's durable local log, MAC-chained (docs/design.md, "Terminal log and batches").

Every transaction is written here *before* its command reaches the card (a pending
entry) and completed with the card's certificate after; so a card pulled mid-command
leaves a pending entry that the next presentation of that card resolves. Completed
records are chained: ``mac_i = CMAC(K_term, record_i || mac_{i-1})`` truncated to 8
bytes, with 8 zero bytes before the first, so a dropped, reordered or altered record
breaks the chain. SQLite with synchronous=FULL: a power cut loses nothing committed.

Each record keeps the version of the log key it was chained with, and a batch holds one
version: after a key rotation the open batch goes on under the version it began with, and
the next batch begins under the new one. A record is thus always verifiable under the key
it was chained with, and rotating keys never strands an unsent record.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from purse import crypto
from purse.errors import SmartpurseError
from purse.records import CardWrite, TransactionRecord

__all__ = [
    "TerminalLog",
    "LogKeys",
    "ClosedBatch",
    "Pending",
    "TerminalLogError",
    "GENESIS_MAC",
    "LOG_ID_SIZE",
    "FIRST_LOG_ID",
]

GENESIS_MAC = bytes(8)
LOG_ID_SIZE = 8
FIRST_LOG_ID = bytes(LOG_ID_SIZE)  # the identity of a log made before logs had one (batch format 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chain_head (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, mac BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    chain_index INTEGER PRIMARY KEY,
    terminal_seq INTEGER NOT NULL UNIQUE,
    card_number TEXT NOT NULL,
    counter INTEGER NOT NULL,
    record BLOB NOT NULL,
    chain_mac BLOB NOT NULL,
    batch_seq INTEGER,
    key_version INTEGER
);
CREATE INDEX IF NOT EXISTS journal_unbatched ON journal (batch_seq, chain_index);
CREATE TABLE IF NOT EXISTS pending (
    terminal_seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    card_number TEXT NOT NULL,
    uid BLOB NOT NULL,
    expected_counter INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    created INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
);
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY,
    first_index INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    prev_mac BLOB NOT NULL,
    final_mac BLOB NOT NULL,
    created INTEGER NOT NULL,
    key_version INTEGER
);
"""
# Columns later versions added; older logs gain them. key_version is NULL in logs written before records
# kept it (see _backfill_key_versions); written (a DESFire record's CardWrite bytes) is NULL when there is none.
_ADDED_COLUMNS = (("journal", "key_version", "INTEGER"), ("batches", "key_version", "INTEGER"),
                  ("journal", "written", "BLOB"))


class TerminalLogError(SmartpurseError):
    """The terminal log is unusable (wrong file, another terminal's log)."""


@dataclass(frozen=True)
class LogKeys:
    """A terminal's log keys by version, and the current one (what a new batch is chained under)."""

    current: int
    by_version: Mapping[int, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.by_version:
            raise TerminalLogError(f"no log key of the current version {self.current}")

    @classmethod
    def single(cls, key: bytes, version: int = 1) -> LogKeys:
        return cls(version, {version: key})

    def key(self, version: int) -> bytes:
        key = self.by_version.get(version)
        if key is None:
            raise TerminalLogError(
                f"the open batch was chained under log key version {version}, which this key file does not hold "
                f"(it holds {', '.join(map(str, sorted(self.by_version)))}): export the POS key file again with "
                "`smartpurse keys export --role pos` (it carries every version)")
        return key


@dataclass(frozen=True, slots=True)
class Pending:
    terminal_seq: int
    kind: int
    card_number: str
    uid: bytes
    expected_counter: int
    amount: int
    created: int
    state: str


@dataclass(frozen=True, slots=True)
class ClosedBatch:
    batch_seq: int
    first_index: int
    prev_mac: bytes
    final_mac: bytes
    created: int
    entries: list[tuple[bytes, bytes]]  # (record bytes, chain MAC)
    key_version: int  # the log key version every record of the batch was chained with
    written: dict[int, bytes] = field(default_factory=dict)  # 0-based entry index -> CardWrite bytes (DESFire)


class TerminalLog:
    """A terminal's durable journal (SQLite, WAL, synchronous FULL): write-ahead entries and the MAC chain.

    Before a command reaches the card, ``begin`` records it as pending with the counter it
    would produce; ``complete`` replaces it by the card's certified record and chains it
    (``mac_i = CMAC(log key, record_i || mac_{i-1})``), ``drop`` forgets a command the card
    never ran. ``close_batch`` assigns the unbatched records to the next batch for
    ``purse.batch.export_batch``. The file belongs to one terminal and one merchant: opening it
    for another raises ``TerminalLogError``, as does a chain that does not verify.
    """
    def __init__(self, path: Path | str, *, terminal_id: int, merchant_id: int,
                 log_key: bytes | LogKeys | None) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            for table, column, kind in _ADDED_COLUMNS:
                if column not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.DatabaseError as e:
            raise TerminalLogError(f"{path}: not a terminal log ({e})") from None
        # A bare key is version 1, the only version a log had before keys were rotated.
        self.keys = LogKeys.single(log_key) if isinstance(log_key, bytes) else log_key
        self._macs: dict[int, crypto.PrekeyedMac] = {}
        # Cached between transactions (one terminal, one writer): the next sequence number
        # and the chain head. A stale cache cannot corrupt the log: the primary keys refuse a
        # reused sequence number or chain index, and the write is retried on fresh values.
        self._next_seq: int | None = None
        self._chain_head: tuple[int, bytes] | None = None
        self.terminal_id = self._bind("terminal_id", terminal_id)
        self.merchant_id = self._bind("merchant_id", merchant_id)
        self.log_id = self._identity()
        if self.keys is not None:
            self._backfill_key_versions()

    def _identity(self) -> bytes:
        """This log's identity, drawn at random when the log is made and sent in every batch.

        Sequence numbers count within one log. A terminal whose log starts again (a new file after a
        lost one, a replaced device) numbers from 1 again; its identity tells processing that these
        are new records of a new log, not another log's numbers used twice. A log written before
        identities existed, with records in it, keeps ``FIRST_LOG_ID``: what its batches implied."""
        row = self.db.execute("SELECT value FROM meta WHERE key='log_id'").fetchone()
        if row is not None:
            return int(row[0]).to_bytes(LOG_ID_SIZE, "big", signed=True)
        used = self.db.execute("SELECT EXISTS (SELECT 1 FROM journal) OR EXISTS (SELECT 1 FROM batches) "
                               "OR EXISTS (SELECT 1 FROM pending)").fetchone()[0]
        identity = FIRST_LOG_ID if used else os.urandom(LOG_ID_SIZE)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)",  # a second opener keeps the first's
                        (int.from_bytes(identity, "big", signed=True),))
        return int(self.db.execute("SELECT value FROM meta WHERE key='log_id'").fetchone()[0]).to_bytes(
            LOG_ID_SIZE, "big", signed=True)

    def _chain_mac(self, version: int) -> crypto.PrekeyedMac:
        assert self.keys is not None
        mac = self._macs.get(version)
        if mac is None:
            mac = self._macs[version] = crypto.PrekeyedMac(self.keys.key(version))
        return mac

    def _open_batch_version(self) -> int:
        """The key version the next record is chained with: the open batch's, or the current one."""
        assert self.keys is not None
        row = self.db.execute("SELECT key_version FROM journal WHERE batch_seq IS NULL "
                              "ORDER BY chain_index LIMIT 1").fetchone()
        return self.keys.current if row is None or row[0] is None else int(row[0])

    def _backfill_key_versions(self) -> None:
        """Give records and batches of a log written before versions were kept the version that verifies them.

        Such a log chained under whatever key its terminal held, so each record is tried under every
        version known; one that verifies under none keeps NULL and ``verify_chain`` reports it."""
        assert self.keys is not None
        if not self.db.execute("SELECT EXISTS (SELECT 1 FROM journal WHERE key_version IS NULL) "
                               "OR EXISTS (SELECT 1 FROM batches WHERE key_version IS NULL)").fetchone()[0]:
            return  # every open of a current log: two index probes, not a read of the whole journal
        rows = self.db.execute("SELECT chain_index, record, chain_mac, key_version FROM journal "
                               "ORDER BY chain_index").fetchall()
        with self._tx():
            prev = GENESIS_MAC
            for idx, raw, mac, version in rows:
                if version is None:
                    version = next((v for v in sorted(self.keys.by_version, reverse=True)
                                    if crypto.macs_equal(self._chain_mac(v).mac(raw + prev), mac)), None)
                    self.db.execute("UPDATE journal SET key_version=? WHERE chain_index=?", (version, idx))
                prev = mac
            self.db.execute("UPDATE batches SET key_version=coalesce((SELECT min(key_version) FROM journal "
                            "WHERE journal.batch_seq=batches.batch_seq), ?) WHERE key_version IS NULL",
                            (self.keys.current,))

    def check(self) -> None:
        """Refuse a log that is not sound, before a card is touched: ``TerminalLogError`` saying what.

        The write-ahead protocol relies on three facts: the next sequence number is above every
        one used, the chain head is the last record, and the log says whose it is. A log edited or
        damaged in any of them would let the card commit a command the terminal then cannot log
        (the money moves, the record never reaches a batch), so no command starts on it. This
        reads three rows and an index, not the whole chain (``verify_chain`` does that)."""
        used = self.db.execute("SELECT max(s) FROM (SELECT max(terminal_seq) AS s FROM journal "
                               "UNION ALL SELECT max(terminal_seq) FROM pending)").fetchone()[0] or 0
        last = self.db.execute("SELECT chain_index, chain_mac FROM journal ORDER BY chain_index DESC LIMIT 1"
                               ).fetchone()
        count = self.db.execute("SELECT count(*) FROM journal").fetchone()[0]
        owner = {k for (k,) in self.db.execute("SELECT key FROM meta WHERE key IN ('terminal_id', 'merchant_id')")}
        problem = None
        if owner != {"terminal_id", "merchant_id"}:
            problem = "it no longer says which terminal and merchant it belongs to"
        elif used and self._stored_next_seq() <= used:
            problem = f"its next sequence number {self._stored_next_seq()} was used already (up to {used})"
        elif last is not None and (last[0] != count or self._head() != (last[0], last[1])):
            problem = f"its chain head does not match its last record ({count} records)"
        elif last is None and self._head()[0] != 0:
            problem = "its chain head names records the log does not hold"
        if problem is not None:
            raise TerminalLogError(f"{self.path}: the terminal log is damaged: {problem}; no command is sent to a "
                                   "card until the log is restored from a backup")

    def _bind(self, key: str, value: int) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
            return value
        if row[0] != value:
            raise TerminalLogError(f"{self.path} belongs to {key.replace('_', ' ')} {row[0]}, not {value}")
        return value

    def close(self) -> None:
        self.db.close()

    # -- write-ahead ---------------------------------------------------------------------
    def begin(self, kind: int, card_number: str, uid: bytes, expected_counter: int, amount: int) -> int:
        """Allocate the next terminal sequence number and record the pending command."""
        for attempt in (1, 2):
            try:
                with self._tx():
                    seq = self._next_seq if self._next_seq is not None else self._stored_next_seq()
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (seq + 1,))
                    self.db.execute(
                        "INSERT INTO pending (terminal_seq, kind, card_number, uid, expected_counter, amount,"
                        " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (seq, kind, card_number, uid, expected_counter, amount, int(time.time())),
                    )
            except sqlite3.IntegrityError:
                self._next_seq = self._chain_head = None  # another writer moved on: reload
                if attempt == 2:
                    raise
                continue
            self._next_seq = seq + 1
            return seq
        raise AssertionError("unreachable")

    def _stored_next_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        return row[0] if row else 1

    def complete(self, terminal_seq: int, record: TransactionRecord, written: CardWrite | None = None) -> bytes:
        """Replace a pending entry by the certified record, chained; returns its chain MAC. ``written``
        (what a DESFire transaction wrote besides the record) goes into the record's batch with it."""
        raw = record.to_bytes()
        extra = written.to_bytes() if written is not None else None
        for attempt in (1, 2):
            try:
                with self._tx():
                    idx, prev = self._chain_head if self._chain_head is not None else self._head()
                    version = self._open_batch_version() if self.keys is not None else None
                    mac = self._chain_mac(version).mac(raw + prev) if version is not None else GENESIS_MAC
                    self.db.execute(
                        "INSERT INTO journal (chain_index, terminal_seq, card_number, counter, record, chain_mac,"
                        " key_version, written) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (idx + 1, terminal_seq, record.card_number, record.counter, raw, mac, version, extra),
                    )
                    self.db.execute("INSERT OR REPLACE INTO chain_head VALUES (1, ?, ?)", (idx + 1, mac))
                    self.db.execute("DELETE FROM pending WHERE terminal_seq=?", (terminal_seq,))
            except sqlite3.IntegrityError:
                self._next_seq = self._chain_head = None
                if attempt == 2:
                    raise
                continue
            self._chain_head = (idx + 1, mac)
            return mac
        raise AssertionError("unreachable")

    def drop(self, terminal_seq: int) -> None:
        """The card did not run the command: forget it (the sequence number stays used)."""
        self.db.execute("DELETE FROM pending WHERE terminal_seq=?", (terminal_seq,))

    def mark_unresolvable(self, terminal_seq: int) -> None:
        self.db.execute("UPDATE pending SET state='unresolvable' WHERE terminal_seq=?", (terminal_seq,))

    def pending_for(self, card_number: str) -> list[Pending]:
        rows = self.db.execute(
            "SELECT * FROM pending WHERE card_number=? AND state='pending' ORDER BY terminal_seq", (card_number,)
        ).fetchall()
        return [Pending(*r) for r in rows]

    def all_pending(self) -> list[Pending]:
        return [Pending(*r) for r in self.db.execute("SELECT * FROM pending ORDER BY terminal_seq")]

    # -- reading ---------------------------------------------------------------------------
    def _head(self) -> tuple[int, bytes]:
        row = self.db.execute("SELECT idx, mac FROM chain_head WHERE id=1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_MAC)

    def records(self, *, unbatched_only: bool = False) -> Iterator[tuple[int, TransactionRecord, bytes]]:
        sql = "SELECT chain_index, record, chain_mac FROM journal"
        if unbatched_only:
            sql += " WHERE batch_seq IS NULL"
        for idx, raw, mac in self.db.execute(sql + " ORDER BY chain_index"):
            yield idx, TransactionRecord.from_bytes(raw), mac

    def verify_chain(self) -> int:
        """Recompute the whole chain; returns the number of records, raises on a break."""
        if self.keys is None:
            raise TerminalLogError("this log has no chain key")
        prev = GENESIS_MAC
        count = 0
        for idx, raw, mac, version in self.db.execute(
                "SELECT chain_index, record, chain_mac, key_version FROM journal ORDER BY chain_index"):
            if version is None or version not in self.keys.by_version \
                    or not crypto.macs_equal(self._chain_mac(version).mac(raw + prev), mac) or idx != count + 1:
                raise TerminalLogError(f"terminal log chain broken at record {idx}")
            prev, count = mac, count + 1
        # The head is written in the same transaction as each record: a log cut short at its
        # end (the one break the chain alone cannot show) disagrees with it.
        head_index, head_mac = self._head()
        if head_index != count or not crypto.macs_equal(head_mac, prev):
            raise TerminalLogError(f"terminal log ends at record {count}, its head says {head_index}")
        return count

    # -- batches -------------------------------------------------------------------------------
    def close_batch(self, write: Callable[[ClosedBatch], object] | None = None) -> ClosedBatch:
        """Assign every unbatched record to the next batch; the batch may be empty.

        ``write`` (the batch file's writer) runs inside the transaction that closes the batch:
        if it fails, nothing is closed and the records stay for the next export, so a batch is
        never closed before its file is durably written."""
        with self._tx():
            row = self.db.execute("SELECT max(batch_seq), max(first_index + record_count) FROM batches").fetchone()
            batch_seq = (row[0] or 0) + 1
            prev_row = self.db.execute("SELECT final_mac FROM batches WHERE batch_seq=?", (batch_seq - 1,)).fetchone()
            prev_mac = prev_row[0] if prev_row else GENESIS_MAC
            entries = self.db.execute(
                "SELECT chain_index, record, chain_mac, written FROM journal WHERE batch_seq IS NULL"
                " ORDER BY chain_index"
            ).fetchall()
            first = entries[0][0] if entries else (row[1] or 1)
            final = entries[-1][2] if entries else prev_mac
            created = int(time.time())
            version = self._open_batch_version() if self.keys is not None else 0
            self.db.execute("UPDATE journal SET batch_seq=? WHERE batch_seq IS NULL", (batch_seq,))
            self.db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (batch_seq, first, len(entries), prev_mac, final, created, version))
            batch = ClosedBatch(batch_seq, first, prev_mac, final, created, [(r, m) for _, r, m, _ in entries], version,
                                {i: w for i, (*_, w) in enumerate(entries) if w is not None})
            if write is not None:
                write(batch)
        return batch

    def closed_batch(self, batch_seq: int) -> ClosedBatch:
        """Batch ``batch_seq`` as it was closed, to export it again (the same bytes: processing sees a duplicate)."""
        row = self.db.execute("SELECT first_index, record_count, prev_mac, final_mac, created, key_version "
                              "FROM batches WHERE batch_seq=?", (batch_seq,)).fetchone()
        if row is None:
            last = self.db.execute("SELECT max(batch_seq) FROM batches").fetchone()[0]
            raise TerminalLogError(f"{self.path} has no batch {batch_seq} (closed batches: 1..{last or 0})")
        first, count, prev_mac, final_mac, created, version = row
        entries = self.db.execute("SELECT record, chain_mac, written FROM journal WHERE batch_seq=?"
                                  " ORDER BY chain_index", (batch_seq,)).fetchall()
        if len(entries) != count:
            raise TerminalLogError(f"{self.path}: batch {batch_seq} holds {len(entries)} records, closed with {count}")
        return ClosedBatch(batch_seq, first, prev_mac, final_mac, created, [(r, m) for r, m, _ in entries], version,
                           {i: w for i, (_, _, w) in enumerate(entries) if w is not None})

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
