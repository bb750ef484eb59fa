"""The root of every error the library raises on purpose.

The CLI turns a ``SmartpurseError`` into a one-line message and a non-zero exit; any
other exception is a bug (cli.py).
"""

from __future__ import annotations


class SmartpurseError(Exception):
    """An expected failure with a message meant for the user."""

    exit_code = 1


class UserError(SmartpurseError):
    """Bad input from the user: an argument, a file, a passphrase."""
