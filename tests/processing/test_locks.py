"""The locks importers take on PostgreSQL: batches sharing nothing run side by side, a shared card waits."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.backoffice import world

from processing.locks import CARD_LOCKS_UP_TO, IMPORT_LOCK, BatchBusy, BatchLocks, card_keys, import_transaction

pytestmark = pytest.mark.postgres


def _batch(digest_byte: str, terminal: int, *cards: str) -> BatchLocks:
    return BatchLocks(digest_byte * 64, terminal, frozenset(cards))


def test_a_batch_sharing_nothing_runs_alongside_and_one_sharing_a_card_or_terminal_is_busy(tmp_path: Path) -> None:
    with world("postgresql", tmp_path) as w:
        with import_transaction(w.engine, _batch("a", 1, "6000000000000001", "6000000000000002")):
            with import_transaction(w.engine, _batch("b", 2, "6000000000000003"), wait=False) as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1  # taken while the first is open
            for busy in (_batch("c", 3, "6000000000000002"),  # a card of the first
                         _batch("d", 1, "6000000000000009"),  # its terminal
                         _batch("a", 4, "6000000000000009")):  # its file
                with pytest.raises(BatchBusy), import_transaction(w.engine, busy, wait=False):
                    pass
        with import_transaction(w.engine, _batch("c", 3, "6000000000000002"), wait=False):
            pass  # free once the first committed


def test_desk_posting_and_large_batches_run_alone(tmp_path: Path) -> None:
    """Without a batch, or with more cards than the lock table should hold, the import lock is exclusive."""
    many = _batch("e", 5, *(f"{6_000_000_000_000_000 + i}" for i in range(CARD_LOCKS_UP_TO + 1)))
    assert not many.runs_alongside and _batch("f", 6, "6000000000000001").runs_alongside
    with world("postgresql", tmp_path) as w:
        with import_transaction(w.engine):
            with w.engine.connect() as other:  # an importer of a small batch asks for the shared import lock
                assert other.exec_driver_sql(f"SELECT pg_try_advisory_lock_shared({IMPORT_LOCK})").scalar() is False


def test_card_keys_are_sorted_and_distinct() -> None:
    keys = card_keys(["6000000000000002", "6000000000000001", "6000000000000002"])
    assert keys == sorted(set(keys)) and len(keys) == 2
    assert all(-(2**31) <= k < 2**31 for k in keys)
