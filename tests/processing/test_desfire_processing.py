"""DESFire cards end to end: issued, sold to through the unchanged ``Terminal``, batched with reference
cards, and processed, each DESFire record's Transaction MAC verified with the processing key alone.

Forgery is tried where a terminal could try it: a record the terminal invents (its chain MAC is
good, the card's Transaction MAC is not), a purchase's points write dropped from the batch, and a
card image rolled back to spend the same Transaction MAC Counter twice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import insert
from support import cards as purse_env
from support.backoffice import World

from processing.importer import ImportOptions, ImportResult, import_batch
from processing.keys import ProcessingKeys
from processing.schema.registry import merchants, terminals
from processing.verify import reference_verify
from purse.apdu import CardBlocked
from purse.batch import parse_batch
from purse.desfire.ev2 import CommMode
from purse.desfire.profile import FileNo
from purse.desfire.session import DesfireSession
from purse.desfire.status import AuthenticationFailed
from purse.points import PointsUpdate
from purse.profiles import image_state
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, CardState, KeyRef, RecordType
from purse.records import PointsSlot, RecordFlag
from purse.terminal import CardHotlisted, CompletedBefore, Terminal, TransactionInterrupted
from purse.transport import Transport
from purse.transport.virtual_desfire import VirtualDesfireTransport

PROGRAM = 0x0501
NOW = purse_env.NOW


class OnePointPerUnit:
    program_id = PROGRAM

    def apply(self, slot: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
        base = slot if slot.program_id else PointsSlot(program_id=PROGRAM)
        new = replace(base, points=base.points + price // 100, visits=base.visits + 1, last_visit=when)
        return PointsUpdate(slot=new, amount_due=price, earned=price // 100)


def _keys(issuer: purse_env.Issuer) -> ProcessingKeys:
    return ProcessingKeys(dict(issuer.masters[KeyRef.TXN]), {1: issuer.term_master}, DEFAULT_SYSTEM_IDENTIFIER)


def _import(world: World, issuer: purse_env.Issuer, path: Path) -> ImportResult:
    with world.engine.begin() as conn:
        if not conn.execute(merchants.select()).first():
            conn.execute(insert(merchants).values(merchant_id=purse_env.MERCHANT, name="Shop", fee_bps=100))
            conn.execute(insert(terminals).values(terminal_id=7, merchant_id=purse_env.MERCHANT, log_key_version=1))
    return import_batch(world.engine, path, _keys(issuer),
                        ImportOptions(quarantine_dir=world.tmp / "q", now=lambda: NOW))


def _present(terminal: Terminal, card: Transport) -> None:
    terminal.transport = card
    terminal.session.transport = card  # type: ignore[attr-defined]
    if hasattr(terminal.session, "card"):
        terminal.session.card.transport = card  # type: ignore[attr-defined]


def test_a_terminal_sells_to_both_profiles_and_processing_verifies_every_record(
        processing_db: World, purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=20_000, number="6001000000000032")
    reference = purse_issuer.card(balance=20_000)
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    program = OnePointPerUnit()

    sale = terminal.debit(1_250, points=program)
    assert (sale.balance, sale.counter, sale.points_after) == (18_750, 2, 12)  # the load was transaction 1
    second = terminal.debit(500, points=program)
    cancel = terminal.cancel_last()
    assert (cancel.amount, cancel.balance, cancel.points_after) == (500, 18_750, 12)
    _present(terminal, reference)
    terminal.debit(700, points=program)
    _present(terminal, desfire)
    view = terminal.read_card(PROGRAM)
    assert (view.balance, view.points.points, view.points.visits) == (18_750, 12, 1)
    assert [r.record_type for r in view.log][:3] == [RecordType.CANCEL, RecordType.PURCHASE, RecordType.PURCHASE]
    assert second.counter == 3 and view.log[0].flags == RecordFlag.DESFIRE

    path = tmp_path / "b1.spb"
    terminal.export_batch(path)
    parsed = parse_batch(path.read_bytes())
    assert sorted(parsed.written) == [0, 1, 2]  # the DESFire purchases and the cancel wrote points
    result = _import(processing_db, purse_issuer, path)
    assert (result.status, result.accepted, result.held) == ("accepted", 4, 0), result
    assert reference_verify(path, _keys(purse_issuer)).held == []


def test_a_torn_desfire_purchase_completes_once_at_the_next_presentation(
        processing_db: World, purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=100_000, number="6001000000000032")
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    program = OnePointPerUnit()
    terminal.debit(100, points=program)  # a first sale, so the torn one has a program slot to change
    outcomes = []
    tear = 1
    while True:
        assert isinstance(desfire, VirtualDesfireTransport)
        terminal.read_card(PROGRAM)
        desfire.tear_at(tear)
        try:
            terminal.debit(1_000, points=program)
        except TransactionInterrupted:
            try:
                receipt = terminal.debit(1_000, points=program)  # the cashier's retry
                outcomes.append("dropped, sold again")
            except CompletedBefore as e:
                receipt = e.receipt
                outcomes.append("completed before")
            assert receipt.amount == 1_000
            tear += 1
            continue
        break  # the purchase needed fewer persistent writes than ``tear``: nothing was pulled
    assert "completed before" in outcomes and "dropped, sold again" in outcomes
    path = tmp_path / "b1.spb"
    terminal.export_batch(path)
    result = _import(processing_db, purse_issuer, path)
    assert (result.status, result.held) == ("accepted", 0), result
    sold = 1 + len(outcomes) + 1
    assert result.accepted == sold
    view = terminal.read_card(PROGRAM)
    assert view.balance == 100_000 - 100 - 1_000 * (len(outcomes) + 1)
    assert view.points.points == 1 + 10 * (len(outcomes) + 1)


def test_a_record_the_terminal_invents_is_held_and_a_dropped_points_write_too(
        processing_db: World, purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=10_000, number="6001000000000032")
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    sale = terminal.debit(400, points=OnePointPerUnit())
    assert sale.record is not None
    seq = terminal.log.begin(RecordType.LOAD, sale.card_number, sale.record.uid, sale.counter + 1, 5_000)
    forged = replace(sale.record, record_type=RecordType.LOAD, counter=sale.counter + 1, amount=5_000,
                     balance_after=14_600, terminal_seq=seq)
    terminal.log.complete(seq, forged)  # the terminal's own chain MAC is good; it cannot make the card's TMV
    path = tmp_path / "b1.spb"
    terminal.export_batch(path)
    result = _import(processing_db, purse_issuer, path)
    assert (result.status, result.accepted, result.held) == ("accepted", 1, 1), result
    assert [a["kind"] for a in result.anomalies] == ["bad_certificate"]

    # A purchase whose points write is missing from the batch: processing cannot rebuild the card's TMI.
    other = purse_issuer.desfire_card(balance=10_000, number="6001000000000040")
    second = purse_issuer.terminal(other, terminal_id=8, log_path=tmp_path / "t8.log")
    sold = second.debit(400, points=OnePointPerUnit())
    assert sold.record is not None
    second.log.db.execute("UPDATE journal SET written=NULL")
    with processing_db.engine.begin() as conn:
        conn.execute(insert(terminals).values(terminal_id=8, merchant_id=purse_env.MERCHANT, log_key_version=1))
    path8 = tmp_path / "t8.spb"
    second.export_batch(path8)
    result = _import(processing_db, purse_issuer, path8)
    assert (result.status, result.accepted, result.held) == ("accepted", 0, 1), result


def test_a_card_image_rolled_back_spends_a_counter_twice_and_processing_says_so(
        processing_db: World, purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=10_000, number="6001000000000032")
    assert isinstance(desfire, VirtualDesfireTransport)
    saved = desfire.image_bytes()
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    terminal.debit(3_000)
    desfire.storage._mem[:] = saved  # type: ignore[attr-defined]  # the holder restores the card's memory
    terminal.debit(3_000)  # the same TMC again, with the money back
    path = tmp_path / "b1.spb"
    terminal.export_batch(path)
    result = _import(processing_db, purse_issuer, path)
    kinds = {a["kind"] for a in result.anomalies}
    assert result.status == "accepted" and result.held == 0
    assert kinds & {"clone", "counter_conflict", "duplicate_counter"}, result.anomalies


def test_the_card_refuses_what_the_key_may_not_do(purse_issuer: purse_env.Issuer) -> None:
    desfire = purse_issuer.desfire_card(balance=1_000)
    pos = DesfireSession(desfire, purse_issuer.pos_sam())
    pos.select()
    pos.open(KeyRef.DEBIT, 7)
    with pytest.raises(AuthenticationFailed):  # a POS holds no load key: the card refuses a Credit
        pos.card.credit(FileNo.PURSE, 10, CommMode.FULL)
    desk = DesfireSession(desfire, purse_issuer.credit_sam())
    desk.select()
    desk.open(KeyRef.CREDIT, 900)
    with pytest.raises(AuthenticationFailed):  # nor may the desk's key read or write points
        desk.card.read_data(FileNo.POINTS, 0, 32, CommMode.FULL)


def test_a_hotlisted_desfire_card_is_blocked_on_the_chip_and_its_block_record_verifies(
        processing_db: World, purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=5_000, number="6001000000000032")
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log", hotlist={"6001000000000032"})
    with pytest.raises(CardHotlisted) as caught:
        terminal.debit(100)
    assert caught.value.receipt is not None and caught.value.receipt.kind == "block"
    with pytest.raises(CardBlocked):  # blocked on the chip: no terminal sells to it any more
        purse_issuer.terminal(desfire, terminal_id=7).debit(100)
    assert image_state(desfire.image_bytes()).state == CardState.BLOCKED
    path = tmp_path / "b1.spb"
    terminal.export_batch(path)
    result = _import(processing_db, purse_issuer, path)
    assert (result.status, result.accepted, result.held) == ("accepted", 1, 0), result


@pytest.mark.parametrize("kind", ["load", "cancel"])
def test_a_torn_desfire_load_or_cancel_completes_once(purse_issuer: purse_env.Issuer, tmp_path: Path,
                                                      kind: str) -> None:
    desfire = purse_issuer.desfire_card(balance=50_000, number="6001000000000032")
    assert isinstance(desfire, VirtualDesfireTransport)
    desk = purse_issuer.credit_terminal(desfire, log_path=tmp_path / "desk.log")
    pos = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    outcomes, tear = set(), 1
    while True:
        if kind == "cancel":
            pos.debit(700, points=OnePointPerUnit())
        desfire.tear_at(tear)
        try:
            desk.load(1_000) if kind == "load" else pos.cancel_last()
        except TransactionInterrupted:
            try:
                desk.load(1_000) if kind == "load" else pos.cancel_last()
                outcomes.add("dropped, done again")
            except CompletedBefore:
                outcomes.add("completed before")
            tear += 1
            continue
        break
    assert outcomes == {"dropped, done again", "completed before"}
    records = pos.read_card(PROGRAM).log
    counters = [r.counter for r in records]
    assert counters == sorted(counters, reverse=True) and len(set(counters)) == len(counters)  # no counter twice
    expected = 50_000 + (1_000 * tear if kind == "load" else 0)
    assert pos.read_card(PROGRAM).balance == expected


def test_a_blocked_desfire_card_still_shows_its_balance(purse_issuer: purse_env.Issuer, tmp_path: Path) -> None:
    desfire = purse_issuer.desfire_card(balance=5_000, number="6001000000000032")
    terminal = purse_issuer.terminal(desfire, log_path=tmp_path / "t7.log")
    terminal.debit(1_200)
    terminal.block()
    view = terminal.read_card()
    assert view.info.state == CardState.BLOCKED and view.balance == 3_800
    assert [r.record_type for r in view.log][:2] == [RecordType.BLOCK, RecordType.PURCHASE]
