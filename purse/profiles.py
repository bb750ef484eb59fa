"""Which card is in the field: the reference purse card or a MIFARE DESFire card with the purse profile.

A terminal does not ask its vendor which cards the issuer bought: at every presentation it
tries the profile of the card it saw last, then the other, and runs the verbs of whichever
answered (``purse.cardsession``). A reference card answers its SELECT by AID; a DESFire card
refuses that SELECT (``6A82``) and answers native commands in ``91xx``.
"""

from __future__ import annotations

from enum import StrEnum

from purse.apdu import ApduError
from purse.cardsession import CardInfo, CardNotGenuine, CardSession
from purse.desfire.ev2 import SecureMessagingError
from purse.desfire.session import DesfireSession
from purse.sam import SoftwareSam
from purse.session import PurseSession
from purse.transport import Transport
from purse.transport.virtual import ImageState
from purse.transport.virtual import image_state as reference_image_state

__all__ = ["select_card", "CardChip", "image_state", "image_chip"]


class CardChip(StrEnum):
    """Which card an issuer issues: this project's reference card, or MIFARE DESFire EV2/EV3."""

    REFERENCE = "reference"
    DESFIRE = "desfire"


def select_card(transport: Transport, sam: SoftwareSam, last: CardSession | None = None) -> tuple[CardSession,
                                                                                                   CardInfo]:
    """The session for the card just powered up in ``transport``, and what it told without a key.

    ``last`` (the session of the previous card) is tried first and reused when the card is of
    the same kind. ``CardNotGenuine`` when neither profile answers."""
    kinds: list[type[PurseSession] | type[DesfireSession]] = [PurseSession, DesfireSession]
    if isinstance(last, DesfireSession):
        kinds.reverse()
    errors = []
    for kind in kinds:
        session: CardSession = last if last is not None and isinstance(last, kind) else kind(transport, sam)
        try:
            return session, session.select()
        except (ApduError, SecureMessagingError, CardNotGenuine) as e:
            errors.append(str(e))
    raise CardNotGenuine(f"the card carries neither purse profile ({'; '.join(errors)})")


def image_chip(image: bytes) -> CardChip:
    """Which card a card image holds."""
    from purse.card.storage import MAGIC
    from purse.transport.virtual_desfire import DESFIRE_IMAGE_MAGIC

    return CardChip.DESFIRE if image[len(MAGIC) :].startswith(DESFIRE_IMAGE_MAGIC) else CardChip.REFERENCE


def image_state(image: bytes) -> ImageState:
    """A card image's state and balance, as the chip tells them without a key: a reference card's SELECT;
    a DESFire card's identity file and the balance its newest log record was left with."""
    if image_chip(image) is CardChip.REFERENCE:
        return reference_image_state(image)
    from purse.transport.virtual_desfire import VirtualDesfireTransport

    transport = VirtualDesfireTransport.from_image_bytes(image)
    transport.connect()
    session = DesfireSession(transport, SoftwareSam({}))
    info = session.select()
    log = session.read_whole_log()
    return ImageState(info.state, log[0].balance_after if log else 0)
