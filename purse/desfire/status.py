"""DESFire status codes (the ``91xx`` of an ISO-wrapped answer) as the project's errors.

Every code the EV2 data sheet lists has its class here, each an ``ApduError`` a terminal already
catches (``exit_code`` CARD_REFUSED), so a vendor's ``except PurseError`` keeps working for a
DESFire card. Where a code means what a reference-card status word means, the profile
(``purse.desfire.profile``) raises the domain error instead: ``BOUNDARY_ERROR`` on a Debit is
``InsufficientFunds``, on a Credit ``BalanceLimitExceeded``.
"""

from __future__ import annotations

from enum import IntEnum

from purse.apdu import ApduError

__all__ = [
    "DesfireStatus",
    "DesfireError",
    "raise_for_desfire_status",
    "NoChanges",
    "OutOfEeprom",
    "IllegalCommand",
    "IntegrityError",
    "NoSuchKey",
    "LengthError",
    "PermissionDenied",
    "ParameterError",
    "ApplicationNotFound",
    "ApplicationIntegrityError",
    "AuthenticationFailed",
    "BoundaryError",
    "PiccIntegrityError",
    "CommandAborted",
    "PiccDisabled",
    "CountError",
    "DuplicateError",
    "EepromError",
    "DesfireFileNotFound",
    "FileIntegrityError",
]


class DesfireStatus(IntEnum):
    OK = 0x00
    NO_CHANGES = 0x0C
    OUT_OF_EEPROM = 0x0E
    ILLEGAL_COMMAND = 0x1C
    INTEGRITY_ERROR = 0x1E
    NO_SUCH_KEY = 0x40
    LENGTH_ERROR = 0x7E
    PERMISSION_DENIED = 0x9D
    PARAMETER_ERROR = 0x9E
    APPLICATION_NOT_FOUND = 0xA0
    APPLICATION_INTEGRITY_ERROR = 0xA1
    AUTHENTICATION_ERROR = 0xAE
    ADDITIONAL_FRAME = 0xAF
    BOUNDARY_ERROR = 0xBE
    PICC_INTEGRITY_ERROR = 0xC1
    COMMAND_ABORTED = 0xCA
    PICC_DISABLED = 0xCD
    COUNT_ERROR = 0xCE
    DUPLICATE_ERROR = 0xDE
    EEPROM_ERROR = 0xEE
    FILE_NOT_FOUND = 0xF0
    FILE_INTEGRITY_ERROR = 0xF1


class DesfireError(ApduError):
    """A DESFire card refused a command; ``status`` is its native status byte."""

    status: DesfireStatus = DesfireStatus.PERMISSION_DENIED
    text = "the DESFire card refused the command"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__doc__ is None:
            cls.__doc__ = f"The DESFire card answered 91{cls.status:02X}: {cls.text}."

    def __init__(self, command: str = "", data: bytes = b"") -> None:
        where = f" to {command}" if command else ""
        super().__init__(0x9100 | self.status, data, f"{self.text}{where} (91{self.status:02X})")


class NoChanges(DesfireError):
    status, text = DesfireStatus.NO_CHANGES, "nothing to commit"


class OutOfEeprom(DesfireError):
    status, text = DesfireStatus.OUT_OF_EEPROM, "the card's memory is full"


class IllegalCommand(DesfireError):
    status, text = DesfireStatus.ILLEGAL_COMMAND, "the card does not know this command"


class IntegrityError(DesfireError):
    status, text = DesfireStatus.INTEGRITY_ERROR, "the card found a wrong MAC, CRC or padding"


class NoSuchKey(DesfireError):
    status, text = DesfireStatus.NO_SUCH_KEY, "no such key in the application"


class LengthError(DesfireError):
    status, text = DesfireStatus.LENGTH_ERROR, "the command has the wrong length"


class PermissionDenied(DesfireError):
    status, text = DesfireStatus.PERMISSION_DENIED, "the card's configuration does not allow this"


class ParameterError(DesfireError):
    status, text = DesfireStatus.PARAMETER_ERROR, "a parameter is out of range"


class ApplicationNotFound(DesfireError):
    status, text = DesfireStatus.APPLICATION_NOT_FOUND, "the application is not on the card"


class ApplicationIntegrityError(DesfireError):
    status, text = DesfireStatus.APPLICATION_INTEGRITY_ERROR, "the application's memory is damaged"


class AuthenticationFailed(DesfireError):
    status, text = DesfireStatus.AUTHENTICATION_ERROR, "not authenticated with a key that may do this"


class BoundaryError(DesfireError):
    status, text = DesfireStatus.BOUNDARY_ERROR, "outside the file's bounds or the value's limits"


class PiccIntegrityError(DesfireError):
    status, text = DesfireStatus.PICC_INTEGRITY_ERROR, "the card's memory is damaged"


class CommandAborted(DesfireError):
    status, text = DesfireStatus.COMMAND_ABORTED, "the chained command was not completed"


class PiccDisabled(DesfireError):
    status, text = DesfireStatus.PICC_DISABLED, "the card is disabled"


class CountError(DesfireError):
    status, text = DesfireStatus.COUNT_ERROR, "no room for another application"


class DuplicateError(DesfireError):
    status, text = DesfireStatus.DUPLICATE_ERROR, "the application or file exists already"


class EepromError(DesfireError):
    status, text = DesfireStatus.EEPROM_ERROR, "the card could not write its memory"


class DesfireFileNotFound(DesfireError):
    status, text = DesfireStatus.FILE_NOT_FOUND, "no such file in the application"


class FileIntegrityError(DesfireError):
    status, text = DesfireStatus.FILE_INTEGRITY_ERROR, "the file's memory is damaged"


_BY_STATUS: dict[int, type[DesfireError]] = {cls.status: cls for cls in DesfireError.__subclasses__()}
assert set(_BY_STATUS) == set(DesfireStatus) - {DesfireStatus.OK, DesfireStatus.ADDITIONAL_FRAME}


def raise_for_desfire_status(status: int, command: str = "", data: bytes = b"") -> None:
    """Raise the error for a native status byte; OK and ADDITIONAL_FRAME are not errors."""
    if status in (DesfireStatus.OK, DesfireStatus.ADDITIONAL_FRAME):
        return
    error = _BY_STATUS.get(status)
    if error is None:
        raise ApduError(0x9100 | status, data, f"the DESFire card answered an unknown status 91{status:02X}")
    raise error(command, data)
