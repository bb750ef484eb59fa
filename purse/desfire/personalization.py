"""Issuing a blank MIFARE DESFire EV2/EV3 card with the purse profile (docs/desfire.md).

The card is formatted with its PICC master key, gets the application with its files, the
identity, the Transaction MAC file with processing's key, and the diversified keys; last the
PICC master key is replaced by the issuer's and the card level locked, so nothing can be
added or removed without the issuer. Every step is on the card itself, and issuing again
starts from a format, so a card pulled half-way is simply issued again: with the factory key
if the card never got the issuer's, with the issuer's if it did.
"""

from __future__ import annotations

from purse.cardsession import CardInfo, CardNotGenuine
from purse.desfire.commands import DesfireCard, FileType
from purse.desfire.profile import (
    AID,
    APP_KEY_SETTINGS,
    FILES,
    KEY_MASTERS,
    PICC_KEY_LABEL,
    PICC_KEY_SETTINGS,
    TMAC_KEY_LABEL,
    FileNo,
    Identity,
    KeyNo,
    diversification_input,
)
from purse.desfire.session import DesfireSession
from purse.desfire.status import AuthenticationFailed
from purse.protocol import CardState, KeyRef
from purse.records import PointsSlot, number_to_bcd
from purse.sam import SoftwareSam
from purse.transport import Transport

__all__ = ["personalize_desfire", "FACTORY_KEY"]

FACTORY_KEY = bytes(16)  # the PICC master key of a blank card (AES, all zeros)
_AES_PICC_KEY = 0x80  # ChangeKey's key-number byte for the PICC master key as an AES key


def _key(sam: SoftwareSam, ref: KeyRef, version: int, uid: bytes, label: int) -> bytes:
    return sam.diversified_key(ref, version, diversification_input(uid, label, sam.system_identifier))


def _open_card_level(card: DesfireCard, sam: SoftwareSam, version: int) -> tuple[bytes, bytes]:
    """Authenticate at card level with the factory key, else the issuer's; (UID, the key that worked)."""
    card.select_application(0)
    uid = card.get_version().uid
    candidates = [FACTORY_KEY]
    if any(uid):  # a card issued before (or torn after its key changed) answers to the issuer's PICC key
        candidates.append(_key(sam, KeyRef.ADMIN, version, uid, PICC_KEY_LABEL))
    for key in candidates:
        try:
            card.authenticate(0, key)
        except AuthenticationFailed:
            card.select_application(0)
            continue
        return card.get_card_uid(), key
    raise CardNotGenuine("the DESFire card refuses the factory key and the issuer's: another issuer's card")


def personalize_desfire(transport: Transport, sam: SoftwareSam, *, number: str, issuer_id: int, expiry: int,
                        currency: int, max_balance: int, key_version: int, program: int | None = None,
                        tier: int | None = None) -> CardInfo:
    """Format the card in ``transport`` and issue it as card ``number``; returns what it now tells.

    ``sam`` holds the ADMIN, CREDIT, DEBIT and TXN masters of ``key_version`` (the issuer station's);
    ``program`` (and ``tier``) starts the card in a loyalty program, as on the reference card."""
    if not 0 < max_balance < 2**31:
        raise ValueError(f"a DESFire value file holds at most {2**31 - 1} minor units, not {max_balance}")
    transport.connect()
    card = DesfireCard(transport)
    uid, picc_key = _open_card_level(card, sam, key_version)
    card.format_picc()
    card.create_application(AID, APP_KEY_SETTINGS, len(KeyNo))
    card.select_application(AID)
    card.authenticate(KeyNo.MASTER, FACTORY_KEY)  # a new application's keys are all zeros
    for file_no, spec in FILES.items():
        if spec.type is FileType.BACKUP:
            card.create_backup_data_file(file_no, spec.comm, spec.access, spec.size)
        elif spec.type is FileType.VALUE:
            card.create_value_file(file_no, spec.comm, spec.access, 0, max_balance, 0, limited_credit=True)
        elif spec.type is FileType.CYCLIC_RECORD:
            card.create_cyclic_record_file(file_no, spec.comm, spec.access, spec.size, spec.records)
    if program:
        slot = PointsSlot(program_id=program, tier=tier or 0).to_bytes()
        card.write_data(FileNo.POINTS, 0, slot + slot, FILES[FileNo.POINTS].comm)
        card.commit_transaction(transaction_mac=False)  # before the TMAC file: no transaction counts yet
    card.authenticate(KeyNo.LOAD, FACTORY_KEY)  # the identity file's write key, still the factory's
    identity = Identity(number_to_bcd(number), issuer_id, expiry, currency, max_balance, CardState.PERSONALIZED,
                        uid, key_version)
    card.write_data(FileNo.IDENTITY, 0, identity.to_bytes(), FILES[FileNo.IDENTITY].comm)
    card.commit_transaction(transaction_mac=False)  # before the TMAC file: the first transaction counts as 1
    card.authenticate(KeyNo.MASTER, FACTORY_KEY)
    tmac = FILES[FileNo.TMAC]
    card.create_transaction_mac_file(FileNo.TMAC, tmac.comm, tmac.access,
                                     _key(sam, KeyRef.TXN, key_version, uid, TMAC_KEY_LABEL), key_version)
    for key_no in (KeyNo.LOAD, KeyNo.DEBIT, KeyNo.READ):
        card.change_key(key_no, _key(sam, KEY_MASTERS[key_no], key_version, uid, key_no), key_version,
                        old_key=FACTORY_KEY)
    card.change_key(KeyNo.MASTER, _key(sam, KeyRef.ADMIN, key_version, uid, KeyNo.MASTER), key_version)
    issuer_picc = _key(sam, KeyRef.ADMIN, key_version, uid, PICC_KEY_LABEL)
    card.select_application(0)
    card.authenticate(0, picc_key)
    if picc_key != issuer_picc:
        card.change_key(_AES_PICC_KEY, issuer_picc, key_version)
        card.authenticate(0, issuer_picc)
    card.change_key_settings(PICC_KEY_SETTINGS)
    session = DesfireSession(transport, sam)
    info = session.select()
    session.card.abort_transaction()
    return info

