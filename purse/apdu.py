"""ISO/IEC 7816-4 short APDUs, status words and the errors they mean.

The card answers every command with data and a status word; anything but 9000 becomes
an ``ApduError`` carrying the status word, and ``raise_for_status`` turns the status
words whose meaning is known into domain errors (docs/protocol.md, "Status words").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from purse.errors import ExitCode, SmartpurseError

__all__ = [
    "ApduError",
    "PurseError",
    "SecurityStatusNotSatisfied",
    "ConditionsNotSatisfied",
    "InsufficientFunds",
    "BalanceLimitExceeded",
    "CardBlocked",
    "CardExpired",
    "CardReturned",
    "NotPersonalized",
    "AlreadyPersonalized",
    "InsufficientPoints",
    "PinRequired",
    "NothingToCancel",
    "PinBlocked",
    "WrongPin",
    "FileNotFound",
    "MalformedApdu",
    "raise_for_status",
    "CommandApdu",
    "ResponseApdu",
    "SW",
    "WRONG_PIN_MASK",
]


class SW(IntEnum):
    """Status words: ISO 7816-4 ones and the purse's own (class 91xx, proprietary)."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    WRONG_P1P2 = 0x6A86
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    MEMORY_FAILURE = 0x6581
    NOT_ENOUGH_MEMORY = 0x6A84
    NO_PRECISE_DIAGNOSIS = 0x6F00
    # Purse application status words (docs/protocol.md, "Status words").
    INSUFFICIENT_FUNDS = 0x9101
    BALANCE_LIMIT_EXCEEDED = 0x9102
    CARD_BLOCKED = 0x9103
    CARD_EXPIRED = 0x9104
    NOT_PERSONALIZED = 0x9105
    ALREADY_PERSONALIZED = 0x9106
    INSUFFICIENT_POINTS = 0x9107
    PIN_REQUIRED = 0x9108
    NOTHING_TO_CANCEL = 0x9109
    CARD_RETURNED = 0x910A


WRONG_PIN_MASK = 0x63C0  # 63Cx: wrong PIN, x tries remaining


class ApduError(SmartpurseError):
    """The card answered with a status word other than 9000."""

    exit_code = ExitCode.CARD_REFUSED

    def __init__(self, sw: int, data: bytes = b"", message: str | None = None) -> None:
        self.sw = sw
        self.data = data
        super().__init__(message or f"card answered status word {sw:04X}")


class PurseError(ApduError):
    """Base of the errors whose meaning the purse application defines."""

    default_sw: int = SW.CONDITIONS_NOT_SATISFIED
    text = "the card refused the command"

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Each subclass documents itself with its message and status word (what the API reference shows)."""
        super().__init_subclass__(**kwargs)
        if cls.__doc__ is None:
            cls.__doc__ = f"The card answered {cls.default_sw:04X}: {cls.text}."

    def __init__(self, sw: int | None = None, data: bytes = b"") -> None:
        code = self.default_sw if sw is None else sw
        super().__init__(code, data, f"{self.text} (SW {code:04X})")


class SecurityStatusNotSatisfied(PurseError):
    default_sw = SW.SECURITY_STATUS_NOT_SATISFIED
    text = "security status not satisfied: wrong key, bad MAC or no session"


class ConditionsNotSatisfied(PurseError):
    default_sw = SW.CONDITIONS_NOT_SATISFIED
    text = "conditions of use not satisfied"


class InsufficientFunds(PurseError):
    default_sw = SW.INSUFFICIENT_FUNDS
    text = "insufficient funds on the card"


class BalanceLimitExceeded(PurseError):
    default_sw = SW.BALANCE_LIMIT_EXCEEDED
    text = "the load would exceed the card's maximum balance"


class CardBlocked(PurseError):
    default_sw = SW.CARD_BLOCKED
    text = "the card is blocked"


class CardReturned(PurseError):
    default_sw = SW.CARD_RETURNED
    text = "the card was returned and its balance paid out"


class CardExpired(PurseError):
    default_sw = SW.CARD_EXPIRED
    text = "the card has expired"


class NotPersonalized(PurseError):
    default_sw = SW.NOT_PERSONALIZED
    text = "the card is blank (not personalized)"


class AlreadyPersonalized(PurseError):
    default_sw = SW.ALREADY_PERSONALIZED
    text = "the card is locked: it cannot be personalized again"


class InsufficientPoints(PurseError):
    default_sw = SW.INSUFFICIENT_POINTS
    text = "not enough points on the card"


class PinRequired(PurseError):
    default_sw = SW.PIN_REQUIRED
    text = "redeeming points needs a verified PIN"


class NothingToCancel(PurseError):
    default_sw = SW.NOTHING_TO_CANCEL
    text = "nothing to cancel: the card's last transaction is not this terminal's debit"


class PinBlocked(PurseError):
    default_sw = SW.AUTH_METHOD_BLOCKED
    text = "the PIN is blocked: the issuer must unblock it"


class WrongPin(PurseError):
    default_sw = WRONG_PIN_MASK

    def __init__(self, sw: int | None = None, data: bytes = b"") -> None:
        code = WRONG_PIN_MASK if sw is None else sw
        self.attempts_remaining = code & 0x0F
        ApduError.__init__(self, code, data, f"wrong PIN: {self.attempts_remaining} tries left (SW {code:04X})")


class FileNotFound(PurseError):
    default_sw = SW.FILE_NOT_FOUND
    text = "application or file not found on the card"


_ERRORS: dict[int, type[PurseError]] = {
    SW.SECURITY_STATUS_NOT_SATISFIED: SecurityStatusNotSatisfied,
    SW.CONDITIONS_NOT_SATISFIED: ConditionsNotSatisfied,
    SW.INSUFFICIENT_FUNDS: InsufficientFunds,
    SW.BALANCE_LIMIT_EXCEEDED: BalanceLimitExceeded,
    SW.CARD_BLOCKED: CardBlocked,
    SW.CARD_EXPIRED: CardExpired,
    SW.CARD_RETURNED: CardReturned,
    SW.NOT_PERSONALIZED: NotPersonalized,
    SW.ALREADY_PERSONALIZED: AlreadyPersonalized,
    SW.INSUFFICIENT_POINTS: InsufficientPoints,
    SW.PIN_REQUIRED: PinRequired,
    SW.NOTHING_TO_CANCEL: NothingToCancel,
    SW.AUTH_METHOD_BLOCKED: PinBlocked,
    SW.FILE_NOT_FOUND: FileNotFound,
}


def raise_for_status(sw: int, data: bytes = b"") -> None:
    """Raise the domain error for ``sw``; an unknown status word stays an ``ApduError``."""
    if sw == SW.OK:
        return
    if sw & 0xFFF0 == WRONG_PIN_MASK:
        raise WrongPin(sw, data)
    error = _ERRORS.get(sw)
    if error is not None:
        raise error(sw, data)
    raise ApduError(sw, data)


class MalformedApdu(SmartpurseError, ValueError):
    """Bytes that are not a well-formed short APDU."""


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A short command APDU: CLA INS P1 P2 [Lc data] [Le] (ISO 7816-4 section 5.1)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def to_bytes(self) -> bytes:
        if len(self.data) > 255:
            raise MalformedApdu("short APDUs carry at most 255 data bytes")
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le & 0xFF,))
        return out

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Parse cases 1-4 of the short form; anything else is ``MalformedApdu``."""
        if len(raw) < 4:
            raise MalformedApdu("an APDU has at least 4 header bytes")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise MalformedApdu("extended length APDUs are not supported")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[-1] or 256)
        raise MalformedApdu(f"Lc={lc} does not match the {len(body) - 1} bytes that follow")


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise MalformedApdu("a response APDU ends with a 2-byte status word")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")
