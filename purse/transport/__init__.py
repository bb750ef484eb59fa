"""How APDU bytes reach a card: one small protocol, several implementations.

``purse`` protocol code only ever sees a ``Transport``; only ``purse.transport.pcsc``
imports pyscard (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from typing import Protocol

from purse.errors import SmartpurseError

# The log level of APDU hex traffic, below DEBUG: every layer that moves bytes (session,
# PC/SC, vpcd) logs at it, so one level switches the whole trace on. PIN blocks and keys
# travel encrypted, so the trace holds no secret in clear.
TRAFFIC = 5


class TransportError(SmartpurseError):
    """The transport failed (no reader, reader gone, driver error)."""


class CardRemoved(TransportError):
    """The card left the field or lost power: the last command may or may not have run."""


class Transport(Protocol):
    def connect(self) -> bytes:
        """Power the card up (or re-present it) and return its ATR."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by the status word."""
        ...

    def disconnect(self) -> None: ...
