"""Batch import: accepted once, duplicates say so, damaged batches rejected whole into quarantine."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.backoffice import NOW, World, world

from processing import importer, ledger
from processing.batchfile import BatchRejected, open_batch
from processing.check import run_check
from processing.importer import import_batch
from processing.schema.processing import batches, journal_entries, records
from processing.synthetic import SynthCard, SynthTerminal, make_keys
from processing.verify import reference_verify, verify_file
from purse.batch import ENTRY_SIZE, HEADER_SIZE, TRAILER_SIZE


def _posted(w: World) -> tuple[int, int, int]:
    with w.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(records)).scalar_one()
        entries = conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()
        return n, entries, ledger.card_float(conn)


def _shop(w: World, cards: int = 3, purchases: int = 2) -> tuple[SynthTerminal, Path]:
    w.merchant(42)
    t = w.terminal(7, 42)
    for i in range(cards):
        c = w.card(i, load=10_000)
        for k in range(purchases):
            t.purchase(c, 100 + k, NOW + 60 * (k + 1))
    return t, t.close(w.tmp / "b1.spb")


def _one_card_shop(w: World) -> tuple[SynthTerminal, SynthCard]:
    """Merchant 42 with terminal 7, and card 1 with 50.00 loaded: the smallest shop a batch comes from."""
    w.merchant(42)
    return w.terminal(7, 42), w.card(1, load=5_000)


def test_accepted_then_duplicate_changes_nothing(import_world: World) -> None:
    w = import_world
    _, path = _shop(w)
    first = w.process(path)
    assert (first.status, first.accepted, first.duplicates, first.anomalies) == ("accepted", 6, 0, [])
    before = _posted(w)
    assert before[0] == 6 + 3 and before[2] == 3 * 10_000 - 3 * (100 + 101)
    again = w.process(path)
    assert again.status == "duplicate" and "nothing changed" in (again.reason or "")
    assert _posted(w) == before
    with w.engine.connect() as conn:
        assert run_check(conn).ok


def _damage(path: Path, how: str, keys_seed: bytes = b"") -> Path:
    data = bytearray(path.read_bytes())
    out = path.with_name(f"{how}.spb")
    e = lambda i: HEADER_SIZE + i * ENTRY_SIZE  # noqa: E731
    if how == "flipped_bit":
        data[e(3) + 25] ^= 0x01  # record 4's balance
    elif how == "truncated":
        data = data[:-TRAILER_SIZE - ENTRY_SIZE] + data[-TRAILER_SIZE:]
    elif how == "dropped":
        data = data[: e(2)] + data[e(3):]
    elif how == "dropped_recounted":
        data = data[: e(2)] + data[e(3):]
        data[24:28] = (5).to_bytes(4, "big")  # header record_count
        data[-TRAILER_SIZE + 4 : -TRAILER_SIZE + 8] = (5).to_bytes(4, "big")  # trailer record_count
    elif how == "reordered":
        data[e(1):e(2)], data[e(2):e(3)] = data[e(2):e(3)], data[e(1):e(2)]
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(("how", "check", "record"), [
    ("flipped_bit", "chain MAC", 4),
    ("truncated", "structure", None),
    ("dropped", "structure", None),
    ("dropped_recounted", "batch MAC", None),
    ("reordered", "chain MAC", 2),
])
def test_damaged_batch_rejected_whole(import_world: World, how: str, check: str, record: int | None) -> None:
    w = import_world
    _, good = _shop(w)
    bad = _damage(good, how)
    w.ingest_loads()
    before = _posted(w)
    result = w.process(bad)
    assert result.status == "rejected"
    assert result.reason is not None and check in result.reason
    if record is not None:
        assert result.reason.startswith(f"record {record}: ")
    assert _posted(w) == before  # nothing of the batch posted 
    assert Path(result.quarantine or "").read_bytes() == bad.read_bytes()
    with w.engine.connect() as conn:
        row = conn.execute(select(batches.c.status, batches.c.reason).where(batches.c.id == result.batch_id)).one()
    assert row.status == "quarantined" and row.reason == result.reason
    # the good batch still imports afterwards
    assert w.process(good).accepted == 6


def test_wrong_key_and_unknown_terminal_rejected(import_world: World) -> None:
    w = import_world
    w.merchant(42)
    w.terminal(7, 42)
    card = w.card(1, load=5_000)
    other_keys, _ = make_keys(b"another issuer")
    forged = SynthTerminal(other_keys, 7, 42)  # right terminal id, wrong log key
    forged.purchase(card, 100, NOW + 5)
    r = w.process(forged.close(w.tmp / "forged.spb"))
    assert r.status == "rejected" and "batch MAC" in (r.reason or "")
    stranger = w.terminal(99, 42, register=False)
    stranger.purchase(card, 100, NOW + 5)
    r = w.process(stranger.close(w.tmp / "stranger.spb"))
    assert r.status == "rejected" and r.reason == "terminal: terminal 99 is not registered"
    with w.engine.connect() as conn:  # the desk's loads are posted; nothing of either batch
        assert conn.execute(select(func.count()).select_from(records).where(records.c.batch_id.is_not(None))) \
            .scalar_one() == 0


def test_a_bad_card_certificate_holds_that_record_and_posts_the_rest(import_world: World) -> None:
    """Chain and batch MAC verify (the terminal sent exactly this), one card's certificate does not:
    that record is held and flagged, naming the card; the other cards' sales are posted and paid."""
    w = import_world
    w.merchant(42)
    t = w.terminal(7, 42)
    card, other = w.card(1, load=5_000), w.card(2, load=5_000)
    t.purchase(card, 100, NOW + 5)
    t.purchase(other, 300, NOW + 6)
    raw = t.purchase(card, 200, NOW + 7)
    t.entries.pop()
    t._mac = t.entries[-1][1]
    t.add(raw[:-8] + bytes(8))  # a damaged (or forged) card: the terminal chains what it received
    t.purchase(other, 400, NOW + 8)
    r = w.process(t.close(w.tmp / "b.spb"))
    assert (r.status, r.accepted, r.held) == ("accepted", 3, 1), r
    [held] = [a for a in r.anomalies if a["kind"] == "bad_certificate"]
    assert (held["card_number"], held["counter"], held["terminal_id"]) == (card.number, 3, 7)
    assert held["detail"] == (f"record 3: card {card.number} counter 3: the card certificate does not verify under "
                              "the card's TXN key v1 (a damaged or forged card): held, not posted")
    assert held["evidence"]["amount"] == 200 and held["evidence"]["record"] == (raw[:-8] + bytes(8)).hex()
    with w.engine.connect() as conn:
        posted = conn.execute(select(records.c.card_number, records.c.amount).where(records.c.terminal_id == 7)
                              .order_by(records.c.terminal_seq)).all()
        assert [tuple(p) for p in posted] == [(card.number, 100), (other.number, 300), (other.number, 400)]
        assert ledger.balance(conn, ledger.merchant_payable(42)) == -800
        report = run_check(conn)
    assert report.ok, report.failures
    assert (report.figures["held_records"], report.figures["held_purchases"]) == (1, 200)
    assert w.process(w.tmp / "b.spb").status == "duplicate"  # the same file again: nothing new, nothing lost


def test_a_broken_chain_still_rejects_the_batch_whole(import_world: World) -> None:
    w = import_world
    t, card = _one_card_shop(w)
    t.purchase(card, 100, NOW + 5)
    raw = t.purchase(card, 200, NOW + 6)
    t.entries[-1] = (raw[:-8] + bytes(8), t.entries[-1][1])  # altered after chaining: the chain breaks
    r = w.process(t.close(w.tmp / "b.spb"))
    assert r.status == "rejected" and r.reason is not None and r.reason.startswith("record 2: chain MAC")
    with w.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(records.c.terminal_id == 7)).scalar() == 0


@pytest.mark.parametrize("how", ["good", "flipped_bit", "truncated", "dropped", "dropped_recounted", "reordered"])
def test_fast_verification_agrees_with_reference(import_world: World, how: str) -> None:
    w = import_world
    _, good = _shop(w, cards=4, purchases=3)
    path = good if how == "good" else _damage(good, how)

    def fast() -> list[tuple[object, ...]] | str:
        try:
            return [row for chunk in verify_file(open_batch(path), w.keys) for row in chunk]
        except BatchRejected as e:
            return str(e)

    def slow() -> list[tuple[object, ...]] | str:
        try:
            return [(r.card_number, r.counter, int(r.record_type), r.amount, r.terminal_id, r.terminal_seq,
                     r.time // 86400, 42, 0, 0, r.to_bytes()) for r in reference_verify(path, w.keys).records]
        except BatchRejected as e:
            return str(e)

    f, s = fast(), slow()
    if isinstance(f, str) or isinstance(s, str):
        assert f == s
    else:
        assert f == s and len(s) == 12


def test_record_in_two_batches_posted_once(import_world: World) -> None:
    """A terminal log restored from backup re-sends batch 1 as a longer batch 1."""
    w = import_world
    t, card = _one_card_shop(w)
    t.purchase(card, 100, NOW + 5)
    t.purchase(card, 200, NOW + 6)
    saved = (list(t.entries), t._mac)
    first = t.close(w.tmp / "b1.spb")
    t.entries, t._mac, t.batch_seq, t.next_index, t.prev_mac = saved[0], saved[1], 0, 1, bytes(8)
    t.purchase(card, 300, NOW + 7)
    second = t.close(w.tmp / "b1-again.spb")
    assert w.process(first).accepted == 2
    r = w.process(second)
    assert (r.status, r.accepted, r.duplicates) == ("accepted", 1, 2)
    assert [a["kind"] for a in r.anomalies] == ["batch_seq_reused"]
    n, _, float_ = _posted(w)
    assert n == 4 and float_ == 5_000 - 600
    with w.engine.connect() as conn:
        assert run_check(conn).ok


def test_quarantined_file_can_be_retried_after_registration(import_world: World) -> None:
    w = import_world
    w.merchant(42)
    t = w.terminal(8, 42, register=False)
    t.purchase(w.card(1, load=1_000), 100, NOW + 5)
    path = t.close(w.tmp / "b.spb")
    assert w.process(path).status == "rejected"
    w.terminal(8, 42)  # registered now
    r = w.process(path)
    assert r.status == "accepted" and r.accepted == 1
    with w.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(batches)).scalar_one() == 1


def test_quarantine_keeps_batch_files_only_and_owner_only(import_world: World, tmp_path: Path) -> None:
    """A file that is not a batch (a card image or the keystore given by mistake) is refused and not copied;
    a damaged batch is kept, mode 0600 (it names cards and amounts)."""
    w = import_world
    junk = tmp_path / "junk.spb"
    junk.write_bytes(b"not a batch at all" * 10)
    r = w.process(junk)
    assert r.status == "rejected" and r.reason is not None and r.reason.startswith("structure: not a batch file")
    assert r.quarantine is None and not (tmp_path / "quarantine").exists()
    _, good = _shop(w)
    damaged = _damage(good, "flipped_bit")
    r = w.process(damaged)
    assert r.status == "rejected" and r.quarantine is not None
    assert stat.S_IMODE(Path(r.quarantine).stat().st_mode) == 0o600
    assert Path(r.quarantine).read_bytes() == damaged.read_bytes()
    shutil.rmtree(tmp_path / "quarantine")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_worker_killed_mid_batch_posts_nothing_and_the_next_run_works(kind: str, tmp_path: Path) -> None:
    """SIGKILL to the verifying process while the importer stores: one clear error, the batch's transaction
    rolls back whole (not quarantined: the file was never judged), and importing it again succeeds."""
    with world(kind, tmp_path) as w:
        w.merchant(42)
        t = w.terminal(7, 42)
        cards = [w.card(i, load=10_000_000) for i in range(50)]
        for i in range(20_000):
            t.purchase(cards[i % 50], 1 + i % 90, NOW + i)
        path = t.close(w.tmp / "big.spb")
        w.ingest_loads()
        with w.engine.connect() as conn:
            before = conn.execute(select(func.count()).select_from(records)).scalar_one()

        killed: list[int] = []

        def kill_the_worker(_done: int) -> None:  # after the first chunk is stored
            executor = importer._EXECUTOR
            assert executor is not None
            if not killed:
                killed.extend(executor._processes)  # type: ignore[attr-defined]
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)

        options = w.options(parallel_min_records=1, chunk_records=200)
        with pytest.raises(importer.WorkerStopped, match="verifying worker process stopped.*process it again"):
            import_batch(w.engine, path, w.keys, options, progress=kill_the_worker)
        assert killed
        with w.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(records)).scalar_one() == before
            assert conn.execute(select(func.count()).select_from(batches)).scalar_one() == 0
        assert not (w.tmp / "quarantine").exists()
        result = import_batch(w.engine, path, w.keys, w.options(parallel_min_records=1))
        assert (result.status, result.accepted) == ("accepted", 20_000), result.reason
        with w.engine.connect() as conn:
            assert run_check(conn).ok


def _as_format_1(path: Path, log_key: bytes) -> Path:
    """The same batch as a terminal of format 1 wrote it: a 40-byte header without the log identity."""
    from purse.batch import batch_mac

    data = path.read_bytes()
    header = data[:4] + b"\x01" + data[5:40]
    body, trailer = data[HEADER_SIZE:-TRAILER_SIZE], data[-TRAILER_SIZE:-8]
    old = path.with_name(f"v1-{path.name}")
    old.write_bytes(header + body + trailer + batch_mac(log_key, header, trailer))
    return old


def test_a_format_1_batch_is_read_as_its_terminals_first_log(import_world: World) -> None:
    w = import_world
    t, card = _one_card_shop(w)
    t.purchase(card, 100, NOW + 5)
    first = _as_format_1(t.close(w.tmp / "b1.spb"), t.log_key)
    t.purchase(card, 200, NOW + 6)
    second = t.close(w.tmp / "b2.spb")  # format 2, the first log (FIRST_LOG_ID): continues batch 1
    assert [w.process(p).accepted for p in (first, second)] == [1, 1]
    with w.engine.connect() as conn:
        assert {bytes(r.log_id) for r in conn.execute(select(batches.c.log_id))} == {bytes(8)}


def test_a_new_log_numbers_from_one_and_every_record_is_posted(import_world: World) -> None:
    """Library view of a restarted log: same terminal, sequence numbers and batch numbers from 1 again."""
    w = import_world
    w.merchant(42)
    old = w.terminal(7, 42)
    card = w.card(1, load=5_000)
    old.purchase(card, 100, NOW + 5)
    assert w.process(old.close(w.tmp / "old.spb")).accepted == 1
    new = SynthTerminal(w.keys, 7, 42, log_id=b"new-log!")
    new.purchase(card, 200, NOW + 6)  # terminal sequence 1 again, card counter 3
    r = w.process(new.close(w.tmp / "new-1.spb"))
    assert (r.status, r.accepted) == ("accepted", 1) and [a["kind"] for a in r.anomalies] == ["terminal_log_started"]
    new.purchase(card, 300, NOW + 7)
    assert w.process(new.close(w.tmp / "new-2.spb")).accepted == 1
    with w.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(records.c.terminal_id == 7)).scalar() == 3
        assert run_check(conn).ok
