"""``smartpurse man``: the manual pages, made from the same help every command prints.

click-man writes one troff page per command from the click definitions, so the pages can
never say something ``--help`` does not; the command exists so a packager (or a user
without the repository) gets them with one line: ``smartpurse man --out /usr/local/share/man/man1``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from purse import __version__
from purse._cli.util import CliContext, emit, pass_cli
from purse.errors import UserError


def _load_every_command(group: click.Command) -> None:
    """The root loads its commands lazily; click-man walks ``group.commands``, so every one is loaded first."""
    if isinstance(group, click.Group):
        ctx = click.Context(group, info_name=group.name)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is not None:
                _load_every_command(command)


@click.command("man")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("man"), show_default=True,
              help="Folder for the pages (created); e.g. /usr/local/share/man/man1.")
@click.pass_context
@pass_cli
def man(cli: CliContext, ctx: click.Context, out: Path) -> None:
    """Write the manual pages (smartpurse.1 and one per command) into a folder."""
    from click_man.core import write_man_pages  # the docs extra

    root = ctx.find_root().command
    _load_every_command(root)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror}") from None
    write_man_pages("smartpurse", root, version=__version__, target_dir=str(out),
                    date=dt.date.today().isoformat())
    pages = sorted(p.name for p in out.glob("smartpurse*.1"))
    emit(cli, {"path": str(out), "pages": pages}, f"{len(pages)} manual pages written to {out} "
         f"(read one with `man -l {out / 'smartpurse.1'}`)")
