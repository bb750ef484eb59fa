"""End to end through real pcscd, vsmartcard-vpcd and pyscard (conftest ``pcsc`` fixture).

The card is the virtual one served by ``VpcdBridge``, so these tests prove the PC/SC path
carries the purse protocol byte for byte: what ``PurseSession`` builds is what pyscard
sends and what the card receives, and the answers come back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import run
from support.pcsc import PcscEnv, personalize

from purse.apdu import CommandApdu
from purse.card.applet import ATR, PurseApplet
from purse.protocol import AID, CLA_ISO, CardState, Ins, KeyRef, RecordType
from purse.session import PurseSession
from purse.transport import TRAFFIC, CardRemoved, TransportError
from purse.transport.pcsc import NoCard, NoReader, PcscTransport, list_readers

pytestmark = pytest.mark.pcsc

SELECT = CommandApdu(CLA_ISO, Ins.SELECT, 0x04, 0x00, AID, 0).to_bytes()


def _traffic(caplog: pytest.LogCaptureFixture, logger: str, prefix: str) -> list[str]:
    """The APDU hex one layer logged at TRAFFIC level, in order."""
    return [r.getMessage().removeprefix(prefix) for r in caplog.records
            if r.name == logger and r.levelno == TRAFFIC and r.getMessage().startswith(prefix)]


def test_issue_load_and_pay_through_pcscd(pcsc: PcscEnv, caplog: pytest.LogCaptureFixture) -> None:
    card = pcsc.serve_blank()
    caplog.set_level(TRAFFIC)
    with PcscTransport(pcsc.reader) as transport:
        info = personalize(transport, pcsc.sam)
        assert info.state == CardState.PERSONALIZED and info.balance == 0 and info.counter == 0

        session = PurseSession(transport, pcsc.sam)
        session.select()
        assert session.open(KeyRef.CREDIT, 7).balance == 0
        loaded = session.credit(5000, 1_700_000_000, 1)
        assert (loaded.balance, loaded.counter) == (5000, 1)
        opened = session.open(KeyRef.DEBIT, 9)
        assert (opened.balance, opened.counter) == (5000, 1)
        paid = session.debit(1250, 1_700_000_001, 1)
        assert (paid.balance, paid.counter) == (3750, 2)
        newest, oldest = session.read_log(0, 2)

    assert (newest.record_type, newest.amount, newest.balance_after, newest.terminal_id) == (
        RecordType.PURCHASE, 1250, 3750, 9)
    assert (oldest.record_type, oldest.amount, oldest.balance_after, oldest.certificate) == (
        RecordType.LOAD, 5000, 5000, loaded.certificate)
    on_card = PurseApplet.from_image_bytes(card.image_bytes())
    assert (on_card.balance, on_card.counter) == (3750, 2)

    built = _traffic(caplog, "purse.session", "> ")
    assert built[0] == SELECT.hex()
    assert _traffic(caplog, "purse.transport.pcsc", "pcsc > ") == built
    assert _traffic(caplog, "purse.transport.vpcd", "vpcd > ") == built
    assert _traffic(caplog, "purse.transport.vpcd", "vpcd < ") == _traffic(caplog, "purse.session", "< ")


def test_connect_returns_the_card_atr_and_substring_picks_the_reader(pcsc: PcscEnv) -> None:
    transport = PcscTransport(pcsc.reader.lower()[-5:])  # "00 00": a unique part of the name
    assert transport.connect() == ATR
    assert transport.reader == pcsc.reader
    transport.disconnect()
    assert pcsc.reader in list_readers()


def test_unknown_reader_lists_the_readers_present(pcsc: PcscEnv) -> None:
    with pytest.raises(NoReader) as error:
        PcscTransport("No Such Reader 99").connect()
    assert isinstance(error.value, TransportError)
    assert pcsc.reader in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(NoReader, match="ambiguous"):
        PcscTransport("Virtual PCD").connect()


def test_empty_reader_is_no_card(pcsc: PcscEnv) -> None:
    empty = pcsc.reader[:-2] + "01"  # vpcd's second slot: nobody serves a card there
    if empty not in list_readers():
        pytest.skip(f"vpcd shows no second slot {empty!r}")
    with pytest.raises(NoCard, match="no card"):
        PcscTransport(empty).connect()


def test_torn_card_is_a_removed_card_and_comes_back_recovered(pcsc: PcscEnv) -> None:
    card = pcsc.serve_personalized()
    with PcscTransport(pcsc.reader) as transport:
        session = PurseSession(transport, pcsc.sam)
        session.select()
        session.open(KeyRef.CREDIT, 7)
        card.writes, card.tear_at = 0, 1  # pull the card while it writes its journal
        with pytest.raises(CardRemoved):
            session.credit(5000, 1_700_000_000, 1)
        pcsc.wait_for_card()
        transport.connect()
        info = PurseSession(transport, pcsc.sam).select()
    assert (info.balance, info.counter) == (0, 0)  # the torn journal was dropped at power-up


def test_apdu_command_through_the_reader(pcsc: PcscEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every answer is printed; the exit status is the last one's: 0 for success, 5 when the card refused."""
    pcsc.serve_personalized()
    code, out, err = run(capsys, "--home", str(tmp_path), "apdu", "-r", pcsc.reader, SELECT.hex(" "), "80 FF 00 00")
    assert code == 5 and err.strip() == "error: the card answered 6D00: ins not supported (SW 6D00)"
    assert f"> {SELECT.hex()}" in out
    assert "9000 (success)" in out and "6D00 (ins not supported" in out
    assert run(capsys, "--home", str(tmp_path), "apdu", "--reader", pcsc.reader, SELECT.hex())[0] == 0
    code, out, _ = run(capsys, "--home", str(tmp_path), "readers", "--json")
    assert code == 0 and {"reader": pcsc.reader, "card": True} in json.loads(out)


def test_a_one_byte_apdu_gets_a_status_word_and_the_reader_keeps_working(pcsc: PcscEnv) -> None:
    """vpcd frames a one-byte APDU like a control byte: the bridge answers it as a card would (6700)."""
    pcsc.serve_personalized()
    transport = PcscTransport(pcsc.reader)
    transport.connect()
    try:
        assert transport.transmit(bytes([0x80])) == bytes.fromhex("6700")
        assert transport.transmit(SELECT)[-2:] == bytes.fromhex("9000")  # not hung: the next command runs
    finally:
        transport.disconnect()
