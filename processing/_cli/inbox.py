"""``smartpurse inbox status|prune``: what a shared inbox holds, and letting go of the batches in the books."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from processing.db import open_database
from processing.inbox import DEFAULT_LEASE_SECONDS, Inbox
from processing.inbox_retention import inbox_status, prune_inbox
from purse._cli.util import CliContext, emit, pass_cli
from purse.errors import UserError

FOLDER = click.argument("folder", type=click.Path(file_okay=False, path_type=Path))


def _inbox(cli: CliContext, folder: Path, lease_minutes: float = DEFAULT_LEASE_SECONDS / 60) -> Inbox:
    if not folder.is_dir():
        raise UserError(f"no inbox folder {folder}")
    return Inbox(open_database(cli.db_url), folder, lease_seconds=int(lease_minutes * 60))


@click.group("inbox")
def inbox() -> None:
    """A shared inbox of batch files (`process --inbox`): what it holds, and pruning what is in the books."""


@inbox.command("status")
@FOLDER
@click.option("--lease-minutes", type=click.FloatRange(min=0.1), default=DEFAULT_LEASE_SECONDS / 60,
              show_default=True, help="The importers' lease: a claim older than this may be taken over.")
@pass_cli
def status(cli: CliContext, folder: Path, lease_minutes: float) -> None:
    """The files waiting, done and rejected in FOLDER, and who is importing which file now."""
    data = inbox_status(_inbox(cli, folder, lease_minutes)).as_dict()

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['path']}: {d['waiting']} waiting, {len(d['open_claims'])} being imported, {d['done']} in "
                 f"done/, {d['rejected']} in rejected/"]
        for c in d["open_claims"]:
            over = " (lease over: the next importer takes it over)" if c["lease_over"] else ""
            lines.append(f"  {c['file_name']}: claimed by {c['claimed_by']} at {c['claimed_at']}{over}")
        if d["finished_claims"]:
            lines.append("finished claims: " + ", ".join(f"{n} {outcome}" for outcome, n in
                                                         sorted(d["finished_claims"].items())))
        return "\n".join(lines)

    emit(cli, data, text)


@inbox.command("prune")
@FOLDER
@click.option("--keep-days", type=click.IntRange(min=1), required=True,
              help="Keep the files of batches imported in the last DAYS days (and their claims).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@pass_cli
def prune(cli: CliContext, folder: Path, keep_days: int, dry_run: bool) -> None:
    """Remove from FOLDER's done/ the files of batches imported more than --keep-days ago, and the claims
    finished before then; rejected/ is never pruned."""
    data = prune_inbox(_inbox(cli, folder), keep_days, dry_run=dry_run).as_dict()

    def text(d: dict[str, Any]) -> str:
        verb = "would remove" if d["dry_run"] else "removed"
        days = f"{d['keep_days']} day{'' if d['keep_days'] == 1 else 's'}"
        lines = [f"{verb} {d['removed_files']} files from done/ ({d['removed_bytes']:,} bytes) and "
                 f"{d['removed_claims']} finished claims of batches imported more than {days} ago"]
        if d["kept"]:
            lines.append("kept in done/: " + ", ".join(f"{n} {'newer than ' + days if why == 'newer' else why}"
                                                       for why, n in d["kept"].items()))
        for name in d["not_batches"]:
            lines.append(f"  {name}: its content is no accepted batch (put there by hand, or changed): kept")
        return "\n".join(lines)

    emit(cli, data, text)
