"""The two kinds of virtual chip (the reference purse applet and the emulated DESFire EV2 card)
behind one small interface, so that serving, opening and powering a card image never asks
which kind it is.

A card image says what it is in its first bytes (``purse.card.storage``'s magic, then the
DESFire emulator's own for a DESFire card); its size follows from that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from purse.card import layout as L
from purse.card.applet import PurseApplet
from purse.card.desfire.picc import IMAGE_SIZE, JOURNAL_SIZE, DesfirePicc
from purse.card.desfire.state import MAGIC as DESFIRE_MAGIC
from purse.card.storage import MAGIC, CardImageError, FileStorage, Storage
from purse.transport import Transport
from purse.transport.virtual import VirtualTransport
from purse.transport.virtual_desfire import VirtualDesfireTransport

__all__ = ["Chip", "power_up", "open_image", "is_desfire", "virtual_transport"]


class Chip(Protocol):
    """A card's operating system: powered up, it answers command APDUs (``CardTorn`` when pulled)."""

    def power_on(self) -> bytes:
        """Reset the card's RAM state and return its ATR."""
        ...

    def process(self, raw: bytes) -> bytes: ...


def is_desfire(storage: Storage) -> bool:
    """Whether ``storage`` holds an emulated DESFire card rather than a reference purse card."""
    return storage.read(0, len(DESFIRE_MAGIC)) == DESFIRE_MAGIC


def power_up(storage: Storage) -> tuple[Chip, bytes]:
    """The chip in ``storage``, powered up (a torn commit rolled forward or dropped), and its ATR."""
    chip: Chip = DesfirePicc(storage) if is_desfire(storage) else PurseApplet(storage)
    return chip, chip.power_on()


def open_image(path: Path, *, durable: bool = True) -> FileStorage:
    """A card image file of either kind, opened for reading and writing."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + len(DESFIRE_MAGIC))
    except FileNotFoundError:
        raise CardImageError(f"no card image at {path}") from None
    except IsADirectoryError:
        raise CardImageError(f"{path} is a folder, not a card image") from None
    except OSError as e:
        raise CardImageError(f"cannot read the card image {path}: {os.strerror(e.errno or 0)}") from None
    if head[len(MAGIC) :] == DESFIRE_MAGIC:
        return FileStorage(path, IMAGE_SIZE, JOURNAL_SIZE, durable=durable)
    return FileStorage(path, L.APP_MEMORY, L.JOURNAL, durable=durable)


def virtual_transport(path: Path, *, durable: bool = True) -> Transport:
    """The card in an image file, of either kind, in a virtual reader."""
    storage = open_image(path, durable=durable)
    if is_desfire(storage):
        return VirtualDesfireTransport(storage)
    return VirtualTransport(storage)
