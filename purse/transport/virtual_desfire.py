"""The emulated DESFire EV2 card in process, as a ``Transport``: a blank card to issue, or a card image.

Like ``purse.transport.virtual`` for the reference card, this is the one door to the emulator
(``purse.card.desfire``) for everything outside ``purse.card``: issuing makes blank cards here,
tests pull cards here (``tear_at``), and ``cards serve`` hands this transport to pcscd.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from purse.card.desfire.picc import IMAGE_SIZE, JOURNAL_SIZE, DesfirePicc, manufacture
from purse.card.desfire.state import MAGIC as DESFIRE_IMAGE_MAGIC
from purse.card.storage import MAGIC as STORAGE_MAGIC
from purse.card.storage import CardTorn, FileStorage, MemoryStorage, Storage
from purse.transport import TRAFFIC, CardRemoved, traced

__all__ = ["VirtualDesfireTransport", "IMAGE_BYTES", "DESFIRE_IMAGE_MAGIC"]

log = logging.getLogger(__name__)
IMAGE_BYTES = len(STORAGE_MAGIC) + IMAGE_SIZE + JOURNAL_SIZE  # the size of a DESFire card image file



class VirtualDesfireTransport:
    """A reader with an emulated DESFire EV2 card in it; ``connect`` is a power-up."""

    def __init__(self, storage: Storage, rng: Callable[[int], bytes] | None = None) -> None:
        self.storage = storage
        self._rng = rng
        self.picc: DesfirePicc | None = None

    @classmethod
    def blank(cls, uid: bytes | None = None) -> VirtualDesfireTransport:
        """A card as it leaves the factory: a UID, no application, the default PICC master key."""
        return cls(manufacture(uid))

    @classmethod
    def open(cls, image: Path, *, durable: bool = True) -> VirtualDesfireTransport:
        return cls(FileStorage(Path(image), IMAGE_SIZE, JOURNAL_SIZE, durable=durable))

    @classmethod
    def from_image_bytes(cls, image: bytes) -> VirtualDesfireTransport:
        """The card of an image's bytes, in memory (changes are not written back)."""
        return cls(MemoryStorage(IMAGE_SIZE, JOURNAL_SIZE, image))

    def image_bytes(self) -> bytes:
        return self.storage.image_bytes()

    def connect(self) -> bytes:
        self.picc = DesfirePicc(self.storage, self._rng) if self._rng else DesfirePicc(self.storage)
        return self.picc.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        if self.picc is None:
            self.connect()
        assert self.picc is not None
        tracing = log.isEnabledFor(TRAFFIC)
        if tracing:
            log.log(TRAFFIC, "desfire > %s", traced(apdu))
        try:
            answer = self.picc.process(apdu)
        except CardTorn as e:
            self.picc = None
            raise CardRemoved(str(e)) from e
        if tracing:
            log.log(TRAFFIC, "desfire < %s", answer.hex())
        return answer

    def disconnect(self) -> None:
        self.picc = None

    def tear_at(self, write_index: int) -> None:
        """Pull the card at its k-th persistent write from now (testing anti-tearing)."""
        self.storage.writes = 0
        self.storage.tear_at = write_index
