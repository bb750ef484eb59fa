"""The ``smartpurse`` command: root group, global options, and the error boundary.

Thin on purpose: each package contributes its commands (``purse.commands``,
``personalization.commands``, ``processing.commands``); this module only wires them
and turns library errors into one line and an exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from purse import __version__
from purse.cliutil import CliContext
from purse.errors import SmartpurseError
from purse.home import Home

COMMAND_MODULES = (
    "purse.commands",
    "purse.pos_commands",
    "personalization.commands",
    "processing.commands",
    "processing.demo_command",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartpurse")
@click.option("--home", envvar="SMARTPURSE_HOME", type=click.Path(file_okay=False),
              help="Home folder: config, keystore, cards, terminal logs, database [./smartpurse-home].")
@click.option("--db", "db", envvar="SMARTPURSE_DB", help="Database URL (default: SQLite in the home).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_context
def root(ctx: click.Context, home: str | None, db: str | None, as_json: bool) -> None:
    """Smart-card electronic purses and loyalty points: cards, terminals, processing."""
    ctx.obj = CliContext(Home.open(home), db, as_json)


@root.group()
def cards() -> None:
    """Card registry, issuing, life cycle, and serving virtual cards."""


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        for command in getattr(module, "COMMANDS", ()):
            root.add_command(command)
        for command in getattr(module, "CARD_COMMANDS", ()):
            cards.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where errors become a message and an exit code."""
    try:
        root.main(args=argv, prog_name="smartpurse", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except SmartpurseError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: still one line, details on request
        if os.environ.get("SMARTPURSE_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (set SMARTPURSE_DEBUG=1 for details)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
