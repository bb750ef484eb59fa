"""A DESFire EV2 card (the emulator) issued with the purse's file layout, by hand, for the host and
emulator tests: known keys, so a test can authenticate with each one."""

from __future__ import annotations

import json

from purse.desfire.commands import FREE, NEVER, Access, DesfireCard
from purse.desfire.ev2 import CommMode
from purse.transport.virtual_desfire import VirtualDesfireTransport
from support import VECTORS

UID = bytes.fromhex("04A1B2C3D4E5F6")
AID = 0x5350A1
K_LOAD, K_DEBIT = bytes([0x11]) * 16, bytes([0x22]) * 16
IDENTITY = b"SMARTPURSE DESFIRE TEST CARD 001"
TMAC_KEY = bytes.fromhex(json.loads((VECTORS / "desfire_tmac.json").read_text())["transactions"][0]
                         ["app_transaction_mac_key"])


def issue_desfire_card(transport: VirtualDesfireTransport | None = None) -> tuple[VirtualDesfireTransport,
                                                                                  DesfireCard]:
    """A blank emulated card formatted with one application: identity (01, free to read), purse (02),
    points (03), log (04) and the Transaction MAC file (0F); keys 1 (load) and 2 (debit) changed."""
    transport = transport or VirtualDesfireTransport.blank(UID)
    transport.connect()
    card = DesfireCard(transport)
    card.select_application(0)
    card.authenticate(0, bytes(16))
    card.format_picc()
    card.create_application(AID, 0x0B, 5)
    card.select_application(AID)
    card.authenticate(0, bytes(16))
    card.create_std_data_file(1, CommMode.PLAIN, Access(read=FREE, write=0, read_write=0, change=0), 32)
    card.create_value_file(2, CommMode.FULL, Access(read=2, write=2, read_write=1, change=0), 0, 100_000, 0, True)
    card.create_backup_data_file(3, CommMode.FULL, Access(read=2, write=2, read_write=2, change=0), 128)
    card.create_cyclic_record_file(4, CommMode.FULL, Access(read=3, write=1, read_write=2, change=0), 64, 17)
    card.create_transaction_mac_file(15, CommMode.PLAIN, Access(FREE, NEVER, NEVER, 0), TMAC_KEY, 1)
    card.write_data(1, 0, IDENTITY, CommMode.PLAIN)
    card.change_key(1, K_LOAD, 1, old_key=bytes(16))
    card.change_key(2, K_DEBIT, 1, old_key=bytes(16))
    return transport, card
