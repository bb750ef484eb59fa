"""The security claims of docs/design.md ("Invariants" 2): who can debit, load and certify.

Attackers here are concrete: a skimmer with the wrong DEBIT key, an eavesdropper who
replays a recorded DEBIT, a clone personalized by someone else, a POS SAM asked to load,
a man in the middle who edits the card's answer.
"""

from __future__ import annotations

import struct

import pytest
from support.cards import NOW, PIN, Issuer, RawCard, RecordingTransport, make_issuer

from purse import crypto
from purse.apdu import SecurityStatusNotSatisfied
from purse.card.applet import PurseApplet
from purse.protocol import KeyRef
from purse.sam import MissingKey, SoftwareSam
from purse.session import CardNotGenuine, PurseSession
from purse.terminal import CreditTerminal
from purse.terminal_log import TerminalLog
from purse.transport.virtual import VirtualTransport


def memory(card: VirtualTransport) -> bytes:
    return card.storage.image_bytes()


def purse_of(card: VirtualTransport) -> tuple[int, int]:
    applet = PurseApplet(card.storage)
    return applet.balance, applet.counter


def test_skimmer_with_the_wrong_debit_key_gets_6982(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=10_000)
    skimmer = RawCard(card, make_issuer(b"skimmer"))
    skimmer.select()
    before = purse_of(card)
    _, sw = skimmer.open(KeyRef.DEBIT, verify=False)  # it ignores the card's cryptogram and carries on
    assert sw == 0x9000
    body = struct.pack(">IIIiiB32s", 5_000, NOW, 1, 0, 0, 0, bytes(32))
    assert skimmer.secured(0x54, body)[1] == 0x6982
    assert skimmer.secured(0x54, body)[1] == 0x6982
    assert purse_of(card) == before == (10_000, 1)


def test_skimmer_terminal_is_refused_and_nothing_moves(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=10_000)
    skimmer = make_issuer(b"skimmer").terminal(card)
    image = memory(card)
    with pytest.raises(CardNotGenuine):
        skimmer.debit(5_000)
    assert memory(card) == image and purse_of(card) == (10_000, 1)
    assert list(skimmer.log.records()) == [] and skimmer.log.all_pending() == []


def test_skimmer_session_sending_debit_anyway_gets_security_error(purse_issuer: Issuer) -> None:
    """Through the library: the wrong key's session, forced past the cryptogram check."""
    card = purse_issuer.card(balance=10_000)
    wrong = make_issuer(b"skimmer").pos_sam()
    session = PurseSession(card, wrong)
    session.select()
    with pytest.raises(CardNotGenuine):
        session.open(KeyRef.DEBIT, 7)
    session._crypto = wrong.open_session(KeyRef.DEBIT, 1, session.info.uid, bytes(8), bytes(8))  # forced
    with pytest.raises(SecurityStatusNotSatisfied):
        session.debit(5_000, NOW, 1)
    assert purse_of(card) == (10_000, 1)


def test_replayed_debit_from_an_earlier_session_is_refused(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=10_000)
    wire = RecordingTransport(card)
    terminal = purse_issuer.terminal(wire)  # type: ignore[arg-type]
    terminal.debit(1_000)
    captured = wire.commands(0x54)
    assert len(captured) == 1
    # the eavesdropper presents the card, opens a session of its own (no key needed to open),
    # and replays the captured DEBIT byte for byte
    card.connect()
    attacker = RawCard(card, purse_issuer)
    attacker.select()
    attacker.open(KeyRef.DEBIT, verify=False, terminal_random=bytes(8))
    before = purse_of(card)
    assert attacker.send(captured[0])[1] == 0x6982
    assert purse_of(card) == before == (9_000, 2)
    # even replayed right after the same terminal opens a fresh session of its own
    terminal.session.select()
    terminal.session.open(KeyRef.DEBIT, 7)
    assert card.transmit(captured[0])[-2:] == b"\x69\x82"
    assert purse_of(card) == (9_000, 2)


def test_replayed_card_answers_do_not_fool_the_terminal(purse_issuer: Issuer) -> None:
    """A fake card replaying a genuine card's recorded answers fails the fresh cryptogram."""
    card = purse_issuer.card(balance=10_000)
    wire = RecordingTransport(card)
    purse_issuer.terminal(wire).debit(1_000)  # type: ignore[arg-type]
    answers = iter([a for _, a in wire.exchanges])

    class Replayer:
        def connect(self) -> bytes:
            return b""

        def transmit(self, apdu: bytes) -> bytes:
            return next(answers)

        def disconnect(self) -> None:
            pass

    victim = purse_issuer.terminal(Replayer())  # type: ignore[arg-type]
    with pytest.raises(CardNotGenuine):
        victim.debit(1_000)
    assert list(victim.log.records()) == []


def test_card_with_other_keys_is_not_genuine(purse_issuer: Issuer, purse_other_issuer: Issuer) -> None:
    clone = purse_other_issuer.card(balance=10_000)
    terminal = purse_issuer.terminal(clone)
    with pytest.raises(CardNotGenuine):
        terminal.debit(100)
    with pytest.raises(CardNotGenuine):
        terminal.read_card()
    with pytest.raises(CardNotGenuine):
        purse_issuer.credit_terminal(clone).load(100)
    assert purse_of(clone) == (10_000, 1)


def test_pos_sam_cannot_load(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=100)
    pos = purse_issuer.pos_sam()
    with pytest.raises(MissingKey):
        CreditTerminal(card, pos, TerminalLog(":memory:", terminal_id=7, merchant_id=0, log_key=pos.log_key),
                       terminal_id=7)
    session = PurseSession(card, pos)
    session.select()
    with pytest.raises(MissingKey):
        session.open(KeyRef.CREDIT, 7)
    with pytest.raises(MissingKey):
        pos.card_key(KeyRef.TXN, 1, bytes(7))  # and it cannot certify either
    assert purse_of(card) == (100, 1)


def test_sam_without_log_key_says_so() -> None:
    with pytest.raises(MissingKey):
        _ = SoftwareSam({KeyRef.DEBIT: {1: bytes(16)}}).log_key


def test_certificates_verify_with_the_txn_key_only(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=10_000)
    receipt = purse_issuer.terminal(card).debit(1_234)
    record = receipt.record
    assert record is not None
    uid = record.uid
    txn = purse_issuer.card_key(KeyRef.TXN, uid)
    assert crypto.macs_equal(crypto.mac8(txn, record.certified_bytes()), receipt.certificate)
    others = [
        purse_issuer.card_key(KeyRef.DEBIT, uid),  # the terminal's own card key
        purse_issuer.masters[KeyRef.TXN][1],  # the undiversified master
        purse_issuer.card_key(KeyRef.TXN, bytes(7)),  # another card's TXN key
        make_issuer(b"other").card_key(KeyRef.TXN, uid),
    ]
    for key in others:
        assert not crypto.macs_equal(crypto.mac8(key, record.certified_bytes()), receipt.certificate)
    forged = bytearray(record.certified_bytes())
    forged[21:25] = (1).to_bytes(4, "big")  # the amount
    assert not crypto.macs_equal(crypto.mac8(txn, bytes(forged)), receipt.certificate)


def test_man_in_the_middle_editing_the_answer_is_detected_and_recovered(purse_issuer: Issuer) -> None:
    """A flipped byte in DEBIT's answer fails the response MAC; the terminal keeps the debit
    pending and the next presentation logs the card's true record."""
    card = purse_issuer.card(balance=10_000)

    class Tamper:
        def connect(self) -> bytes:
            return card.connect()

        def transmit(self, apdu: bytes) -> bytes:
            answer = card.transmit(apdu)
            if apdu[1] == 0x54 and answer[-2:] == b"\x90\x00":
                answer = bytes([answer[0] ^ 0xFF]) + answer[1:]
            return answer

        def disconnect(self) -> None:
            pass

    terminal = purse_issuer.terminal(Tamper())  # type: ignore[arg-type]
    with pytest.raises(CardNotGenuine):
        terminal.debit(1_000)
    assert len(terminal.log.all_pending()) == 1
    terminal.transport = card
    terminal.session.transport = card
    terminal.present()
    assert terminal.log.all_pending() == []
    logged = [r for _, r, _ in terminal.log.records()]
    assert len(logged) == 1 and logged[0].balance_after == 9_000


def test_no_key_and_no_pin_ever_crosses_the_wire_in_clear(purse_issuer: Issuer) -> None:
    uid = bytes.fromhex("04010203040506")
    keys = [purse_issuer.card_key(ref, uid) for ref in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)]
    wire = RecordingTransport(VirtualTransport(PurseApplet.manufacture(uid)))
    from purse.protocol import DEFAULT_TRANSPORT_KEY

    session = PurseSession(wire, purse_issuer.issuer_sam())  # type: ignore[arg-type]
    info = session.select()
    session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
    for ref, key in zip((KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN), keys, strict=True):
        assert key == purse_issuer.card_key(ref, info.uid)
        session.put_key(ref, 1, key)
    session.write_id("6001000000000016", 1, 0, 643, 10_000)
    session.set_pin(PIN)
    session.lock()
    session.select()
    session.open(KeyRef.DEBIT, 7)
    session.verify_pin(PIN)
    clear_pin = bytes.fromhex(f"24{PIN}FFFFFFFFFF")
    traffic = b"".join(c + a for c, a in wire.exchanges)
    assert len(wire.exchanges) >= 10
    for secret in [*keys, clear_pin, PIN.encode()]:
        assert secret not in traffic
