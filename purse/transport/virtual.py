"""The virtual card in process: the reference applet over a card image.

Everything outside ``purse`` that makes or looks at a virtual card goes through this
module (a blank chip for issuing, the bytes to save, what an image holds), so the
issuer station and processing never depend on the applet's internals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from purse.card.applet import PurseApplet
from purse.card.storage import CardTorn, Storage
from purse.protocol import CardState
from purse.transport import TRAFFIC, CardRemoved, traced

__all__ = [
    "VirtualTransport",
    "ImageState",
    "image_state",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageState:
    """What a card image holds that the issuer may read without a key: its state and balance."""

    state: CardState
    balance: int


def image_state(image: bytes) -> ImageState:
    """The state and balance in a card image's bytes, as the chip would report them after power-up."""
    card = PurseApplet.from_image_bytes(image)
    return ImageState(card.state, card.balance)


class VirtualTransport:
    """A reader with a virtual card in it.

    ``connect`` is a power-up: RAM state (selection, session) is lost and a journal left
    by a tear is rolled forward or dropped, as a real chip does at reset. The applet object
    is rebuilt from persistent memory only when that memory may differ from what it holds
    (after a tear, or a commit made through another applet on the same storage); otherwise
    it is reset in place, which is what makes a power-up cheap enough for a benchmark.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.applet: PurseApplet | None = None
        self._seen_commits = -1

    @classmethod
    def open(cls, image: Path, *, durable: bool = True) -> VirtualTransport:
        return cls(PurseApplet.open_image(Path(image), durable=durable).storage)

    @classmethod
    def blank(cls, uid: bytes | None = None) -> VirtualTransport:
        """A blank chip in memory, as it leaves the factory: a UID and the transport key."""
        return cls(PurseApplet.manufacture(uid))

    def image_bytes(self) -> bytes:
        """The card's persistent memory, to be saved as its image file."""
        return self.storage.image_bytes()

    def connect(self) -> bytes:
        applet = self.applet
        if applet is None or applet.storage is not self.storage or self.storage.commits != self._seen_commits:
            applet = self.applet = PurseApplet(self.storage)
        self._seen_commits = self.storage.commits
        return applet.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        if self.applet is None:
            self.connect()
        assert self.applet is not None
        if self.storage.commits != self._seen_commits:  # another applet wrote this memory
            self.connect()
        tracing = log.isEnabledFor(TRAFFIC)
        if tracing:
            log.log(TRAFFIC, "virtual > %s", traced(apdu))
        try:
            answer = self.applet.process(apdu)
        except CardTorn as e:
            self.applet = None
            raise CardRemoved(str(e)) from e
        self._seen_commits = self.storage.commits
        if tracing:
            log.log(TRAFFIC, "virtual < %s", answer.hex())
        return answer

    def disconnect(self) -> None:
        self.applet = None

    def tear_at(self, write_index: int) -> None:
        """Pull the card at its k-th persistent write from now (testing anti-tearing)."""
        self.storage.writes = 0
        self.storage.tear_at = write_index
