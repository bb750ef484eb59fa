"""The emulated DESFire card through real pcscd, vsmartcard-vpcd and pyscard.

Two clients talk to it: the outside one, the PyPI ``desfire`` package (its own framing and
``91AF`` continuation; it lists applications and files, reads file settings and data in the
clear; its ``authenticate`` is not implemented, so it cannot open a session), and this
project's host side through ``purse.transport.pcsc``, which authenticates, debits under
CommMode.FULL and gets a Transaction MAC the back office verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.cli import run
from support.desfire import AID, IDENTITY, K_DEBIT, K_LOAD, TMAC_KEY, UID, issue_desfire_card
from support.pcsc import PcscEnv

from purse.card.desfire.picc import ATR
from purse.desfire.commands import DesfireCard, Ins
from purse.desfire.ev2 import CommMode
from purse.desfire.tmac import TransactionMacInput, transaction_mac_matches
from purse.transport.pcsc import PcscTransport, reader_states, wait_for_card
from purse.transport.vpcd import DEFAULT_PORT, reader_name

pytestmark = pytest.mark.pcsc


def _served(pcsc: PcscEnv) -> None:
    transport, card = issue_desfire_card()
    card.authenticate(1, K_LOAD)
    card.credit(2, 2500, CommMode.FULL)
    card.commit_transaction()
    pcsc.serve(transport.storage)


def test_an_outside_desfire_client_reads_the_card_through_pcscd(pcsc: PcscEnv) -> None:
    from desfire.pcsc import PCSCDevice
    from desfire.protocol import DESFire, DESFireCommunicationError
    from smartcard.System import readers

    _served(pcsc)
    reader = next(r for r in readers() if str(r) == pcsc.reader)
    connection = reader.createConnection()
    connection.connect()
    try:
        assert bytes(connection.getATR()) == ATR
        client = DESFire(PCSCDevice(connection.component))
        version = bytes(client.communicate(client.wrap_command(Ins.GET_VERSION), "GetVersion"))  # three frames
        assert len(version) == 28 and version[3] == 0x12 and version[14:21] == UID
        wire = AID.to_bytes(3, "little")  # the client reads AIDs most significant byte first
        assert client.get_applications() == [int.from_bytes(wire, "big")]
        client.select_application(int.from_bytes(wire, "big"))
        assert list(client.get_file_ids()) == [1, 2, 3, 4, 15]
        settings = client.get_file_settings(1)
        assert settings["file_length"] == 32 and settings["communication"] == "Plain communication"
        assert bytes(client.read_data_file(1)) == IDENTITY
        with pytest.raises(DESFireCommunicationError, match="Authentication error"):
            client.get_value(2)  # the purse needs the debit key
    finally:
        connection.disconnect()


def test_the_host_pays_and_gets_a_transaction_mac_through_pcscd(pcsc: PcscEnv) -> None:
    _served(pcsc)
    record = bytes(range(64))
    with PcscTransport(pcsc.reader) as transport:
        card = DesfireCard(transport)
        card.select_application(AID)
        card.authenticate(2, K_DEBIT)
        assert card.get_card_uid() == UID
        assert card.get_value(2, CommMode.FULL) == 2500
        card.abort_transaction()
        card.debit(2, 700, CommMode.FULL)
        card.write_record(4, 0, record, CommMode.FULL)
        committed = card.commit_transaction()
        assert committed is not None
        tmc, tmv = committed
        tmi = TransactionMacInput().value(Ins.DEBIT, 2, 700).data(Ins.WRITE_RECORD, 4, 0, record).to_bytes()
        assert tmc == 2 and transaction_mac_matches(TMAC_KEY, tmc, UID, tmi, tmv)
        card.authenticate(2, K_DEBIT)
        assert card.get_value(2, CommMode.FULL) == 1800


def test_cards_serve_puts_a_desfire_image_in_a_reader_every_pcsc_tool_sees(
        pcsc: PcscEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transport, _ = issue_desfire_card()
    image = tmp_path / "desfire.img"
    image.write_bytes(transport.image_bytes())
    port = DEFAULT_PORT + 1  # vpcd's second slot; the first holds the session's card
    server = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--json", "cards", "serve", str(image),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        text = ""
        while not text.endswith("}\n"):  # the one JSON result, printed as soon as the image opened
            text += server.stdout.readline()
        announced = json.loads(text)
        assert announced["reader"] == reader_name(port)
        wait_for_card(reader_name(port), 15)
        code, out, _ = run(capsys, "apdu", "-r", reader_name(port), "906A000000")
        assert code == 0 and f"< {AID.to_bytes(3, 'little').hex()} 9100 (DESFire: success)" in out
    finally:
        server.terminate()
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
        pcsc.wait_until(lambda: dict(reader_states()).get(reader_name(port)) is not True,
                        "pcscd to see the second slot empty again")  # other tests expect it empty
