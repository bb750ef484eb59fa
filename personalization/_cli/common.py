"""What the issuer station's commands share: the keystore behind a passphrase, the database."""

from __future__ import annotations

from sqlalchemy import Engine

from personalization.keyfiles import load_issuer
from personalization.keystore import Keystore
from processing.db import open_database
from purse._cli.util import CliContext, passphrase


def issuer_keystore(cli: CliContext) -> Keystore:
    """The home's keystore, opened with the passphrase (env or prompt)."""
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    return load_issuer(cli.home, passphrase())


def engine(cli: CliContext) -> Engine:
    return open_database(cli.db_url)
