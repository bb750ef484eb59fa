"""The ``smartpurse`` command: root group, global options, and the error boundary.

Thin on purpose: each library contributes its command groups from its private ``_cli``
package (``purse._cli``, ``processing._cli``, ``personalization._cli``); this module
only names them and turns library errors into one line and an exit code, never a
traceback. Groups are imported when they run, not before, so ``smartpurse --help`` and
``smartpurse pos sell`` never load SQLAlchemy, Alembic or numpy (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass

import click

from purse import __version__
from purse._cli.util import CliContext
from purse.errors import ExitCode, SmartpurseError
from purse.home import Home
from purse.transport import TRAFFIC


@dataclass(frozen=True)
class Lazy:
    """A command imported on first use: ``target`` is ``module:attribute``; ``help`` is its one-line help."""

    target: str
    help: str

    def load(self) -> click.Command:
        module_name, attribute = self.target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


# The optional parts (pyproject.toml extras) by the top-level module a command misses without them.
EXTRAS = {"sqlalchemy": "backoffice", "alembic": "backoffice", "numpy": "backoffice", "openpyxl": "backoffice",
          "rich": "backoffice", "segno": "faces", "barcode": "faces", "PIL": "faces", "psycopg": "postgres",
          "click_man": "docs", "pdoc": "docs", "flask": "portal", "waitress": "portal", "fpdf": "portal"}


def missing_part(error: ModuleNotFoundError) -> str | None:
    """The extra to install when ``error`` is an optional dependency missing, else None (a bug)."""
    return EXTRAS.get((error.name or "").split(".")[0])


class LazyGroup(click.Group):
    """A group whose commands are imported only when one of them runs (or asks for its own help)."""

    def __init__(self, *args: object, lazy: dict[str, Lazy], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            command: click.Command = self.lazy[name].load()
            with_json_option(command)
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table below, without importing a single command module."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = [(name, (click.Command(name, help=self.lazy[name].help) if name in self.lazy
                        else self.commands[name]).get_short_help_str(limit)) for name in names]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _json_requested(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliContext).json = True


JSON_OPTION = click.Option(["--json"], is_flag=True, expose_value=False, callback=_json_requested,
                           help="Print results as JSON (also accepted before the command).")


def with_json_option(command: click.Command) -> None:
    """``--json`` after the command too (``smartpurse cards list --json``): every command accepts it."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_json_option(sub)
    elif not any(p.name == "json" for p in command.params):
        command.params.append(JSON_OPTION)


LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG,
              "traffic": TRAFFIC}


def configure_logging(level: str | None, verbose: int, log_file: str | None) -> None:
    """The library's logs on stderr (or in ``log_file``): ``-v`` info, ``-vv`` debug, ``-vvv`` every APDU.

    APDUs are logged at the traffic level with PINs and keys blanked out (``purse.transport.traced``).
    Without any of the options nothing is installed: Python's last-resort handler already prints
    warnings and errors on stderr."""
    root_logger = logging.getLogger()
    for old in [h for h in root_logger.handlers if getattr(h, "smartpurse", False)]:
        root_logger.removeHandler(old)
        old.close()
    if level is None and not verbose and log_file is None:
        return
    if level is None:
        level = ("warning", "info", "debug", "traffic")[min(verbose, 3)]
    handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler()
    handler.smartpurse = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger.addHandler(handler)
    root_logger.setLevel(LOG_LEVELS[level])


# Every command, where it lives and its one-line help (tests/test_cli_lazy.py keeps each
# help equal to the command's own, so the two cannot drift apart).
ROOT_COMMANDS = {
    "keys": Lazy("personalization._cli.keys:keys", "The issuer's keystore: key ceremony, role key files, rotation."),
    "program": Lazy("personalization._cli.program:program_group",
                    "Loyalty programs: sign a program file, show a program's rules."),
    "hotlist": Lazy("personalization._cli.hotlist:hotlist", "The signed list of blocked cards terminals enforce."),
    "statements": Lazy("processing._cli.backoffice:statements",
                       "The settlement statements `settle` made: list them, print one again."),
    "merchants": Lazy("personalization._cli.merchants:merchants", "Merchants as counterparties: legal name, tax "
                      "number, bank details; the payout files a bank imports."),
    "demo": Lazy("personalization._cli.demo:demo",
                 "Run every role end to end on virtual cards: issue, load, sell, process, settle, report."),
    "pos": Lazy("purse._cli.pos:pos_group",
                "A POS terminal: sell, cancel, read a card, install a program or a hotlist, close a batch."),
    "apdu": Lazy("purse._cli.card:apdu", "Debugging: send raw APDUs (one hex argument each) and print every answer."),
    "readers": Lazy("purse._cli.card:readers", "List the PC/SC readers pcscd knows, and whether each holds a card."),
    "man": Lazy("purse._cli.manual:man", "Write the manual pages (smartpurse.1 and one per command) into a folder."),
    "load": Lazy("processing._cli.desk:load",
                 "Load AMOUNT onto card NUMBER at the issuer's credit desk (AMOUNT like 500.00)."),
    "cash-out": Lazy("processing._cli.desk:cash_out",
                     "Take card NUMBER back: the card pays its whole balance out and the deposit is refunded."),
    "holders": Lazy("personalization._cli.holders:holders_group",
                    "Card holders as contacts: their consent per channel, and its record."),
    "notify": Lazy("processing._cli.notify:notify",
                   "The messages card holders get: deliver the outbox, see the queue, preview a message."),
    "portal": Lazy("portal._cli:portal",
                   "The holder's own page: balance, points, statement, a lost card, behind a one-time code."),
    "process": Lazy("processing._cli.backoffice:process",
                    "Import terminal batch FILES (or those waiting in an --inbox): verify, post once, reconcile; bad "
                    "batches go to quarantine."),
    "inbox": Lazy("processing._cli.inbox:inbox",
                  "A shared inbox of batch files (`process --inbox`): what it holds, and pruning what is in the "
                  "books."),
    "database": Lazy("processing._cli.database:database",
                     "The database of the books: copy it into another one (SQLite to PostgreSQL)."),
    "check": Lazy("processing._cli.backoffice:check",
                  "Verify the ledger's invariants; exit non-zero with the evidence when one fails."),
    "settle": Lazy("processing._cli.backoffice:settle",
                   "Per-merchant settlement statements (gross, cancellations, fee, net) and their journal entries."),
    "report": Lazy("processing._cli.backoffice:report",
                   "Write a report: settlement, float, statement, points, anomalies, terminals, cards, dormant, the "
                   "books (journal, ledger, trial-balance), payback, or the HTML dashboard."),
}
_CARDS = "personalization._cli.cards"
CARD_COMMANDS = {
    "issue": Lazy(f"{_CARDS}:issue", "Personalize cards (virtual images by default) and record them in the registry."),
    "list": Lazy(f"{_CARDS}:list_cards", "Cards in the registry."),
    "requests": Lazy(f"{_CARDS}:requests_list",
                     "What holders asked for on their page: replacements to issue, payouts when the card comes back."),
    "find": Lazy(f"{_CARDS}:find", "The cards of the holder with this phone or e-mail (a holder may hold several)."),
    "show": Lazy(f"{_CARDS}:show",
                 "Registry data of card NUMBER (and its shadow balance once processing provides it)."),
    "block": Lazy(f"{_CARDS}:block",
                  "Block card NUMBER in the registry: the next hotlist carries it to every terminal."),
    "unblock": Lazy(f"{_CARDS}:unblock",
                    "Unblock card NUMBER (and its virtual card, if a terminal blocked it on the chip)."),
    "replace": Lazy(f"{_CARDS}:replace",
                    "Replace a lost or damaged card: block it, issue a new one, record the value transfer."),
    "face": Lazy(f"{_CARDS}:face", "Draw card NUMBER's face: number, QR code and barcode."),
    "pin-reset": Lazy(f"{_CARDS}:pin_reset",
                      "Set a new PIN on card NUMBER (ADMIN key): redemption works again after too many wrong PINs."),
    "serve": Lazy("purse._cli.card:serve_card",
                  "Put a virtual card IMAGE in pcscd's vpcd reader until interrupted (Ctrl-C)."),
}


@click.group(cls=LazyGroup, lazy=ROOT_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartpurse")
@click.option("--home", envvar="SMARTPURSE_HOME", type=click.Path(file_okay=False),
              help="Home folder: config, keystore, cards, terminal logs, database [./smartpurse-home].")
@click.option("--db", "db", envvar="SMARTPURSE_DB", help="Database URL (default: SQLite in the home).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON (also accepted after the command).")
@click.option("--log-level", type=click.Choice(list(LOG_LEVELS)), help="Log the library at this level on stderr "
              "(traffic: every APDU, PINs and keys blanked) [warning].")
@click.option("-v", "--verbose", count=True, help="More log: -v info, -vv debug, -vvv every APDU.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Write the log to this file instead of stderr.")
@click.pass_context
def root(ctx: click.Context, home: str | None, db: str | None, as_json: bool, log_level: str | None,
         verbose: int, log_file: str | None) -> None:
    """Smart-card electronic purses and loyalty points: cards, terminals, processing.

    Exit codes: 0 done, 1 the command found a problem, 2 usage, 3 a part not installed, 4 no card or
    reader, 5 the card refused, 6 bad input, 7 database, 70 internal error (docs/cli.md)."""
    configure_logging(log_level, verbose, log_file)
    ctx.obj = CliContext(Home.open(home), db, as_json)


@root.group(cls=LazyGroup, lazy=CARD_COMMANDS)
def cards() -> None:
    """Card registry, issuing, life cycle, and serving virtual cards."""


def _fail(message: str, code: int, as_json: bool, kind: str) -> None:
    """One line on stderr, or one JSON object under ``--json``, and the exit code."""
    if as_json:
        click.echo(json.dumps({"error": message, "kind": kind, "exit_code": int(code)}, ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {message}" if kind != "internal" else message, err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where errors become a message and an exit code (docs/cli.md)."""
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    if not args:  # a bare `smartpurse`: what it can do, not an error
        click.echo(root.get_help(click.Context(root, info_name="smartpurse")))
        sys.exit(ExitCode.OK)
    try:
        root.main(args=args, prog_name="smartpurse", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", ExitCode.INTERRUPTED, as_json, "interrupted")
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        _fail(f"{e.format_message()}{hint}", ExitCode.USAGE, as_json, "usage")
    except click.ClickException as e:
        _fail(e.format_message(), ExitCode.BAD_INPUT if e.exit_code == 1 else e.exit_code, as_json, "bad_input")
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except SmartpurseError as e:
        _fail(str(e), e.exit_code, as_json, ExitCode(e.exit_code).name.lower())
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.INTERRUPTED, as_json, "interrupted")
    except Exception as e:  # a bug (or a part not installed): still one line, details on request
        if os.environ.get("SMARTPURSE_DEBUG"):
            raise
        if isinstance(e, ModuleNotFoundError) and (extra := missing_part(e)) is not None:
            # a terminal-only install running a back-office command
            _fail(f"this command needs the {extra!r} part of smartpurse ({e.name} is not installed): "
                  f"pip install 'smartpurse[{extra}]'", ExitCode.MISSING_PART, as_json, "missing_part")
        _fail(f"internal error: {type(e).__name__}: {e} (set SMARTPURSE_DEBUG=1 for details)", ExitCode.INTERNAL,
              as_json, "internal")


if __name__ == "__main__":
    main()
