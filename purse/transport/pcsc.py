"""Cards in PC/SC readers, through pcscd and pyscard (the optional ``[pcsc]`` extra).

This is the only module of the project that imports ``smartcard`` (the
yubikey-manager habit): the protocol code sees a ``Transport`` and nothing else. It
uses pyscard's thin ``scard`` layer rather than its object layer because the raw PC/SC
result codes are what tell "no service", "no reader", "no card" and "card pulled"
apart, and each of those deserves its own one-line message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from purse.transport import TRAFFIC, CardRemoved, TransportError, traced

__all__ = [
    "PcscTransport",
    "PcscUnavailable",
    "PcscServiceError",
    "NoReader",
    "NoCard",
    "list_readers",
    "reader_states",
    "wait_for_card",
    "INSTALL_HINT",
]

try:
    from smartcard import scard
except ImportError:  # the extra is not installed: every entry point says so
    scard = None

log = logging.getLogger(__name__)

INSTALL_HINT = "install the pcsc extra: pip install 'smartpurse[pcsc]'"
POLL_MS = 250  # granularity of wait_for_card: how often it re-checks its deadline


class PcscUnavailable(TransportError):
    """pyscard is not installed, so no PC/SC reader can be reached."""


class PcscServiceError(TransportError):
    """pcscd is not running, or answered with an error no other class covers."""


class NoReader(TransportError):
    """No reader at all, or none with the requested name."""


class NoCard(TransportError):
    """The reader is there but holds no card."""


def _scard() -> Any:
    if scard is None:
        raise PcscUnavailable(f"PC/SC support is not installed: {INSTALL_HINT}")
    return scard


def _message(code: int) -> str:
    return str(_scard().SCardGetErrorMessage(code)).strip().rstrip(".")


def _removal_codes() -> frozenset[int]:
    """Result codes meaning the card lost power or left: the last command's fate is unknown."""
    s = _scard()
    return frozenset({s.SCARD_W_REMOVED_CARD, s.SCARD_W_RESET_CARD, s.SCARD_W_UNPOWERED_CARD,
                      s.SCARD_E_NO_SMARTCARD, s.SCARD_W_UNRESPONSIVE_CARD, s.SCARD_E_NOT_TRANSACTED,
                      s.SCARD_E_COMM_DATA_LOST})


def _service_error(code: int, doing: str) -> TransportError:
    s = _scard()
    if code in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED, s.SCARD_E_NO_READERS_AVAILABLE):
        if code == s.SCARD_E_NO_READERS_AVAILABLE:
            return NoReader("no PC/SC reader is connected")
        return PcscServiceError(f"the PC/SC service is not running (start pcscd): {_message(code)}")
    return PcscServiceError(f"PC/SC error while {doing}: {_message(code)} ({code & 0xFFFFFFFF:08X})")


class _Context:
    """One PC/SC context; established lazily so that importing this module costs nothing."""

    def __init__(self) -> None:
        s = _scard()
        code, self.handle = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if code != s.SCARD_S_SUCCESS:
            raise _service_error(code, "connecting to pcscd")

    def release(self) -> None:
        _scard().SCardReleaseContext(self.handle)

    def readers(self) -> list[str]:
        s = _scard()
        code, names = s.SCardListReaders(self.handle, [])
        if code == s.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if code != s.SCARD_S_SUCCESS:
            raise _service_error(code, "listing readers")
        return list(names)

    def card_present(self, reader: str, timeout_ms: int = 0) -> bool:
        """Whether ``reader`` holds a card, waiting up to ``timeout_ms`` for one to arrive."""
        s = _scard()
        code, states = s.SCardGetStatusChange(self.handle, 0, [(reader, s.SCARD_STATE_UNAWARE)])
        if code != s.SCARD_S_SUCCESS:
            raise _service_error(code, f"reading the state of {reader!r}")
        state = states[0][1]
        if state & s.SCARD_STATE_PRESENT or timeout_ms <= 0:
            return bool(state & s.SCARD_STATE_PRESENT)
        code, states = s.SCardGetStatusChange(self.handle, timeout_ms, [(reader, state)])
        if code == s.SCARD_E_TIMEOUT:
            return False
        if code != s.SCARD_S_SUCCESS:
            raise _service_error(code, f"waiting for a card in {reader!r}")
        return bool(states[0][1] & s.SCARD_STATE_PRESENT)

    def resolve(self, wanted: str | None) -> str:
        """The reader named ``wanted`` exactly, else the only one containing it; else the
        first reader holding a card when ``wanted`` is None."""
        names = self.readers()
        if not names:
            raise NoReader("no PC/SC reader is connected")
        listing = ", ".join(repr(n) for n in names)
        if wanted is None:
            for name in names:
                if self.card_present(name):
                    return name
            raise NoCard(f"no card in any reader (readers: {listing})")
        if wanted in names:
            return wanted
        matches = [n for n in names if wanted.lower() in n.lower()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NoReader(f"reader name {wanted!r} is ambiguous: it matches {', '.join(map(repr, matches))}")
        raise NoReader(f"no reader named {wanted!r} (readers: {listing})")


def list_readers() -> list[str]:
    """Names of the PC/SC readers pcscd knows, cards or not."""
    return [name for name, _ in reader_states()]


def reader_states() -> list[tuple[str, bool]]:
    """Each PC/SC reader pcscd knows, and whether a card is in it (``smartpurse readers``)."""
    context = _Context()
    try:
        return [(name, context.card_present(name)) for name in context.readers()]
    finally:
        context.release()


def wait_for_card(reader: str | None = None, timeout: float = 30.0) -> str:
    """Block until a card is in ``reader`` (any reader when None); return the reader's name.

    For issuing desks where cards are inserted one after another: the caller waits here,
    then connects a ``PcscTransport`` to the name returned.
    """
    context = _Context()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                name = context.resolve(reader)
            except NoCard:
                name = None
            if name is not None and context.card_present(name, min(POLL_MS, _ms_left(deadline))):
                return name
            if time.monotonic() >= deadline:
                raise NoCard(f"no card was inserted in {reader or 'any reader'} within {timeout:g} s")
            if name is None:
                time.sleep(POLL_MS / 1000)
    finally:
        context.release()


def _ms_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


class PcscTransport:
    """A card in a PC/SC reader: ``Transport`` over pcscd, protocol T=0 or T=1."""

    def __init__(self, reader: str | None = None) -> None:
        _scard()
        self.wanted = reader
        self.reader: str | None = None
        self._context: _Context | None = None
        self._card: Any = None
        self._protocol = 0

    def connect(self) -> bytes:
        """Connect (or reconnect after a removal) and return the ATR; the card is powered by pcscd."""
        s = _scard()
        self.disconnect()
        self._context = _Context()
        self.reader = self._context.resolve(self.wanted)
        code, self._card, self._protocol = s.SCardConnect(
            self._context.handle, self.reader, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
        if code in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD):
            self._card = None
            raise NoCard(f"no card in reader {self.reader!r}")
        if code != s.SCARD_S_SUCCESS:
            self._card = None
            raise _service_error(code, f"connecting to the card in {self.reader!r}")
        code, _name, _state, _protocol, atr = s.SCardStatus(self._card)
        if code != s.SCARD_S_SUCCESS:
            raise self._failure(code, "reading the ATR")
        log.debug("connected to %r, protocol T=%d, ATR %s", self.reader,
                  0 if self._protocol == s.SCARD_PROTOCOL_T0 else 1, bytes(atr).hex())
        return bytes(atr)

    def transmit(self, apdu: bytes) -> bytes:
        s = _scard()
        if self._card is None:
            self.connect()
        log.log(TRAFFIC, "pcsc > %s", traced(apdu))
        code, response = s.SCardTransmit(self._card, self._protocol, list(apdu))
        if code != s.SCARD_S_SUCCESS:
            raise self._failure(code, "sending a command")
        answer = bytes(response)
        log.log(TRAFFIC, "pcsc < %s", answer.hex())
        if len(answer) < 2:
            # Some drivers (vpcd among them) report success with no bytes when the card
            # went silent mid-command: that is a lost card, not a malformed answer.
            reader = self.reader
            self.disconnect()
            raise CardRemoved(f"the card in {reader!r} gave no answer: removed or lost power")
        return answer

    def disconnect(self) -> None:
        """Let go of the card with a reset, so no session of ours outlives the connection."""
        s = _scard()
        if self._card is not None:
            s.SCardDisconnect(self._card, s.SCARD_RESET_CARD)
            self._card = None
        if self._context is not None:
            self._context.release()
            self._context = None

    def _failure(self, code: int, doing: str) -> TransportError:
        """Forget the handle (it is dead) and say why; a lost card is ``CardRemoved``."""
        reader = self.reader
        self.disconnect()
        if code in _removal_codes():
            return CardRemoved(f"card removed or reset in {reader!r} while {doing}: {_message(code)}")
        return _service_error(code, f"{doing} to {reader!r}")

    def __enter__(self) -> PcscTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
