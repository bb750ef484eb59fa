"""What every command group shares: the context, the result printer, prompts, progress and tables.

Commands return plain data; ``emit`` prints it as JSON under ``--json`` or as text
otherwise, so scripts and people read the same result (the habit of trezorlib's CLI).
rich is imported only when a table or a progress bar is drawn, so ``pos sell`` and
``--help`` never load it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from purse._cli.vocabulary import to_json
from purse.errors import UserError
from purse.home import Home
from purse.money import format_amount, parse_amount

PASSPHRASE_ENV = "SMARTPURSE_PASSPHRASE"
# "-1" must reach parse_amount as an argument, not be taken for an unknown option.
AMOUNT_COMMAND = {"ignore_unknown_options": True}


@dataclass
class CliContext:
    home: Home
    db_override: str | None
    json: bool

    @property
    def db_url(self) -> str:
        return self.home.db_url(self.db_override)

    @property
    def currency_exponent(self) -> int:
        return self.home.issuer.currency_exponent

    def amount(self, text: str) -> int:
        """A typed amount (``12.50``) in minor units of the issuer's currency."""
        return parse_amount(text, self.currency_exponent)

    def money(self, minor: int) -> str:
        return format_amount(minor, self.currency_exponent)


pass_cli = click.make_pass_decorator(CliContext)


def passphrase(prompt: str = "Passphrase", *, confirm: bool = False, env: str = PASSPHRASE_ENV) -> str:
    """From ``env`` for scripts, else a hidden prompt (twice when ``confirm``): the one place that asks."""
    value = os.environ.get(env)
    if value is not None:
        if not value:
            raise UserError(f"{env} is set but empty")
        return value
    if not sys.stdin.isatty():  # a script, a pipe, a service: nobody to ask
        raise UserError(f"no passphrase: set {env} (or run the command in a terminal to be asked)")
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not value:
        raise UserError("the passphrase must not be empty")
    return str(value)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def emit(ctx: CliContext, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print a command's result: JSON for scripts, ``text(data)`` for people.

    Text longer than the terminal goes through the pager (``$PAGER``, else ``less``), as ``git log``
    does; piped or redirected output is printed as it is."""
    if ctx.json or text is None:
        click.echo(json.dumps(to_json(data), default=_default, indent=2, ensure_ascii=False))
        return
    out = text(data) if callable(text) else text
    if sys.stdout.isatty() and out.count("\n") + 1 > shutil.get_terminal_size().lines:
        click.echo_via_pager(out)
    else:
        click.echo(out)


def render(renderable: Any, width: int = 110) -> str:
    """A rich table (or any renderable) as plain text, for ``emit``'s text function."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, no_color=True).print(renderable)
    return buffer.getvalue().rstrip("\n")


PLAIN_TABLE_ROWS = 200  # from this many rows a table is plain aligned columns, not a rich box


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None,
          show_header: bool = True, right: tuple[str, ...] = ()) -> str:
    """Rows under named columns as text; ``right`` names the columns aligned right (figures).

    A long listing (``cards list`` of a whole issue) is printed as plain columns: rich measures
    every cell of every row twice, which took 40 s for 40,000 cards, and a box around thousands
    of rows helps no one reading them in a pager or with ``grep``."""
    cells = [list(row) for row in rows]
    if len(cells) >= PLAIN_TABLE_ROWS:
        return _plain_table(columns, cells, title=title, show_header=show_header, right=right)
    from rich.table import Table

    t = Table(title=title, show_header=show_header)
    for column in columns:
        t.add_column(column, justify="right" if column in right else "left")
    for row in cells:
        t.add_row(*row)
    return render(t)


def _plain_table(columns: Sequence[str], rows: list[list[str]], *, title: str | None, show_header: bool,
                 right: tuple[str, ...]) -> str:
    widths = [max([len(c) if show_header else 0] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if name in right else cell.ljust(w)
                         for cell, w, name in zip(cells, widths, columns, strict=True)).rstrip()

    lines = [title] if title else []
    if show_header:
        lines += [line(columns), line(["-" * w for w in widths])]
    return "\n".join(lines + [line(r) for r in rows])


@contextmanager
def progress(cli: CliContext, total: int, label: str, *, at_least: int = 0) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while the block runs, for people only.

    Nothing is drawn under ``--json``, when stderr is not a terminal, or for fewer than
    ``at_least`` items; the callback (``advance(n)``) works the same either way.
    """

    if cli.json or total < at_least or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def stages(cli: CliContext) -> Iterator[Callable[[str, int, int], None]]:
    """One bar per stage of a long run (the demo: issuing, loading, selling, processing), kept on screen.

    The callback is ``advance(stage, done, total)``; like ``progress``, nothing is drawn under
    ``--json`` or when stderr is not a terminal.
    """

    if cli.json or not sys.stderr.isatty():
        yield lambda stage, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as bar:
        tasks: dict[str, Any] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield advance
