"""The terminal library: debit, cancel, block, read, batch export, and its MAC-chained log."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from support.cards import MERCHANT, NOW, PIN, Issuer

from purse import crypto
from purse.apdu import CardBlocked, InsufficientFunds, NothingToCancel
from purse.batch import (
    ENTRY_SIZE,
    HEADER_SIZE,
    BatchEntry,
    BatchFormatError,
    BatchHeader,
    BatchTrailer,
    batch_mac,
    export_batch,
    parse_batch,
    write_batch,
)
from purse.errors import SmartpurseError
from purse.points import PointsUpdate
from purse.protocol import CardState, KeyRef, RecordType
from purse.records import PointsSlot, TransactionRecord
from purse.session import PurseSession
from purse.terminal import CardHotlisted
from purse.terminal_log import FIRST_LOG_ID, GENESIS_MAC, LogKeys, TerminalLog, TerminalLogError
from purse.transport.virtual import VirtualTransport

PROGRAM = 0x0501


class OnePointPerUnit:
    """A minimal loyalty program: one point per 100 minor units; a point pays 1 minor unit."""

    program_id = PROGRAM

    def apply(self, slot: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
        base = slot if slot.program_id else PointsSlot(program_id=PROGRAM)
        earned = price // 100
        points = base.points + earned - redeem_points
        new = replace(base, points=points, visits=base.visits + 1, last_visit=when, tier=1 if points >= 50 else 0)
        return PointsUpdate(slot=new, amount_due=price - redeem_points, earned=earned, redeemed=redeem_points,
                            points_value=redeem_points)


def card_log(card: VirtualTransport, issuer: Issuer) -> list[TransactionRecord]:
    session = PurseSession(card, issuer.pos_sam())
    session.select()
    return session.read_whole_log()


@pytest.fixture
def card(purse_issuer: Issuer) -> VirtualTransport:
    return purse_issuer.card(balance=10_000)


def test_debit_receipt_and_log_match_the_card(card: VirtualTransport, purse_issuer: Issuer) -> None:
    terminal = purse_issuer.terminal(card)
    receipt = terminal.debit(1_250)
    assert (receipt.kind, receipt.amount, receipt.balance, receipt.counter, receipt.time) == (
        "purchase", 1_250, 8_750, 2, NOW)
    logged = [r for _, r, _ in terminal.log.records()]
    assert [r.to_bytes() for r in logged] == [card_log(card, purse_issuer)[0].to_bytes()]
    assert receipt.as_dict()["certificate"] == receipt.certificate.hex()
    with pytest.raises(InsufficientFunds):
        terminal.debit(8_751)
    assert terminal.log.all_pending() == []  # a refused debit leaves nothing behind
    with pytest.raises(ValueError):
        terminal.debit(-1)


def test_debit_with_points_and_redemption(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=100_000)
    terminal = purse_issuer.terminal(card)
    program = OnePointPerUnit()
    first = terminal.debit(6_000, points=program)
    assert (first.points_before, first.points_after, first.points_earned) == (0, 60, 60)
    view = terminal.read_card(PROGRAM)
    assert (view.points.points, view.points.visits, view.points.tier) == (60, 1, 1)
    with pytest.raises(SmartpurseError, match="PIN"):
        terminal.debit(1_000, points=program, redeem_points=20)
    second = terminal.debit(1_000, points=program, redeem_points=20, pin=PIN)
    assert (second.amount, second.points_redeemed, second.points_after, second.price) == (980, 20, 50, 1_000)
    logged = [r.to_bytes() for _, r, _ in terminal.log.records()]
    assert logged == [r.to_bytes() for r in reversed(card_log(card, purse_issuer)[:2])]
    with pytest.raises(SmartpurseError, match="no loyalty program"):
        terminal.debit(100, redeem_points=1)


def test_cancel_last_restores_money_and_points(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=10_000)
    terminal = purse_issuer.terminal(card)
    terminal.debit(3_000, points=OnePointPerUnit())
    receipt = terminal.cancel_last()
    assert (receipt.kind, receipt.amount, receipt.balance, receipt.points_after) == ("cancel", 3_000, 10_000, 0)
    assert terminal.read_card(PROGRAM).points.points == 0
    with pytest.raises(NothingToCancel):
        terminal.cancel_last()
    other = purse_issuer.terminal(card, terminal_id=8)
    terminal.debit(100)
    with pytest.raises(NothingToCancel):
        other.cancel_last()  # only the terminal that debited may cancel
    assert terminal.log.all_pending() == [] and other.log.all_pending() == []


def test_cancel_on_a_card_with_only_a_load(card: VirtualTransport, purse_issuer: Issuer) -> None:
    with pytest.raises(NothingToCancel):
        purse_issuer.terminal(card).cancel_last()


def test_hotlisted_card_is_blocked_instead_of_sold(card: VirtualTransport, purse_issuer: Issuer) -> None:
    number = card_log(card, purse_issuer)[0].card_number
    terminal = purse_issuer.terminal(card, hotlist={number})
    with pytest.raises(CardHotlisted) as info:
        terminal.debit(100)
    assert info.value.receipt is not None and info.value.receipt.kind == "block"
    assert terminal.read_card().info.state == CardState.BLOCKED
    plain = purse_issuer.terminal(card, terminal_id=8)
    with pytest.raises(CardBlocked):
        plain.debit(100)
    with pytest.raises(CardBlocked):
        plain.block()
    with pytest.raises(CardBlocked):
        purse_issuer.credit_terminal(card).load(100)
    records = [r for _, r, _ in terminal.log.records()]
    assert [r.record_type for r in records] == [RecordType.BLOCK]
    assert records[0].to_bytes() == card_log(card, purse_issuer)[0].to_bytes()
    view = plain.read_card()
    assert view.balance == 10_000 and view.log[0].record_type == RecordType.BLOCK


def test_block_on_order_keeps_counters_contiguous(card: VirtualTransport, purse_issuer: Issuer) -> None:
    terminal = purse_issuer.terminal(card)
    terminal.debit(1)
    receipt = terminal.block()
    assert receipt.counter == 3
    assert [r.counter for r in card_log(card, purse_issuer)] == [3, 2, 1]


def test_read_card(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=5_000, slots={1: PointsSlot(program_id=PROGRAM, points=7)})
    view = purse_issuer.terminal(card).read_card(PROGRAM)
    assert (view.balance, view.counter, view.points.points, len(view.log)) == (5_000, 1, 7, 1)
    assert view.info.number == view.log[0].card_number and view.recovered == []


def test_load_needs_a_positive_amount(card: VirtualTransport, purse_issuer: Issuer) -> None:
    loader = purse_issuer.credit_terminal(card)
    assert loader.load(500).balance == 10_500
    with pytest.raises(ValueError):
        loader.load(0)


def test_unresolvable_pending_after_the_card_log_wrapped(card: VirtualTransport, purse_issuer: Issuer) -> None:
    """Pulled after commit, then used 16+ times elsewhere: the record is beyond the card's log."""
    from purse.terminal import TransactionInterrupted

    terminal = purse_issuer.terminal(card)
    card.tear_at(6)  # the journal-clear write of a debit without points: committed, unanswered
    with pytest.raises(TransactionInterrupted):
        terminal.debit(10)
    elsewhere = purse_issuer.terminal(card, terminal_id=8)
    for _ in range(16):
        elsewhere.debit(1)
    terminal.present()
    [pending] = terminal.log.all_pending()
    assert pending.state == "unresolvable"


# -- the MAC-chained log ---------------------------------------------------------------------------

def _log_with_records(purse_issuer: Issuer, path: Path | str = ":memory:", n: int = 4) -> TerminalLog:
    card = purse_issuer.card(balance=10_000)
    terminal = purse_issuer.terminal(card, log_path=path)
    for i in range(n):
        terminal.debit(100 + i)
    return terminal.log


def test_chain_verifies_and_survives_reopening(purse_issuer: Issuer, tmp_path: Path) -> None:
    log = _log_with_records(purse_issuer, tmp_path / "t.db")
    assert log.verify_chain() == 4
    log.close()
    again = TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT, log_key=purse_issuer.log_key(7))
    assert again.verify_chain() == 4
    with pytest.raises(TerminalLogError, match="terminal id"):
        TerminalLog(tmp_path / "t.db", terminal_id=8, merchant_id=MERCHANT, log_key=None)
    with pytest.raises(TerminalLogError):
        TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT, log_key=bytes(16)).verify_chain()


def test_a_log_keeps_each_batch_under_the_key_version_it_was_chained_with(purse_issuer: Issuer,
                                                                          tmp_path: Path) -> None:
    """Library view of a key rotation: the open batch stays on v1, the next one starts on v2,
    and a log opened with only the new key says which version it lacks instead of chaining on."""
    v1, v2 = purse_issuer.log_key(7), bytes(range(16))
    log = _log_with_records(purse_issuer, tmp_path / "t.db", n=2)
    log.close()
    rotated = LogKeys(2, {1: v1, 2: v2})
    log = TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT, log_key=rotated)
    terminal = purse_issuer.terminal(purse_issuer.card(balance=10_000), log_path=":memory:")
    terminal.log = log
    terminal.debit(300)
    first = export_batch(log, tmp_path / "b1.spb")
    terminal.debit(400)
    second = export_batch(log, tmp_path / "b2.spb")
    assert log.verify_chain() == 4
    headers = [parse_batch(s.path.read_bytes()) for s in (first, second)]
    assert [h.header["log_key_version"] for h in headers] == [1, 2] and [s.records for s in (first, second)] == [3, 1]
    for parsed, key in zip(headers, (v1, v2), strict=True):
        assert parsed.trailer["batch_mac"] == batch_mac(key, parsed.header_bytes, parsed.trailer_bytes[:-8])
    terminal.debit(500)
    log.close()
    only_new = TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT, log_key=LogKeys(3, {3: v2}))
    with pytest.raises(TerminalLogError, match="chained under log key version 2, which this key file does not hold"):
        export_batch(only_new, tmp_path / "b3.spb")
    assert not (tmp_path / "b3.spb").exists()


def test_a_log_written_before_key_versions_were_kept_gets_the_version_that_verifies(purse_issuer: Issuer,
                                                                                    tmp_path: Path) -> None:
    log = _log_with_records(purse_issuer, tmp_path / "t.db", n=3)
    log.db.execute("UPDATE journal SET key_version = NULL")
    log.close()
    reopened = TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT,
                           log_key=LogKeys(2, {1: purse_issuer.log_key(7), 2: bytes(16)}))
    assert {v for (v,) in reopened.db.execute("SELECT key_version FROM journal")} == {1}
    assert reopened.verify_chain() == 3
    assert parse_batch(export_batch(reopened, tmp_path / "b.spb").path.read_bytes()).header["log_key_version"] == 1


def test_a_log_has_an_identity_that_its_batches_carry(purse_issuer: Issuer, tmp_path: Path) -> None:
    """A new log draws a random identity and keeps it; a log from before identities, with records, is
    its terminal's first log (what its format 1 batches implied)."""
    log = _log_with_records(purse_issuer, tmp_path / "t.db", n=1)
    identity = log.log_id
    assert len(identity) == 8 and identity != FIRST_LOG_ID
    assert parse_batch(export_batch(log, tmp_path / "b.spb").path.read_bytes()).header["log_id"] == identity
    log.close()
    assert TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=MERCHANT, log_key=None).log_id == identity
    other = _log_with_records(purse_issuer, tmp_path / "u.db", n=1)
    assert other.log_id not in (identity, FIRST_LOG_ID)
    other.db.execute("DELETE FROM meta WHERE key = 'log_id'")  # as a log written before identities
    other.close()
    assert TerminalLog(tmp_path / "u.db", terminal_id=7, merchant_id=MERCHANT, log_key=None).log_id == FIRST_LOG_ID


def test_chain_detects_an_altered_record(purse_issuer: Issuer) -> None:
    log = _log_with_records(purse_issuer)
    raw = bytearray(log.db.execute("SELECT record FROM journal WHERE chain_index=2").fetchone()[0])
    raw[24] ^= 0x01  # the amount
    log.db.execute("UPDATE journal SET record=? WHERE chain_index=2", (bytes(raw),))
    with pytest.raises(TerminalLogError, match="record 2"):
        log.verify_chain()


def test_chain_detects_a_dropped_record(purse_issuer: Issuer) -> None:
    log = _log_with_records(purse_issuer)
    log.db.execute("DELETE FROM journal WHERE chain_index=2")
    with pytest.raises(TerminalLogError):
        log.verify_chain()


def test_chain_detects_a_dropped_last_record(purse_issuer: Issuer) -> None:
    log = _log_with_records(purse_issuer)
    log.db.execute("DELETE FROM journal WHERE chain_index=4")
    with pytest.raises(TerminalLogError):
        log.verify_chain()


def test_chain_detects_reordered_records(purse_issuer: Issuer) -> None:
    log = _log_with_records(purse_issuer)
    rows = {i: log.db.execute("SELECT record, chain_mac FROM journal WHERE chain_index=?", (i,)).fetchone()
            for i in (2, 3)}
    for i, j in ((2, 3), (3, 2)):
        log.db.execute("UPDATE journal SET record=?, chain_mac=? WHERE chain_index=?", (*rows[j], i))
    with pytest.raises(TerminalLogError):
        log.verify_chain()


# -- batches -----------------------------------------------------------------------------------------------

def test_export_batch_and_parse_round_trip(purse_issuer: Issuer, tmp_path: Path) -> None:
    card = purse_issuer.card(balance=10_000)
    terminal = purse_issuer.terminal(card)
    terminal.debit(1_000)
    terminal.cancel_last()
    terminal.debit(250)
    summary = terminal.export_batch(tmp_path / "b1.spb")
    data = (tmp_path / "b1.spb").read_bytes()
    assert summary.records == 3 and summary.batch_seq == 1
    assert (summary.totals.purchase_count, summary.totals.purchase_total) == (2, 1_250)
    assert (summary.totals.cancel_count, summary.totals.cancel_total) == (1, 1_000)
    parsed = parse_batch(data)
    assert parsed.header["terminal_id"] == 7 and parsed.header["merchant_id"] == MERCHANT
    assert parsed.header["prev_chain_mac"] == GENESIS_MAC
    assert [r for r, _ in parsed.entries] == [r.to_bytes() for _, r, _ in terminal.log.records()]
    # construct both ways: parse then build gives the same bytes
    assert BatchHeader.build(parsed.header) == parsed.header_bytes
    assert BatchTrailer.build(parsed.trailer) == parsed.trailer_bytes
    body = b"".join(BatchEntry.build({"record": r, "chain_mac": m}) for r, m in parsed.entries)
    assert parsed.header_bytes + body + parsed.trailer_bytes == data
    # the chain in the file verifies from the previous batch's MAC, and the batch MAC binds it
    key = purse_issuer.log_key(7)
    prev = parsed.header["prev_chain_mac"]
    for record, mac in parsed.entries:
        assert crypto.macs_equal(crypto.mac8(key, record + prev), mac)
        prev = mac
    assert parsed.trailer["final_chain_mac"] == prev
    assert parsed.trailer["batch_mac"] == batch_mac(key, parsed.header_bytes, parsed.trailer_bytes[:-8])
    # the next batch continues the chain
    terminal.debit(1)
    second = parse_batch((terminal.export_batch(tmp_path / "b2.spb").path).read_bytes())
    assert second.header["batch_seq"] == 2 and second.header["prev_chain_mac"] == prev
    assert second.header["first_index"] == 4 and len(second.entries) == 1
    empty = parse_batch(terminal.export_batch(tmp_path / "b3.spb").path.read_bytes())
    assert empty.entries == [] and empty.header["prev_chain_mac"] == second.trailer["final_chain_mac"]


def test_malformed_batches_are_refused(purse_issuer: Issuer, tmp_path: Path) -> None:
    log = _log_with_records(purse_issuer, n=2)
    out = io.BytesIO()
    write_batch(out, log.close_batch(), terminal_id=7, merchant_id=MERCHANT, log_key=bytes(16), log_key_version=1,
                log_id=log.log_id)
    data = out.getvalue()
    assert len(data) == HEADER_SIZE + 2 * ENTRY_SIZE + 64
    with pytest.raises(BatchFormatError):
        parse_batch(data[:50])
    with pytest.raises(BatchFormatError):
        parse_batch(b"XXXX" + data[4:])
    with pytest.raises(BatchFormatError):
        parse_batch(data[:HEADER_SIZE] + data[HEADER_SIZE + ENTRY_SIZE:])  # a record cut out
    with pytest.raises(BatchFormatError):
        parse_batch(data[:4] + b"\x09" + data[5:])  # unknown format version
    with pytest.raises(BatchFormatError):
        parse_batch(data[:-64] + b"XXXX" + data[-60:])  # trailer magic


def test_credit_terminal_and_sam_roles(card: VirtualTransport, purse_issuer: Issuer) -> None:
    assert purse_issuer.pos_sam().holds(KeyRef.DEBIT) and not purse_issuer.pos_sam().holds(KeyRef.CREDIT)
    receipt = purse_issuer.credit_terminal(card).load(1)
    assert (receipt.kind, receipt.counter, receipt.balance) == ("load", 2, 10_001)


def test_a_retry_after_a_pulled_card_surfaces_the_earlier_sale_and_charges_nothing(card: VirtualTransport,
                                                                                   purse_issuer: Issuer) -> None:
    """The vendor's view of a cashier's retry: the torn purchase comes back, not a second one."""
    from purse.terminal import CompletedBefore, ReceiptKind, TransactionInterrupted

    terminal = purse_issuer.terminal(card)
    before = terminal.read_card().balance
    card.tear_at(6)  # the journal-clear write of a debit without points: committed, unanswered
    with pytest.raises(TransactionInterrupted):
        terminal.debit(1_000)
    with pytest.raises(CompletedBefore) as retried:
        terminal.debit(1_000)
    assert retried.value.receipt.kind == ReceiptKind.PURCHASE and retried.value.receipt.amount == 1_000
    assert retried.value.receipt.certificate and terminal.read_card().balance == before - 1_000
    again = terminal.debit(1_000, again=True)  # a second sale, on purpose
    assert again.recovered == () and again.balance == before - 2_000


def test_a_different_sale_after_a_pulled_card_goes_through_and_carries_the_recovered_one(
        card: VirtualTransport, purse_issuer: Issuer) -> None:
    from purse.terminal import TransactionInterrupted

    terminal = purse_issuer.terminal(card)
    card.tear_at(6)
    with pytest.raises(TransactionInterrupted):
        terminal.debit(1_000)
    receipt = terminal.debit(250)
    assert [(r.kind, r.amount) for r in receipt.recovered] == [("purchase", 1_000)]
    assert receipt.amount == 250 and receipt.as_dict()["recovered"][0]["amount"] == 1_000
