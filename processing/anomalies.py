"""Fraud signals and discrepancies, each with its evidence, each recorded once.

An anomaly is data for a person to judge, not an error that stops the import
(beancount's habit: collect every discrepancy, report them all). The fingerprint makes
recording idempotent: re-importing a batch or re-running a check finds the same
anomaly and does not record it twice.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from processing.rows import StoredRow
from processing.schema.processing import anomalies
from purse.records import record_details


class AnomalyKind(StrEnum):
    """What processing found; the value is what the ``anomalies`` table, reports and JSON say."""

    CLONE = "clone"
    BALANCE_OUT_OF_CHAIN = "balance_out_of_chain"
    POINTS_OUT_OF_CHAIN = "points_out_of_chain"
    POINTS_MISMATCH = "points_mismatch"
    COUNTER_ROLLBACK = "counter_rollback"
    HOTLISTED_USE = "hotlisted_use"
    BATCH_SEQ_REUSED = "batch_seq_reused"
    UNMATCHED_LOAD = "unmatched_load"
    COUNTER_GAP = "counter_gap"
    BAD_LOAD_CERTIFICATE = "bad_load_certificate"
    BAD_CASH_OUT_CERTIFICATE = "bad_cash_out_certificate"
    BAD_CERTIFICATE = "bad_certificate"
    TERMINAL_LOG_STARTED = "terminal_log_started"


KINDS: dict[AnomalyKind, str] = {
    AnomalyKind.CLONE: "two different certified records with one card and counter",
    AnomalyKind.BALANCE_OUT_OF_CHAIN: "balance before a record is not the balance after the previous one",
    AnomalyKind.POINTS_OUT_OF_CHAIN: "points before a record are not the points after the card's previous "
                                     "record of that program",
    AnomalyKind.POINTS_MISMATCH: "the program's rules give other points than the record shows",
    AnomalyKind.COUNTER_ROLLBACK: "a terminal saw a card's counter go back",
    AnomalyKind.HOTLISTED_USE: "a card used after the time it was blocked or hotlisted",
    AnomalyKind.BATCH_SEQ_REUSED: "a terminal's batch sequence number repeated with different content",
    AnomalyKind.UNMATCHED_LOAD: "a load on a card that the issuer's load desks never recorded",
    AnomalyKind.COUNTER_GAP: "counters missing from a card's history for longer than the allowed wait",
    AnomalyKind.BAD_LOAD_CERTIFICATE: "a load record of the issuer's desk whose certificate does not verify",
    AnomalyKind.BAD_CASH_OUT_CERTIFICATE: "a cash-out record of the issuer's desk whose certificate does not verify",
    AnomalyKind.BAD_CERTIFICATE: "a record of a genuine terminal batch whose card certificate does not verify: "
                                 "held, not posted",
    AnomalyKind.TERMINAL_LOG_STARTED: "a terminal sent the first batch of a new log while another log of it "
                                      "had sent batches",
}
assert set(KINDS) == set(AnomalyKind)


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    fingerprint: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    card_number: str | None = None
    counter: int | None = None
    terminal_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "card_number": self.card_number, "counter": self.counter,
                "terminal_id": self.terminal_id, "detail": self.detail, "evidence": self.evidence}


def record_evidence(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A stored or received row as evidence: the certified bytes and where they came from."""
    if row is None:
        return None
    r = StoredRow._make(row)
    raw = bytes(r.raw)
    return {"card_number": r.card_number, "counter": r.counter, "terminal_id": r.terminal_id,
            "terminal_seq": r.terminal_seq, "time": record_details(raw).time, "batch_id": r.batch_id,
            "record": raw.hex()}


def clone_anomaly(received_row: tuple[Any, ...], stored: tuple[Any, ...]) -> Anomaly:
    """A received record whose card and counter name a stored record with other bytes: a clone."""
    r = StoredRow._make(received_row)
    evidence = {"stored": record_evidence(stored), "received": record_evidence(r)}
    return Anomaly(AnomalyKind.CLONE, f"clone:{r.card_number}:{r.counter}:{bytes(r.raw).hex()[-16:]}",
                   f"card {r.card_number} counter {r.counter}: two different certified records (a clone)",
                   evidence, r.card_number, r.counter, r.terminal_id)


def save(conn: Connection, found: Iterable[Anomaly], batch_id: int | None = None, *, now: float | None = None) -> int:
    """Insert anomalies not yet known; returns how many were new.

    ``now`` is the import's clock (unix seconds), so a replayed import dates its findings alike.
    """
    detected = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    rows = [{"detected_at": detected, "kind": a.kind, "fingerprint": a.fingerprint[:200],
             "card_number": a.card_number, "counter": a.counter,
             "terminal_id": a.terminal_id, "batch_id": batch_id, "detail": a.detail, "evidence": a.evidence}
            for a in sorted(found, key=lambda a: a.fingerprint)]
    # Sorted, one order everywhere: importers side by side may report the same finding (an old counter gap),
    # and each waits on the other's uncommitted row; inserted in the same order, those waits form no cycle.
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    result = conn.execute(dialect.insert(anomalies).on_conflict_do_nothing(index_elements=["fingerprint"]), rows)
    return int(result.rowcount) if result.rowcount is not None and result.rowcount >= 0 else len(rows)
