"""The root of every error the library raises on purpose, and the exit code each kind means.

The CLI turns a ``SmartpurseError`` into a one-line message and its class's ``exit_code``
(docs/cli.md, "Exit codes"); any other exception is a bug (cli.py). A script tells the
kinds apart by the code: retry when no card was there, tell the cashier when the card
refused, fix the file when the input was bad, call the operator when the database failed.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "SmartpurseError",
    "UserError",
    "ExitCode",
]


class ExitCode(IntEnum):
    """What a ``smartpurse`` exit status means; the same table is in docs/cli.md."""

    OK = 0
    FAILED = 1  # the command ran and found a problem: an invariant, a rejected batch, a damaged log
    USAGE = 2  # an unknown option, a missing or malformed argument (click's own code)
    MISSING_PART = 3  # an optional part (pyproject extra) is not installed
    NO_CARD = 4  # no reader, no card in it, pcscd not running, or the card left mid-command
    CARD_REFUSED = 5  # the card or the terminal's rules refused: funds, blocked, expired, PIN, hotlisted
    BAD_INPUT = 6  # a file, CSV row, amount, key file or passphrase that cannot be used
    DATABASE = 7  # the database cannot be opened, is not a smartpurse database, or failed
    INTERNAL = 70  # a bug (BSD sysexits' EX_SOFTWARE): one line, SMARTPURSE_DEBUG=1 for the traceback
    INTERRUPTED = 130  # Ctrl-C, or a prompt aborted


class SmartpurseError(Exception):
    """An expected failure with a message meant for the user."""

    exit_code = ExitCode.FAILED


class UserError(SmartpurseError):
    """Bad input from the user: an argument, a file, a passphrase."""

    exit_code = ExitCode.BAD_INPUT
