"""The emulated DESFire EV2 card (purse.card.desfire) and the host's native commands (purse.desfire).

The emulator is held to the published vectors on its own side of the wire (NXP AN12196:
authentication, MAC and FULL frames, tests/vectors/desfire_ev2_an12196.json), and both sides
to the Transaction MAC examples of tests/vectors/desfire_tmac.json. Then the host drives the
emulator through what a purse needs: personalization, access rights, transactions that commit
whole or not at all, tears at every persistent write, replays and forged frames.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support import VECTORS
from support.desfire import AID, K_DEBIT, K_LOAD, TMAC_KEY, UID, issue_desfire_card

from purse.card.desfire.picc import DesfirePicc, _Auth
from purse.card.desfire.state import Comm
from purse.desfire.commands import DesfireCard, Ins
from purse.desfire.ev2 import CommMode, SecureMessagingError
from purse.desfire.status import AuthenticationFailed, BoundaryError, PermissionDenied
from purse.desfire.tmac import TransactionMacInput, session_mac_key, transaction_mac, transaction_mac_matches
from purse.transport import CardRemoved
from purse.transport.virtual_desfire import VirtualDesfireTransport

AN12196 = json.loads((VECTORS / "desfire_ev2_an12196.json").read_text())
TMAC = json.loads((VECTORS / "desfire_tmac.json").read_text())
h = bytes.fromhex


def _cbc_decrypt(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    d = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    return d.update(data) + d.finalize()


# -- the emulator's side of the published frames ------------------------------------------------
@pytest.mark.parametrize("v", AN12196["authenticate_ev2_first"], ids=lambda v: v["where"])
def test_the_emulator_authenticates_as_an12196_shows(v: dict[str, str]) -> None:
    rnd_b = _cbc_decrypt(h(v["key"]), h(v["response_1_enc_rnd_b"]))
    randoms = iter([rnd_b, h(v["ti"])])
    transport = VirtualDesfireTransport.blank(UID)
    transport._rng = lambda n: next(randoms)
    transport.connect()
    first = transport.transmit(h("9071000002000000"))
    assert first == h(v["response_1_enc_rnd_b"]) + h("91AF")
    second = transport.transmit(h("90AF000020") + h(v["command_2_data_enc_rnd_a_rnd_b_rot"]) + b"\x00")
    assert second == h(v["response_2_enc"]) + h("9100")
    assert transport.picc is not None and transport.picc.auth is not None
    assert (transport.picc.auth.enc, transport.picc.auth.mac) == (h(v["ses_auth_enc_key"]), h(v["ses_auth_mac_key"]))


def _picc_in_session(v: dict[str, object]) -> DesfirePicc:
    picc = DesfirePicc(VirtualDesfireTransport.blank(UID).storage)
    picc.auth = _Auth(0, h(str(v.get("ses_auth_enc_key", "00" * 16))), h(str(v["ses_auth_mac_key"])), h(str(v["ti"])),
                      int(str(v["cmd_ctr"])))
    return picc


@pytest.mark.parametrize("v", AN12196["mac_mode"], ids=lambda v: v["where"])
def test_the_emulator_checks_and_makes_mac_mode_frames(v: dict[str, object]) -> None:
    picc = _picc_in_session(v)
    wrapped = h(str(v["wrapped_apdu"]))
    assert picc._open_command(wrapped[1], wrapped[5:-1], Comm.MAC, 0) == h(str(v["plain_apdu"]))[5:-1]
    assert picc._seal_answer(h(str(v["response_data"])), Comm.MAC) == h(str(v["response"]))[:-2]
    forged = bytearray(wrapped[5:-1])
    forged[0] ^= 1
    with pytest.raises(Exception, match="INTEGRITY_ERROR"):
        _picc_in_session(v)._open_command(wrapped[1], bytes(forged), Comm.MAC, 0)


@pytest.mark.parametrize("v", AN12196["full_mode"], ids=lambda v: v["where"])
def test_the_emulator_opens_and_seals_full_mode_frames(v: dict[str, object]) -> None:
    picc = _picc_in_session(v)
    wrapped, plain = h(str(v["wrapped_apdu"])), h(str(v["plain_apdu"]))
    data = wrapped[5:-1] if len(wrapped) > 6 else b""
    if len(plain) > 6:
        assert picc._open_command(wrapped[1], data, Comm.FULL, int(str(v["header_length"]))) == plain[5:-1]
    else:
        assert picc._open_command(wrapped[1], data, Comm.FULL, 0) == b""
    picc.auth.counter = int(str(v["cmd_ctr"]))  # type: ignore[union-attr]
    answer_mode = Comm.FULL if v["response_data"] else Comm.MAC
    assert picc._seal_answer(h(str(v["response_data"])), answer_mode) == h(str(v["response"]))[:-2]


# -- the Transaction MAC examples, on both sides ---------------------------------------------------
def _tmi(commands: list[dict[str, object]]) -> TransactionMacInput:
    tmi = TransactionMacInput()
    for c in commands:
        ins = Ins(int(str(c["ins"]), 16))
        if "value" in c:
            tmi.value(ins, int(str(c["file_no"])), int(str(c["value"])))
        else:
            tmi.data(ins, int(str(c["file_no"])), int(str(c["offset"])), h(str(c["data"])))
    return tmi


@pytest.mark.parametrize("v", TMAC["transactions"], ids=lambda v: v["where"][:40])
def test_the_back_office_recomputes_the_transaction_mac_examples(v: dict[str, object]) -> None:
    key, uid, tmc = h(str(v["app_transaction_mac_key"])), h(str(v["uid"])), int(str(v["tmc"]))
    tmi = _tmi(v["commands"]).to_bytes()  # type: ignore[arg-type]
    assert tmi == h(str(v["tmi"]))
    assert session_mac_key(key, tmc, uid) == h(str(v["ses_tm_mac_key"]))
    assert transaction_mac(key, tmc, uid, tmi) == h(str(v["tmv"]))
    assert transaction_mac_matches(key, tmc, uid, tmi, h(str(v["tmv"])))
    assert not transaction_mac_matches(key, tmc + 1, uid, tmi, h(str(v["tmv"])))  # a counter rolled back or on
    assert not transaction_mac_matches(key, tmc, uid, tmi[:-1] + b"\x01", h(str(v["tmv"])))


# -- the host against the emulator ---------------------------------------------------------------
def _load(card: DesfireCard, amount: int) -> tuple[int, bytes]:
    card.authenticate(1, K_LOAD)
    card.credit(2, amount, CommMode.FULL)
    result = card.commit_transaction()
    assert result is not None
    return result


def test_a_purchase_commits_value_points_and_log_together_under_one_transaction_mac() -> None:
    transport, card = issue_desfire_card()
    _load(card, 5000)
    v = TMAC["transactions"][0]
    slot, record = h(v["commands"][1]["data"]), h(v["commands"][2]["data"])
    card.authenticate(2, K_DEBIT)
    assert card.get_value(2, CommMode.FULL) == 5000
    card.abort_transaction()  # the reads stay out of the TMI: the back office rebuilds it from the record
    card.debit(2, 1200, CommMode.FULL)
    card.write_data(3, 0, slot, CommMode.FULL)
    card.write_record(4, 0, record, CommMode.FULL)  # 95 bytes on the wire: sent in two frames
    tmc, tmv = card.commit_transaction() or (0, b"")
    assert tmc == 2
    expected = TransactionMacInput().value(Ins.DEBIT, 2, 1200).data(Ins.WRITE_DATA, 3, 0, slot).data(
        Ins.WRITE_RECORD, 4, 0, record).to_bytes()
    assert transaction_mac_matches(TMAC_KEY, tmc, UID, expected, tmv)
    card.authenticate(2, K_DEBIT)
    assert card.get_value(2, CommMode.FULL) == 3800
    assert card.read_data(3, 0, 32, CommMode.FULL) == slot
    assert card.read_records(4, 0, 0, CommMode.FULL) == record  # 64 + 8 bytes of answer: two frames
    assert card.read_data(15, 0, 12, CommMode.PLAIN) == tmc.to_bytes(4, "little") + tmv


def test_keys_keep_to_their_rights() -> None:
    _, card = issue_desfire_card()
    _load(card, 1000)
    card.authenticate(2, K_DEBIT)
    with pytest.raises(AuthenticationFailed):  # the debit key cannot credit
        card.credit(2, 10, CommMode.FULL)
    assert card.session is None  # an error ends the session, on both sides
    card.authenticate(2, K_DEBIT)
    card.debit(2, 300, CommMode.FULL)
    card.commit_transaction()
    card.authenticate(2, K_DEBIT)
    with pytest.raises(BoundaryError):  # a cancel gives back at most the last transaction's debits
        card.limited_credit(2, 301, CommMode.FULL)
    card.authenticate(2, K_DEBIT)
    card.limited_credit(2, 300, CommMode.FULL)
    card.commit_transaction()
    card.authenticate(2, K_DEBIT)
    with pytest.raises(BoundaryError):  # and only once
        card.limited_credit(2, 1, CommMode.FULL)
    card.authenticate(2, K_DEBIT)
    with pytest.raises(BoundaryError):  # no value below the lower limit
        card.debit(2, 1001, CommMode.FULL)
    card.authenticate(3, bytes(16))
    with pytest.raises(AuthenticationFailed):  # the read key reads the log, not the purse
        card.get_value(2, CommMode.FULL)
    card.authenticate(3, bytes(16))
    with pytest.raises(AuthenticationFailed):  # and cannot debit it
        card.debit(2, 1, CommMode.FULL)
    card.select_application(AID)
    with pytest.raises(AuthenticationFailed):  # no debit without authentication at all
        card.debit(2, 1, CommMode.PLAIN)
    with pytest.raises(AuthenticationFailed):
        card.authenticate(2, K_LOAD)  # the wrong key does not open a session


def test_a_replayed_or_altered_frame_is_refused() -> None:
    transport, card = issue_desfire_card()
    _load(card, 1000)
    card.authenticate(2, K_DEBIT)
    sent: list[bytes] = []
    real = transport.transmit

    def recording(apdu: bytes) -> bytes:
        sent.append(apdu)
        return real(apdu)

    transport.transmit = recording  # type: ignore[method-assign]
    card.debit(2, 100, CommMode.FULL)
    debit_apdu = sent[-1]
    assert transport.transmit(debit_apdu)[-2:] == h("911E")  # the same frame again: the counter moved on
    card.authenticate(2, K_DEBIT)
    altered = bytearray(debit_apdu)
    altered[7] ^= 0x01
    assert transport.transmit(bytes(altered))[-2:] == h("911E")
    card.authenticate(2, K_DEBIT)
    assert card.get_value(2, CommMode.FULL) == 1000  # the first debit was never committed


def test_an_answer_altered_on_the_way_is_refused_by_the_host() -> None:
    transport, card = issue_desfire_card()
    _load(card, 1000)
    card.authenticate(2, K_DEBIT)
    real = transport.transmit
    transport.transmit = lambda apdu: bytes(b ^ (i == 0) for i, b in enumerate(real(apdu)))  # type: ignore
    with pytest.raises(SecureMessagingError):
        card.get_value(2, CommMode.FULL)
    assert card.session is None


def test_power_loss_drops_an_uncommitted_transaction_and_abort_drops_it_too() -> None:
    transport, card = issue_desfire_card()
    _load(card, 1000)
    card.authenticate(2, K_DEBIT)
    card.debit(2, 400, CommMode.FULL)
    card.abort_transaction()
    card.debit(2, 300, CommMode.FULL)
    transport.connect()  # pulled and presented again
    card.session = None
    card.select_application(AID)
    card.authenticate(2, K_DEBIT)
    assert card.get_value(2, CommMode.FULL) == 1000


def _purchase_to_commit() -> tuple[VirtualDesfireTransport, DesfireCard]:
    """A card with 1000 on it, and a purchase of 250 waiting for its CommitTransaction."""
    transport, card = issue_desfire_card()
    _load(card, 1000)
    card.authenticate(2, K_DEBIT)
    card.debit(2, 250, CommMode.FULL)
    card.write_data(3, 0, b"\x07" * 32, CommMode.FULL)
    card.write_record(4, 0, b"\x09" * 64, CommMode.FULL)
    return transport, card


def _commit_writes() -> int:
    transport, card = _purchase_to_commit()
    before = transport.storage.writes
    card.commit_transaction()
    return transport.storage.writes - before


def _state(card: DesfireCard, transport: VirtualDesfireTransport) -> tuple[int, bytes, int, bytes]:
    transport.connect()
    card.session = None
    card.select_application(AID)
    card.authenticate(2, K_DEBIT)
    value, points = card.get_value(2, CommMode.FULL), card.read_data(3, 0, 32, CommMode.FULL)
    try:
        records = len(card.read_records(4, 0, 0, CommMode.FULL)) // 64
    except BoundaryError:  # an empty record file has no record 0
        records = 0
        card.authenticate(2, K_DEBIT)
    card.abort_transaction()
    return value, points, records, card.read_data(15, 0, 12, CommMode.PLAIN)


def test_a_tear_at_any_persistent_write_of_a_commit_leaves_all_of_it_or_none() -> None:
    writes = _commit_writes()
    assert writes >= 3  # the journal, the pages, the journal cleared
    outcomes = set()
    for k in range(1, writes + 1):
        transport, card = _purchase_to_commit()
        transport.tear_at(k)
        with pytest.raises(CardRemoved):
            card.commit_transaction()
        value, points, records, tmac = _state(card, transport)
        assert (value, points, records) in {(1000, bytes(32), 0), (750, b"\x07" * 32, 1)}, k
        assert int.from_bytes(tmac[:4], "little") == (2 if value == 750 else 1)
        outcomes.add(value)
    assert outcomes == {1000, 750}  # torn early: nothing; torn after the journal: everything


def test_a_card_image_survives_a_restart(tmp_path: object) -> None:
    from pathlib import Path

    transport, card = issue_desfire_card()
    _load(card, 4321)
    image = Path(str(tmp_path)) / "card.img"
    image.write_bytes(transport.image_bytes())
    again = VirtualDesfireTransport.open(image)
    again.connect()
    card = DesfireCard(again)
    card.select_application(AID)
    card.authenticate(2, K_DEBIT)
    assert card.get_value(2, CommMode.FULL) == 4321
    assert card.get_card_uid() == UID


def test_the_card_lists_what_an_outside_tool_asks_for() -> None:
    _, card = issue_desfire_card()
    card.select_application(0)
    assert card.get_version().generation == "EV2" and card.get_version().uid == UID
    assert card.get_application_ids() == [AID]
    card.select_application(AID)
    assert card.get_file_ids() == [1, 2, 3, 4, 15]
    settings = card.get_file_settings(2)
    assert (settings.upper, settings.limited_credit, settings.access.read_write) == (100_000, True, 1)
    assert card.get_file_settings(4).max_records == 17
    assert card.get_key_version(2) == 1
    with pytest.raises(PermissionDenied):
        card.format_picc()  # formatting is a card-level command


def test_authentication_answers_fail_when_forged() -> None:
    transport, card = issue_desfire_card()
    real = transport.transmit
    answers: Iterator[int] = iter(range(2))

    def forge(apdu: bytes) -> bytes:
        answer = real(apdu)
        if apdu[1] == 0xAF and next(answers, 9) == 0:
            return bytes((answer[0] ^ 1,)) + answer[1:]
        return answer

    transport.transmit = forge  # type: ignore[method-assign]
    with pytest.raises(SecureMessagingError, match="RndA"):
        card.authenticate(2, K_DEBIT)
    with pytest.raises(AuthenticationFailed):  # a key the card does not hold fails at the card
        card.authenticate(2, bytes(16))
