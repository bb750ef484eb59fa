"""How APDU bytes reach a card: one small protocol, several implementations.

``purse`` protocol code only ever sees a ``Transport``; only ``purse.transport.pcsc``
imports pyscard (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from typing import Protocol

from purse.errors import ExitCode, SmartpurseError

__all__ = [
    "Transport",
    "TransportError",
    "CardRemoved",
    "traced",
    "TRAFFIC",
]

# The log level of APDU hex traffic, below DEBUG: every layer that moves bytes (session,
# PC/SC, vpcd) logs at it, so one level switches the whole trace on (``smartpurse -vvv``).
TRAFFIC = 5
# Commands whose data is a PIN or a key (purse.protocol.Ins VERIFY_PIN, SET_PIN, PUT_KEY; DESFire
# ChangeKey and CreateTransactionMACFile). They
# travel encrypted under the session, but a trace is a file people mail around: their data is
# blanked anyway, so no trace ever holds one, even of a card speaking another protocol.
_SECRET_INS = frozenset({0x20, 0x24, 0xD8, 0xC4, 0xCE})


def traced(apdu: bytes) -> str:
    """A command APDU as hex for the traffic log, its data blanked when it carries a PIN or a key."""
    if len(apdu) > 5 and apdu[1] in _SECRET_INS:
        return f"{apdu[:5].hex()} <{len(apdu) - 5} bytes of PIN or key data not logged>"
    return apdu.hex()


class TransportError(SmartpurseError):
    """The transport failed (no reader, reader gone, driver error)."""

    exit_code = ExitCode.NO_CARD


class CardRemoved(TransportError):
    """The card left the field or lost power: the last command may or may not have run."""


class Transport(Protocol):
    """How APDU bytes reach a card: a virtual image, a PC/SC reader, or anything a vendor plugs in."""

    def connect(self) -> bytes:
        """Power the card up (or re-present it) and return its ATR."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by the status word."""
        ...

    def disconnect(self) -> None: ...
