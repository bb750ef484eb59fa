"""The card life cycle after issuing: block, unblock, replace, PIN reset, and what we know of a card.

Blocking is a registry fact (the lost card is out of reach); processing's hotlist turns
it into a signed list terminals enforce. A replacement blocks the old card, issues a
new one as a one-card batch (so a re-run finishes it rather than issuing a second),
and records the transfer of the old card's value, which processing moves once the old
card's last batches are in and a desk then loads onto the new card (``smartpurse load NEW
--transfer``; docs/personalization.md, "Life cycle").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from personalization import registry
from personalization.issuing import (
    CardPresenter,
    CardProfile,
    CardRequest,
    IssueReport,
    generate_pin,
    issue_to_images,
    issue_to_reader,
    issuer_sam,
)
from personalization.keystore import Keystore
from processing.schema.registry import CardStatus
from purse.cardaccess import open_card
from purse.errors import UserError
from purse.home import Home
from purse.profiles import CardChip, image_chip, image_state
from purse.protocol import CardState, KeyRef
from purse.session import PurseSession
from purse.transport import Transport

ISSUER_TERMINAL_ID = 0  # the terminal id the issuer's station uses in ADMIN sessions


def image_path(home: Home, number: str, row: dict[str, Any] | None = None) -> Path:
    """Where card ``number``'s virtual image is: as registered, else the home's cards folder."""
    if row is not None and row.get("image"):
        return Path(row["image"])
    return home.cards_dir / f"{number}.card"


def _open(home: Home, number: str, reader: str | None, row: dict[str, Any]) -> Transport:
    """The card itself: in a PC/SC reader when ``reader`` is given, else its registered virtual image."""
    return open_card(home, number, reader=reader, image=None if reader is not None else image_path(home, number, row))


def _admin_session(transport: Transport, keystore: Keystore) -> PurseSession:
    session = PurseSession(transport, issuer_sam(keystore))
    session.select()
    session.open(KeyRef.ADMIN, ISSUER_TERMINAL_ID)
    return session


def card_details(engine: Engine, number: str) -> dict[str, Any]:
    """The registry's row of card ``number``, with the value transfer it is part of, if any, and which card
    profile it is when its image is at hand (reference or DESFire)."""
    row = registry.card_row(engine, number)
    row["uid"] = row["uid"].hex()
    image = Path(row["image"]) if row.get("image") else None
    if image is not None and image.is_file():
        row["profile"] = image_chip(image.read_bytes()).value
    transfer = registry.card_transfer(engine, number)
    if transfer is not None:
        row["transfer"] = transfer
    row.update(registry.card_return(engine, number))
    requests = registry.card_requests(engine, number)
    if requests:
        row["requests"] = requests
    return row


def block(engine: Engine, number: str, reason: str) -> dict[str, Any]:
    return registry.set_blocked(engine, number, reason)


def unblock(engine: Engine, home: Home, number: str, issuer: Callable[[], Keystore]) -> dict[str, Any]:
    """Unblock in the registry; a virtual card a terminal blocked on-chip is unblocked too (ADMIN)."""
    row = registry.set_unblocked(engine, number)
    path = image_path(home, number, row)
    if path.is_file():
        image = path.read_bytes()
        if image_state(image).state == CardState.BLOCKED:
            if image_chip(image) is CardChip.DESFIRE:
                raise UserError(f"card {number} is a DESFire card a terminal blocked on the chip: it cannot be "
                                "unblocked yet (docs/desfire.md); issue a replacement with `smartpurse cards replace`")
            transport = _open(home, number, None, row)
            try:
                _admin_session(transport, issuer()).unblock()
            finally:
                transport.disconnect()
            row["unblocked_on_card"] = True
    return row


def reset_pin(engine: Engine, home: Home, keystore: Keystore, number: str, pin: str | None,
              reader: str | None = None) -> str:
    """SET PIN under ADMIN: the issuer gives redemption back after too many wrong PINs."""
    row = registry.card_row(engine, number)
    if row["state"] == CardStatus.REPLACED:
        raise UserError(f"card {number} was replaced by {row['replaced_by']}; reset that card's PIN")
    if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 12):
        raise UserError("a PIN is 4 to 12 digits")
    path = image_path(home, number, row)
    if reader is None and path.is_file() and image_chip(path.read_bytes()) is CardChip.DESFIRE:
        raise UserError(f"card {number} is a DESFire card: it has no PIN to reset (docs/desfire.md)")
    pin = pin or generate_pin(home.issuer.pin_length)
    transport = _open(home, number, reader, row)
    try:
        _admin_session(transport, keystore).set_pin(pin)
    finally:
        transport.disconnect()
    return pin


def _balance_on_card(home: Home, number: str, row: dict[str, Any]) -> int | None:
    """What the old card's chip says, when its image is at hand (a damaged, not lost, card)."""
    path = image_path(home, number, row)
    if not path.is_file():
        return None
    return image_state(path.read_bytes()).balance


def replace(engine: Engine, home: Home, keystore: Keystore, profile: CardProfile, number: str, reason: str, *,
            folder: Path | None = None, reader: str | None = None, present: CardPresenter | None = None,
            uid_source: Callable[[int], bytes] = os.urandom,
            at: datetime | None = None) -> tuple[dict[str, Any], IssueReport]:
    """Block ``number``, issue its replacement, record the value transfer. Safe to run again.

    ``uid_source`` and ``at`` (the time of the block and of the request, default now) let a simulation
    such as the demo replay exactly."""
    old = registry.card_row(engine, number)
    if old["state"] == CardStatus.REPLACED:
        raise UserError(f"card {number} was already replaced by {old['replaced_by']}")
    if old["state"] == CardStatus.RETURNED:
        raise UserError(f"card {number} was returned and cashed out: issue the holder a new card instead")
    # The holder paid the deposit once: it stays with the old card and is refunded when the replacement
    # is returned (processing.card_return), so the new card is issued without one.
    profile = dataclasses.replace(profile, deposit=0)
    if old["state"] == CardStatus.ISSUED:
        registry.set_blocked(engine, number, f"replaced: {reason}", at)
    request = CardRequest(0, program=old["program"], tier=old["tier"])
    old_image = image_path(home, number, old)
    if reader is None and old_image.is_file() and image_chip(old_image.read_bytes()) is CardChip.DESFIRE:
        profile = dataclasses.replace(profile, chip=CardChip.DESFIRE)  # the holder gets the card they had
    batch = f"replace-{number}"
    sam = issuer_sam(keystore)
    if reader is not None:
        if present is None:
            raise UserError("issuing into a reader needs a way to present the card")
        report = issue_to_reader(engine, sam, profile, [request], batch, reader, present, source=number)
    else:
        report = issue_to_images(engine, sam, profile, [request], batch, folder or home.cards_dir, source=number,
                                 uid_source=uid_source)
    (new,) = registry.batch_numbers(engine, batch)
    balance = _balance_on_card(home, number, old)
    registry.record_replacement(engine, old, new, reason, balance, at)
    return {"old": number, "new": new, "reason": reason, "balance_on_card": balance,
            "holder": old.get("holder_name")}, report
