"""``smartpurse database copy --to URL``: the books moved to another database, such as PostgreSQL."""

from __future__ import annotations

from typing import Any

import click

from processing.db import open_database
from processing.db_copy import copy_database, rows_to_copy
from purse._cli.util import CliContext, emit, pass_cli, progress


@click.group("database")
def database() -> None:
    """The database of the books: copy it into another one (SQLite to PostgreSQL)."""


@database.command("copy")
@click.option("--to", "target", required=True, metavar="URL",
              help="The empty database to copy into, e.g. postgresql+psycopg://user:password@host/smartpurse.")
@pass_cli
def copy(cli: CliContext, target: str) -> None:
    """Copy every table of the database (--db, or the home's SQLite file) into the empty database --to, in one
    transaction there, and run check --full on the copy before it commits; nothing is written to the source."""
    source_engine = open_database(cli.db_url)
    target_engine = open_database(target)
    with progress(cli, rows_to_copy(source_engine), "copying rows", at_least=1) as advance:
        result = copy_database(source_engine, target_engine, lambda _table, n: advance(n))

    def text(d: dict[str, Any]) -> str:
        return (f"copied {d['rows']:,} rows of {d['tables']} tables from {d['source']} to {d['target']}; check --full "
                "passed on the copy. Point [database] url (or --db) at the new database, and stop using the old one.")

    emit(cli, result.as_dict(), text)
