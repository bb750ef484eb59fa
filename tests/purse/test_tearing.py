"""Anti-tearing: pull the card at every persistent write of DEBIT, CREDIT, UNDEBIT and CASH OUT.

For each write index k of the command, the card is torn at its k-th write; after
power-up its memory must equal, byte for byte, either the image before the command or
the image an untorn run produces; and the terminal's recovery must leave exactly one
logged record (the card's own, byte for byte) or none, and nothing pending. The same is
then done with the card's memory in a card-image file, re-opened from disk after the
tear (docs/protocol.md, "Atomic commit and anti-tearing").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.cards import Issuer

from purse.card import layout as L
from purse.card.applet import PurseApplet
from purse.card.storage import MAGIC, FileStorage, MemoryStorage
from purse.terminal import TransactionInterrupted, _CardTerminal
from purse.transport.virtual import VirtualTransport

APP_END = len(MAGIC) + L.APP_MEMORY  # the journal after it may keep stale bytes


def app_memory(transport: VirtualTransport) -> bytes:
    return transport.storage.image_bytes()[:APP_END]


# An operation: given the issuer and a fresh card, return (terminal, action) where the
# action runs the command under test; a setup step may run first (the debit UNDEBIT cancels).
Operation = Callable[[Issuer, VirtualTransport], tuple[_CardTerminal, Callable[[], object]]]


def op_debit(issuer: Issuer, card: VirtualTransport) -> tuple[_CardTerminal, Callable[[], object]]:
    terminal = issuer.terminal(card)
    return terminal, lambda: terminal.debit(1_250)


def op_credit(issuer: Issuer, card: VirtualTransport) -> tuple[_CardTerminal, Callable[[], object]]:
    terminal = issuer.credit_terminal(card)
    return terminal, lambda: terminal.load(2_500)


def op_undebit(issuer: Issuer, card: VirtualTransport) -> tuple[_CardTerminal, Callable[[], object]]:
    terminal = issuer.terminal(card)
    terminal.debit(700)
    return terminal, terminal.cancel_last


def op_cash_out(issuer: Issuer, card: VirtualTransport) -> tuple[_CardTerminal, Callable[[], object]]:
    terminal = issuer.credit_terminal(card)
    return terminal, terminal.cash_out


OPERATIONS = {"debit": op_debit, "credit": op_credit, "undebit": op_undebit, "cash_out": op_cash_out}


def _writes_of(issuer: Issuer, operation: Operation) -> tuple[bytes, bytes, int]:
    """Run the command untorn on a fresh card: (image before, image after, its write count)."""
    card = issuer.card(balance=10_000, uid=bytes.fromhex("04A1B2C3D4E5F6"))
    _, action = operation(issuer, card)
    before = app_memory(card)
    card.storage.writes = 0
    action()
    return before, app_memory(card), card.storage.writes


def _check_recovery(terminal: _CardTerminal, card: VirtualTransport, before: bytes, after: bytes) -> None:
    card.connect()  # power-up: the card rolls its journal forward or drops it
    memory = app_memory(card)
    assert memory in (before, after), "the card is neither in the old nor in the new state"
    terminal.present()  # the cashier presents the card again: recovery runs
    logged = [record for _, record, _ in terminal.log.records()]
    assert terminal.log.all_pending() == []
    counter = PurseApplet(card.storage).counter
    from purse.session import PurseSession

    session = PurseSession(card, terminal.sam)
    session.select()
    last_on_card = session.read_log(0, 1)[0]
    if memory == after:  # the command ran: the terminal holds the card's own record
        assert logged[-1].to_bytes() == last_on_card.to_bytes()
        assert logged[-1].counter == counter
    else:  # it did not: nothing logged beyond what the card holds
        assert all(r.counter <= counter for r in logged)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_tear_at_every_write_in_memory(purse_issuer: Issuer, name: str) -> None:
    operation = OPERATIONS[name]
    before, after, writes = _writes_of(purse_issuer, operation)
    assert writes >= 3 and before != after
    outcomes = set()
    for k in range(1, writes + 1):
        card = purse_issuer.card(balance=10_000, uid=bytes.fromhex("04A1B2C3D4E5F6"))
        terminal, action = operation(purse_issuer, card)
        records_before = len(list(terminal.log.records()))
        assert app_memory(card) == before
        card.tear_at(k)
        with pytest.raises(TransactionInterrupted):
            action()
        _check_recovery(terminal, card, before, after)
        gained = len(list(terminal.log.records())) - records_before
        new_state = app_memory(card) == after
        assert gained == (1 if new_state else 0), f"tear at write {k}: {gained} records logged"
        outcomes.add(new_state)
    assert outcomes == {False, True}, "tearing should reach both the old and the new state"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_tear_at_every_write_on_disk(purse_issuer: Issuer, name: str, tmp_path: Path) -> None:
    operation = OPERATIONS[name]
    before, after, writes = _writes_of(purse_issuer, operation)
    for k in range(1, writes + 1):
        image = tmp_path / f"card-{k}.img"
        card = purse_issuer.file_card(image, balance=10_000, uid=bytes.fromhex("04A1B2C3D4E5F6"))
        terminal, action = operation(purse_issuer, card)
        card.tear_at(k)
        with pytest.raises(TransactionInterrupted):
            action()
        # power-up from what reached the disk, not from the process's cache
        old = card.storage
        assert isinstance(old, FileStorage)
        old.close()
        card.storage = FileStorage(image, L.APP_MEMORY, L.JOURNAL)
        records_before = len([r for _, r, _ in terminal.log.records()])
        _check_recovery(terminal, card, before, after)
        gained = len(list(terminal.log.records())) - records_before
        assert gained == (1 if app_memory(card) == after else 0)
        card.storage.close()


def test_file_card_matches_memory_card(purse_issuer: Issuer, tmp_path: Path) -> None:
    """The disk image and the memory image of the same history are identical."""
    a = purse_issuer.card(balance=10_000, uid=bytes.fromhex("04A1B2C3D4E5F6"))
    b = purse_issuer.file_card(tmp_path / "c.img", balance=10_000, uid=bytes.fromhex("04A1B2C3D4E5F6"))
    assert app_memory(a) == app_memory(b)
    assert isinstance(a.storage, MemoryStorage)
    assert (tmp_path / "c.img").read_bytes()[:APP_END] == app_memory(b)


def test_torn_wrong_pin_still_costs_a_try(purse_issuer: Issuer) -> None:
    """Pulling the card after a wrong PIN must not give the guess back (try counter first)."""
    from purse import apdu
    from purse.protocol import KeyRef
    from purse.session import PurseSession

    card = purse_issuer.card(balance=100)
    session = PurseSession(card, purse_issuer.pos_sam())
    session.select()
    session.open(KeyRef.DEBIT, 7)
    card.tear_at(4)  # after the decrement commit (3 writes), during the reset commit
    from purse.transport import CardRemoved

    with pytest.raises(CardRemoved):
        session.verify_pin("1234")  # the right PIN, but the card left before the reset
    card.connect()
    session.select()
    session.open(KeyRef.DEBIT, 7)
    assert PurseApplet(card.storage).pin_tries in (2, 3)
    with pytest.raises(apdu.WrongPin):
        session.verify_pin("0000")
    card.tear_at(1)
    tries = PurseApplet(card.storage).pin_tries
    with pytest.raises(CardRemoved):
        session.verify_pin("0000")
    card.connect()
    assert PurseApplet(card.storage).pin_tries in (tries, tries - 1)
