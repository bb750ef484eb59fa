"""Opening a card by its number: its virtual image, or whatever card is in a PC/SC reader.

Every command that acts on one card (sell, cancel, read, load, PIN reset, unblock) starts
here, so they all accept the same things and refuse the same way: a card in a reader is
checked by SELECT to be the card asked for, before any key is used on it. Either card
profile is opened (the reference card or DESFire: ``purse.profiles``).
"""

from __future__ import annotations

from pathlib import Path

from purse import cardnumber
from purse.cardsession import WrongCard
from purse.errors import UserError
from purse.home import Home
from purse.profiles import select_card
from purse.sam import SoftwareSam
from purse.transport import Transport


def open_card(home: Home, number: str, *, reader: str | None = None, image: Path | None = None) -> Transport:
    """Card ``number`` powered up and selected: in ``reader``, else its image (``image`` or the home's).

    Raises ``InvalidCardNumber`` for a number that cannot be a card's, ``UserError`` when
    there is no image, ``TransportError`` when there is no reader or card, and ``WrongCard``
    when the card presented has another number. The transport is connected; the caller
    disconnects it.
    """
    number = cardnumber.validate(number)
    transport: Transport
    if reader is not None:
        from purse.transport.pcsc import PcscTransport

        transport = PcscTransport(reader)
    else:
        from purse.transport.chips import virtual_transport

        path = image if image is not None else home.card_image(number)
        if not path.is_file():
            raise UserError(f"unknown card {number}: no image {path} (issue cards with `smartpurse cards issue`, "
                            "or present the card with --reader)")
        transport = virtual_transport(path)
    transport.connect()
    found = select_card(transport, SoftwareSam({}))[1].number
    if found != number:
        transport.disconnect()
        raise WrongCard(f"the card presented is {found}, not {number}")
    return transport
