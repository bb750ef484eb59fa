"""The virtual card in process: the reference applet over a card image."""

from __future__ import annotations

from pathlib import Path

from purse.card.applet import PurseApplet
from purse.card.storage import CardTorn, Storage
from purse.transport import CardRemoved


class VirtualTransport:
    """A reader with a virtual card in it.

    ``connect`` is a power-up: the applet is rebuilt from persistent memory, which rolls
    a complete journal forward or drops a torn one, as a real chip does at reset.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.applet: PurseApplet | None = None

    @classmethod
    def open(cls, image: Path, *, durable: bool = True) -> VirtualTransport:
        return cls(PurseApplet.open_image(Path(image), durable=durable).storage)

    def connect(self) -> bytes:
        self.applet = PurseApplet(self.storage)
        return self.applet.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        if self.applet is None:
            self.connect()
        assert self.applet is not None
        try:
            return self.applet.process(apdu)
        except CardTorn as e:
            self.applet = None
            raise CardRemoved(str(e)) from e

    def disconnect(self) -> None:
        self.applet = None

    def tear_at(self, write_index: int) -> None:
        """Pull the card at its k-th persistent write from now (testing anti-tearing)."""
        self.storage.writes = 0
        self.storage.tear_at = write_index
