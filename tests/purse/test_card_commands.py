"""Every card command: its happy path and each status word it can return (docs/protocol.md).

Driven with ``RawCard`` (bytes built by hand), so each status word is seen as the card
sends it; the host-side translation into domain errors is checked through PurseSession.
"""

from __future__ import annotations

import struct

import pytest
from support.cards import NOW, PIN, Issuer, RawCard

from purse import apdu
from purse.card import layout as L
from purse.card.applet import PurseApplet
from purse.protocol import LOG_RECORDS, POINTS_SLOTS, CardState, KeyRef, RecordType
from purse.records import RECORD_SIZE, PointsSlot, TransactionRecord
from purse.session import PurseSession
from purse.transport.virtual import VirtualTransport

DEBIT, CREDIT, UNDEBIT, BLOCK, UNBLOCK = 0x54, 0x52, 0x56, 0x1E, 0x1F
READ_LOG, VERIFY_PIN, SET_PIN, PUT_KEY, WRITE_FILE, LOCK, OPEN = 0xB2, 0x20, 0x24, 0xD8, 0xD6, 0xEE, 0x8A
PROGRAM = 0x0501


def debit_body(amount: int, when: int = NOW, seq: int = 1, earned: int = 0, redeemed: int = 0, prizes: int = 0,
               slot: bytes = bytes(32)) -> bytes:
    return struct.pack(">IIIiiB32s", amount, when, seq, earned, redeemed, prizes, slot)


def slot(points: int, program: int = PROGRAM, tier: int = 0, visits: int = 0) -> bytes:
    return PointsSlot(program_id=program, points=points, tier=tier, visits=visits).to_bytes()


def state(transport: VirtualTransport) -> tuple[int, int, int]:
    """(state, balance, counter) straight from the card's memory."""
    applet = PurseApplet(transport.storage)
    return applet.state, applet.balance, applet.counter


@pytest.fixture
def card(purse_issuer: Issuer) -> VirtualTransport:
    return purse_issuer.card(balance=10_000, slots={0: PointsSlot(program_id=PROGRAM, points=500)})


@pytest.fixture
def raw(card: VirtualTransport, purse_issuer: Issuer) -> RawCard:
    r = RawCard(card, purse_issuer)
    assert r.select()[1] == 0x9000
    return r


@pytest.fixture
def blank(purse_issuer: Issuer) -> RawCard:
    transport = VirtualTransport(PurseApplet.manufacture(bytes.fromhex("04112233445566")))
    transport.connect()
    r = RawCard(transport, purse_issuer)
    assert r.select()[1] == 0x9000
    return r


# -- dispatch: CLA, INS, malformed APDUs ---------------------------------------------------------

def test_unknown_cla_ins_and_malformed(raw: RawCard) -> None:
    assert raw.send(bytes.fromhex("A0540000"))[1] == 0x6E00
    assert raw.send(bytes.fromhex("80FF0000"))[1] == 0x6D00
    assert raw.send(bytes.fromhex("00B00000"))[1] == 0x6D00  # CLA 00 knows only SELECT
    assert raw.send(bytes.fromhex("805400"))[1] == 0x6700  # not even a header
    assert raw.send(bytes.fromhex("8054000005AABB"))[1] == 0x6700  # Lc lies


# -- SELECT ------------------------------------------------------------------------------------------

def test_select_answers_identity_and_purse(raw: RawCard) -> None:
    data, sw = raw.select()
    assert sw == 0x9000 and len(data) == 39
    f = struct.unpack(">B7s8sIBHIIII", data)
    assert f[0] == CardState.PERSONALIZED and f[2].hex() == "6001000000000016"
    assert (f[3], f[4], f[5], f[6], f[7], f[8]) == (600100, 1, 643, 10_000, 1_000_000, 1)


def test_select_wrong_p1p2_and_wrong_aid(raw: RawCard) -> None:
    from purse.protocol import AID

    assert raw.send(bytes.fromhex("00A40C00") + bytes([len(AID)]) + AID)[1] == 0x6A86
    assert raw.send(bytes.fromhex("00A4040003A00000"))[1] == 0x6A82
    # a failed SELECT deselects: purse commands are refused until the purse is selected again
    assert raw.send(bytes.fromhex("80B2000100"))[1] == 0x6985


def test_purse_commands_need_selection(card: VirtualTransport, purse_issuer: Issuer) -> None:
    card.connect()
    r = RawCard(card, purse_issuer)
    assert r.send(bytes.fromhex("80B2000100"))[1] == 0x6985
    assert r.open(KeyRef.DEBIT)[1] == 0x6985


# -- OPEN SESSION ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", [KeyRef.DEBIT, KeyRef.CREDIT, KeyRef.ADMIN])
def test_open_session_with_each_session_key(raw: RawCard, ref: KeyRef) -> None:
    data, sw = raw.open(ref)  # checks the cryptogram
    assert sw == 0x9000 and len(data) == 56
    _, counter, balance, points, _ = struct.unpack(">8sII32s8s", data)
    assert (counter, balance, points) == (1, 10_000, bytes(32))


def test_open_session_returns_the_programs_points_slot(raw: RawCard) -> None:
    data, _ = raw.open(KeyRef.DEBIT, program_id=PROGRAM)
    assert PointsSlot.from_bytes(data[16:48]).points == 500


def test_open_session_errors(raw: RawCard) -> None:
    assert raw.open(KeyRef.TXN)[1] == 0x6A86  # the TXN key certifies, it never opens a session
    assert raw.open(0x09)[1] == 0x6A86
    assert raw.send(bytes.fromhex("808A0301") + bytes([14]) + bytes(14))[1] == 0x6A86  # P2 != 0
    assert raw.send(bytes.fromhex("808A030005") + bytes(5))[1] == 0x6700
    assert raw.open(KeyRef.TRANSPORT)[1] == 0x9106  # locked card: the transport key is gone


def test_open_session_on_blank_and_blocked_cards(blank: RawCard, raw: RawCard) -> None:
    assert blank.open(KeyRef.DEBIT)[1] == 0x9105
    raw.open(KeyRef.DEBIT)
    assert raw.secured(BLOCK, struct.pack(">II", NOW, 1))[1] == 0x9000
    assert raw.open(KeyRef.DEBIT)[1] == 0x9103
    assert raw.open(KeyRef.CREDIT)[1] == 0x9103
    assert raw.open(KeyRef.ADMIN)[1] == 0x9000  # the issuer can still manage it


def test_open_session_with_wrong_card_key_fails_the_cryptogram(raw: RawCard) -> None:
    with pytest.raises(AssertionError, match="cryptogram"):
        raw.open(KeyRef.DEBIT, key=bytes(16))


# -- secured-command framing (shared by every MACed command) -------------------------------------------

def test_secured_command_without_session(raw: RawCard) -> None:
    raw.mac_key = bytes(16)
    assert raw.secured(DEBIT, debit_body(1))[1] == 0x6982


def test_bad_mac_is_refused_and_ends_the_session(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(DEBIT, debit_body(100), bad_mac=True)[1] == 0x6982
    assert raw.secured(DEBIT, debit_body(100))[1] == 0x6982  # a good MAC no longer helps: no MAC oracle
    assert state(card) == (CardState.PERSONALIZED, 10_000, 1)


def test_mac_shorter_than_8_bytes(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.send(bytes.fromhex("8054000003AABBCC00"))[1] == 0x6700


def test_replayed_command_in_the_same_session_is_refused(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    first = raw.command(DEBIT, debit_body(100, seq=1))
    raw.seq += 1
    assert raw.send(first)[1] == 0x9000
    assert raw.send(first)[1] == 0x6982  # its sequence number is spent
    assert state(card)[1:] == (9_900, 2)


# -- DEBIT --------------------------------------------------------------------------------------------

def test_debit_happy_path(raw: RawCard, card: VirtualTransport, purse_issuer: Issuer) -> None:
    raw.open(KeyRef.DEBIT)
    payload, sw = raw.secured(DEBIT, debit_body(1_250, seq=77))
    assert sw == 0x9000
    balance, counter, certificate = struct.unpack(">II8s", payload)
    assert (balance, counter) == (8_750, 2)
    record = TransactionRecord.from_bytes(raw.send(bytes.fromhex("80B2000100"))[0])
    assert (record.record_type, record.amount, record.balance_after, record.terminal_seq) == (
        RecordType.PURCHASE, 1_250, 8_750, 77)
    txn_key = purse_issuer.card_key(KeyRef.TXN, raw.uid)
    from purse import crypto

    assert record.certificate == certificate == crypto.mac8(txn_key, record.to_bytes()[:64])


def test_debit_wrong_length_and_wrong_session_key(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(DEBIT, debit_body(1)[:-1])[1] == 0x6700
    raw.open(KeyRef.CREDIT)
    assert raw.secured(DEBIT, debit_body(1))[1] == 0x6982


def test_debit_insufficient_funds(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(DEBIT, debit_body(10_001))[1] == 0x9101
    assert raw.secured(DEBIT, debit_body(10_000))[1] == 0x9000  # the whole balance is fine
    assert state(card)[1:] == (0, 2)


def test_debit_expired_card(purse_issuer: Issuer) -> None:
    transport = purse_issuer.card(balance=1_000, expiry=NOW)
    r = RawCard(transport, purse_issuer)
    r.select()
    r.open(KeyRef.DEBIT)
    assert r.secured(DEBIT, debit_body(10, when=NOW + 1))[1] == 0x9104
    assert r.secured(DEBIT, debit_body(10, when=NOW))[1] == 0x9000  # valid through its expiry second


def test_debit_on_a_card_blocked_in_the_same_session(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(BLOCK, struct.pack(">II", NOW, 1))[1] == 0x9000
    assert raw.secured(DEBIT, debit_body(1))[1] == 0x9103


def test_debit_with_points_commits_the_slot(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT, program_id=PROGRAM)
    body = debit_body(1_000, earned=10, slot=slot(510, tier=1, visits=3))
    assert raw.secured(DEBIT, body)[1] == 0x9000
    assert PurseApplet(card.storage).slots[0] == slot(510, tier=1, visits=3)
    record = TransactionRecord.from_bytes(raw.send(bytes.fromhex("80B2000100"))[0])
    assert (record.program_id, record.points_before, record.points_after, record.points_earned, record.tier) == (
        PROGRAM, 500, 510, 10, 1)


def test_debit_points_data_errors(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT, program_id=PROGRAM)
    assert raw.secured(DEBIT, debit_body(1, slot=slot(500, program=0x0999)))[1] == 0x6A80  # other program
    assert raw.secured(DEBIT, debit_body(1, earned=-1, slot=slot(499)))[1] == 0x6A80  # negative earn
    assert raw.secured(DEBIT, debit_body(1, earned=5, slot=slot(506)))[1] == 0x6A80  # more than earned
    raw.open(KeyRef.DEBIT)  # no program in this session: no points data allowed
    assert raw.secured(DEBIT, debit_body(1, earned=1))[1] == 0x6A80
    assert raw.secured(DEBIT, debit_body(1, slot=slot(1)))[1] == 0x6A80


def test_redemption_needs_the_pin_and_enough_points(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT, program_id=PROGRAM)
    assert raw.secured(DEBIT, debit_body(0, redeemed=100, slot=slot(400)))[1] == 0x9108
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN))[1] == 0x9000
    assert raw.secured(DEBIT, debit_body(0, redeemed=501, slot=slot(0)))[1] == 0x9107
    assert raw.secured(DEBIT, debit_body(0, redeemed=500, slot=slot(0)))[1] == 0x9000
    assert PurseApplet(card.storage).slots[0] == slot(0)


def test_debit_new_program_takes_a_free_slot_and_full_card_refuses(purse_issuer: Issuer) -> None:
    full = {i: PointsSlot(program_id=0x100 + i, points=1) for i in range(POINTS_SLOTS)}
    transport = purse_issuer.card(balance=1_000, slots=full)
    r = RawCard(transport, purse_issuer)
    r.select()
    r.open(KeyRef.DEBIT, program_id=PROGRAM)
    assert r.secured(DEBIT, debit_body(1, earned=1, slot=slot(1)))[1] == 0x6A84

    transport = purse_issuer.card(balance=1_000, slots={0: PointsSlot(program_id=0x100)})
    r = RawCard(transport, purse_issuer)
    r.select()
    r.open(KeyRef.DEBIT, program_id=PROGRAM)
    assert r.secured(DEBIT, debit_body(1, earned=1, slot=slot(1)))[1] == 0x9000
    assert PurseApplet(transport.storage).slots[1] == slot(1)


def test_counter_exhausted_card_refuses_money_commands(purse_issuer: Issuer) -> None:
    transport = purse_issuer.card(balance=1_000)
    image = bytearray(transport.storage.image_bytes())
    at = 8 + L.PURSE_AT  # after the image magic
    image[at:at + 12] = struct.pack(">III", 1_000, 0xFFFFFFFF, NOW)
    card = VirtualTransport(PurseApplet.from_image_bytes(bytes(image)).storage)
    card.connect()
    r = RawCard(card, purse_issuer)
    r.select()
    r.open(KeyRef.DEBIT)
    assert r.secured(DEBIT, debit_body(1))[1] == 0x6985
    assert state(card)[1:] == (1_000, 0xFFFFFFFF)


# -- CREDIT -------------------------------------------------------------------------------------------

def test_credit_happy_path_and_errors(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.CREDIT)
    payload, sw = raw.secured(CREDIT, struct.pack(">III", 5_000, NOW, 3))
    assert sw == 0x9000 and struct.unpack(">II8s", payload)[:2] == (15_000, 2)
    assert raw.secured(CREDIT, struct.pack(">III", 985_001, NOW, 4))[1] == 0x9102
    assert raw.secured(CREDIT, struct.pack(">III", 985_000, NOW, 4))[1] == 0x9000  # exactly the maximum
    assert raw.secured(CREDIT, struct.pack(">III", 0, NOW, 5))[1] == 0x6A80
    assert raw.secured(CREDIT, struct.pack(">II", 1, NOW))[1] == 0x6700
    raw.open(KeyRef.DEBIT)
    assert raw.secured(CREDIT, struct.pack(">III", 1, NOW, 6))[1] == 0x6982  # a POS key cannot load
    assert state(card)[1:] == (1_000_000, 3)


def test_credit_expired_card(purse_issuer: Issuer) -> None:
    transport = purse_issuer.card(expiry=NOW)
    r = RawCard(transport, purse_issuer)
    r.select()
    r.open(KeyRef.CREDIT)
    assert r.secured(CREDIT, struct.pack(">III", 1, NOW + 1, 1))[1] == 0x9104


# -- UNDEBIT ------------------------------------------------------------------------------------------

def test_undebit_restores_balance_and_points(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT, program_id=PROGRAM)
    raw.secured(DEBIT, debit_body(1_000, earned=10, slot=slot(510, tier=2)))
    payload, sw = raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 2))
    assert sw == 0x9000 and struct.unpack(">II8s", payload)[:2] == (10_000, 3)
    assert PurseApplet(card.storage).slots[0] == slot(500)
    record = TransactionRecord.from_bytes(raw.send(bytes.fromhex("80B2000100"))[0])
    assert (record.record_type, record.amount, record.points_before, record.points_after,
            record.points_earned) == (RecordType.CANCEL, 1_000, 510, 500, -10)


def test_undebit_in_a_later_session_of_the_same_terminal(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    raw.secured(DEBIT, debit_body(300))
    card.connect()
    raw.select()
    raw.open(KeyRef.DEBIT)
    assert raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 2))[1] == 0x9000
    assert state(card)[1:] == (10_000, 3)


def test_nothing_to_cancel(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(UNDEBIT, struct.pack(">III", 1, NOW, 1))[1] == 0x9109  # last is a load
    raw.secured(DEBIT, debit_body(300))
    assert raw.secured(UNDEBIT, struct.pack(">III", 1, NOW, 2))[1] == 0x9109  # not the last counter
    raw.open(KeyRef.DEBIT, terminal_id=8)
    assert raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 2))[1] == 0x9109  # another terminal's debit
    raw.open(KeyRef.DEBIT)
    assert raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 2))[1] == 0x9000
    assert raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 3))[1] == 0x9109  # cancelled once, not twice
    assert raw.secured(UNDEBIT, struct.pack(">III", 3, NOW, 3))[1] == 0x9109  # a cancel is not a debit
    assert state(card)[1:] == (10_000, 3)


def test_undebit_errors(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    raw.secured(DEBIT, debit_body(300))
    assert raw.secured(UNDEBIT, struct.pack(">II", 2, NOW))[1] == 0x6700
    raw.open(KeyRef.CREDIT)
    assert raw.secured(UNDEBIT, struct.pack(">III", 2, NOW, 2))[1] == 0x6982


# -- BLOCK / UNBLOCK ------------------------------------------------------------------------------------

def test_block_logs_a_record_and_unblock(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    payload, sw = raw.secured(BLOCK, struct.pack(">II", NOW, 9))
    assert sw == 0x9000 and struct.unpack(">II8s", payload)[:2] == (10_000, 2)
    record = TransactionRecord.from_bytes(raw.send(bytes.fromhex("80B2000100"))[0])
    assert (record.record_type, record.counter, record.terminal_seq) == (RecordType.BLOCK, 2, 9)
    assert state(card) == (CardState.BLOCKED, 10_000, 2)
    assert raw.select()[0][0] == CardState.BLOCKED
    raw.open(KeyRef.ADMIN)
    assert raw.secured(BLOCK, struct.pack(">II", NOW, 1))[1] == 0x9103
    assert raw.secured(UNBLOCK, b"")[1] == 0x9000
    assert state(card) == (CardState.PERSONALIZED, 10_000, 2)
    assert raw.secured(UNBLOCK, b"")[1] == 0x6985  # not blocked any more


def test_block_and_unblock_errors(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(BLOCK, struct.pack(">I", NOW))[1] == 0x6700
    assert raw.secured(UNBLOCK, b"")[1] == 0x6982  # only the issuer unblocks
    raw.open(KeyRef.ADMIN)
    assert raw.secured(BLOCK, struct.pack(">II", NOW, 1))[1] == 0x9000
    assert raw.secured(UNBLOCK, b"\x00")[1] == 0x6700


# -- READ LOG -------------------------------------------------------------------------------------------

def test_read_log_newest_first_and_errors(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    for i in range(3):
        raw.secured(DEBIT, debit_body(10 + i, seq=i + 1))
    data, sw = raw.send(bytes.fromhex("80B2000300"))
    assert sw == 0x9000 and len(data) == 3 * RECORD_SIZE
    counters = [TransactionRecord.from_bytes(data[i:i + RECORD_SIZE]).counter for i in range(0, len(data), 72)]
    assert counters == [4, 3, 2]
    assert raw.send(bytes.fromhex("80B2030100"))[1] == 0x9000  # the load, the oldest
    assert raw.send(bytes.fromhex("80B2040100"))[1] == 0x6A83
    assert raw.send(bytes.fromhex("80B2000000"))[1] == 0x6A86
    assert raw.send(bytes.fromhex("80B2000400"))[1] == 0x6A86


def test_log_is_cyclic(raw: RawCard) -> None:
    raw.open(KeyRef.DEBIT)
    for i in range(LOG_RECORDS + 5):
        assert raw.secured(DEBIT, debit_body(1, seq=i + 1))[1] == 0x9000
    assert raw.send(bytes([0x80, 0xB2, LOG_RECORDS - 1, 1, 0]))[1] == 0x9000
    assert raw.send(bytes([0x80, 0xB2, LOG_RECORDS, 1, 0]))[1] == 0x6A83
    oldest = TransactionRecord.from_bytes(raw.send(bytes([0x80, 0xB2, LOG_RECORDS - 1, 1, 0]))[0])
    assert oldest.counter == 1 + LOG_RECORDS + 5 - LOG_RECORDS + 1


# -- PIN -------------------------------------------------------------------------------------------------

def test_verify_pin_counts_down_then_blocks(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(VERIFY_PIN, raw.pin_block("0000"))[1] == 0x63C2
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN))[1] == 0x9000  # a right PIN resets the counter
    assert raw.secured(VERIFY_PIN, raw.pin_block("0000"))[1] == 0x63C2
    assert raw.secured(VERIFY_PIN, raw.pin_block("0000"))[1] == 0x63C1
    assert raw.secured(VERIFY_PIN, raw.pin_block("0000"))[1] == 0x63C0
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN))[1] == 0x6983  # blocked, even with the right PIN
    card.connect()  # survives power-off
    raw.select()
    raw.open(KeyRef.DEBIT)
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN))[1] == 0x6983
    raw.open(KeyRef.ADMIN)
    assert raw.secured(SET_PIN, raw.pin_block("9876"))[1] == 0x9000  # the issuer resets it
    raw.open(KeyRef.DEBIT)
    assert raw.secured(VERIFY_PIN, raw.pin_block("9876"))[1] == 0x9000


def test_verify_pin_errors(raw: RawCard, purse_issuer: Issuer) -> None:
    raw.open(KeyRef.DEBIT)
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN)[:8])[1] == 0x6700
    assert raw.secured(VERIFY_PIN, raw.pin_block(PIN, card_random=bytes(8)))[1] == 0x6A80  # stale block
    assert raw.secured(VERIFY_PIN, raw.pin_block("12"))[1] == 0x6A80  # not a format 2 block

    transport = purse_issuer.card(pin=None)
    r = RawCard(transport, purse_issuer)
    r.select()
    r.open(KeyRef.DEBIT)
    assert r.secured(VERIFY_PIN, r.pin_block(PIN))[1] == 0x6985  # no PIN on this card
    assert r.secured(SET_PIN, r.pin_block(PIN))[1] == 0x6982  # only the issuer sets one


def test_wrong_pin_through_the_session_is_a_domain_error(card: VirtualTransport, purse_issuer: Issuer) -> None:
    session = PurseSession(card, purse_issuer.pos_sam())
    session.select()
    session.open(KeyRef.DEBIT, 7)
    with pytest.raises(apdu.WrongPin) as info:
        session.verify_pin("9999")
    assert info.value.attempts_remaining == 2


# -- personalization -----------------------------------------------------------------------------------

def _open_transport(r: RawCard) -> None:
    from purse.protocol import DEFAULT_TRANSPORT_KEY

    assert r.open(KeyRef.TRANSPORT, 0, key=DEFAULT_TRANSPORT_KEY)[1] == 0x9000


def test_personalization_happy_path(blank: RawCard, purse_issuer: Issuer) -> None:
    from purse import crypto

    _open_transport(blank)
    for ref in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN):
        key = purse_issuer.card_key(ref, blank.uid)
        assert blank.secured(PUT_KEY, crypto.encrypt_block(blank.enc_key, key), ref, 1)[1] == 0x9000
    id_file = struct.pack(">8sIIHI", bytes.fromhex("6001000000000024"), 600100, 0, 978, 50_000)
    assert blank.secured(WRITE_FILE, id_file, 0x01, 0)[1] == 0x9000
    assert blank.secured(WRITE_FILE, slot(7), 0x03, 2)[1] == 0x9000
    assert blank.secured(SET_PIN, blank.pin_block("4321"))[1] == 0x9000
    assert blank.secured(LOCK, b"")[1] == 0x9000
    data, _ = blank.select()
    assert data[0] == CardState.PERSONALIZED and data[8:16].hex() == "6001000000000024"
    assert blank.open(KeyRef.DEBIT)[1] == 0x9000  # the diversified key works: cryptogram checked
    assert blank.open(KeyRef.TRANSPORT, key=bytes(16))[1] == 0x9106


def test_personalization_errors(blank: RawCard, purse_issuer: Issuer) -> None:
    from purse import crypto

    _open_transport(blank)
    key = crypto.encrypt_block(blank.enc_key, bytes(16))
    assert blank.secured(PUT_KEY, key, KeyRef.TRANSPORT, 1)[1] == 0x6A86
    assert blank.secured(PUT_KEY, key, 0x05, 1)[1] == 0x6A86
    assert blank.secured(PUT_KEY, key[:15], KeyRef.ADMIN, 1)[1] == 0x6700
    bad_bcd = struct.pack(">8sIIHI", bytes.fromhex("60010000000000AB"), 1, 0, 978, 1)
    assert blank.secured(WRITE_FILE, bad_bcd, 0x01, 0)[1] == 0x6A80
    assert blank.secured(WRITE_FILE, bad_bcd[:-1], 0x01, 0)[1] == 0x6700
    assert blank.secured(WRITE_FILE, slot(1), 0x03, POINTS_SLOTS)[1] == 0x6A86
    assert blank.secured(WRITE_FILE, slot(1)[:-1], 0x03, 0)[1] == 0x6700
    assert blank.secured(WRITE_FILE, slot(1), 0x02, 0)[1] == 0x6A86
    assert blank.secured(LOCK, b"")[1] == 0x6985  # no keys, no card number yet
    assert blank.secured(LOCK, b"\x00")[1] == 0x6700


def test_lock_needs_keys_of_one_version(blank: RawCard, purse_issuer: Issuer) -> None:
    from purse import crypto

    _open_transport(blank)
    for version, ref in zip((1, 1, 1, 2), (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN), strict=True):
        blank.secured(PUT_KEY, crypto.encrypt_block(blank.enc_key, bytes(16)), ref, version)
    blank.secured(WRITE_FILE, struct.pack(">8sIIHI", bytes.fromhex("6001000000000024"), 1, 0, 978, 1), 0x01, 0)
    assert blank.secured(LOCK, b"")[1] == 0x6985


def test_locked_card_cannot_be_personalized_again(raw: RawCard) -> None:
    from purse import crypto

    raw.open(KeyRef.ADMIN)
    assert raw.secured(PUT_KEY, crypto.encrypt_block(raw.enc_key, bytes(16)), KeyRef.DEBIT, 2)[1] == 0x9106
    assert raw.secured(WRITE_FILE, slot(9), 0x03, 1)[1] == 0x9106
    assert raw.secured(LOCK, b"")[1] == 0x9106
    raw.open(KeyRef.DEBIT)
    assert raw.secured(PUT_KEY, bytes(16), KeyRef.DEBIT, 2)[1] == 0x6982  # a POS key never writes keys


def test_blank_card_refuses_money(blank: RawCard) -> None:
    _open_transport(blank)
    assert blank.secured(DEBIT, debit_body(1))[1] == 0x6982
    assert blank.secured(BLOCK, struct.pack(">II", NOW, 1))[1] == 0x6982


def test_session_errors_become_domain_errors(card: VirtualTransport, purse_issuer: Issuer) -> None:
    session = PurseSession(card, purse_issuer.pos_sam())
    session.select()
    session.open(KeyRef.DEBIT, 7)
    with pytest.raises(apdu.InsufficientFunds):
        session.debit(10_001, NOW, 1)
    with pytest.raises(apdu.NothingToCancel):
        session.undebit(1, NOW, 2)
    credit = PurseSession(card, purse_issuer.credit_sam())
    credit.select()
    credit.open(KeyRef.CREDIT, 900)
    with pytest.raises(apdu.BalanceLimitExceeded):
        credit.credit(990_001, NOW, 1)


def test_session_sequence_exhausted_ends_the_session(raw: RawCard, card: VirtualTransport) -> None:
    raw.open(KeyRef.DEBIT)
    card.applet._session.seq = 0xFFFF  # type: ignore[union-attr]  # 65535 commands later
    assert raw.send(raw.command(DEBIT, debit_body(1), seq=0))[1] == 0x6982  # 65536 wraps to 0 on 2 bytes
    assert state(card)[1:] == (10_000, 1)


def test_an_applet_fault_answers_6f00(raw: RawCard, card: VirtualTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: PurseApplet, apdu: object) -> bytes:
        raise KeyError("fault")

    monkeypatch.setitem(PurseApplet._handlers, 0xB2, broken)
    assert raw.send(bytes.fromhex("80B2000100"))[1] == 0x6F00
