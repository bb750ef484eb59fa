"""Commands of the back office: process, check, settle, report.

Thin: each parses its options, calls the library (``processing.*``) and prints through
``emit``. Keys come from the processing role's key file (``keys export --role
processing``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from processing import reportfmt, reports
from processing.check import run_check
from processing.db import open_database
from processing.importer import DEFAULT_GAP_SECONDS, ImportOptions, process_files
from processing.keys import load_processing_keys
from processing.programs import load_verified_programs
from processing.reconcile import open_gaps
from processing.settlement import settle as settle_until
from purse._cli.util import CliContext, emit, pass_cli, passphrase, progress
from purse.batch import ENTRY_SIZE, HEADER_SIZE, TRAILER_SIZE
from purse.errors import SmartpurseError, UserError

PROGRESS_MIN_RECORDS = 100_000


class BatchesRejected(SmartpurseError):
    """Some batches failed verification: they are in quarantine, nothing of them is posted."""


DAY = click.DateTime(formats=["%Y-%m-%d"])  # a calendar day; click says what is wrong with a bad one


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


def _summary_text(data: dict[str, Any]) -> str:
    lines = []
    for b in data["batches"]:
        if b["status"] == "accepted":
            lines.append(f"{b['file']}: accepted batch {b['batch_seq']} of terminal {b['terminal_id']}: "
                         f"{b['accepted']} new records posted, {b['duplicates']} duplicates, "
                         + (f"{b['held']} held (card certificate does not verify), " if b["held"] else "")
                         + f"{len(b['anomalies'])} anomalies")
            lines += [f"  anomaly {a['kind']}: {a['detail']}" for a in b["anomalies"]]
        elif b["status"] == "duplicate":
            lines.append(f"{b['file']}: {b['reason']}")
        else:
            kept = f"kept in {b['quarantine']}" if b["quarantine"] else "not a batch file: not kept"
            lines.append(f"{b['file']}: REJECTED: {b['reason']}; {kept}")
    for t in data["transfers"]:
        lines.append(f"transfer: card {t['from']} -> {t['to']}: {t['amount']} minor units, {t['points']} points")
    lines.append(f"accepted {data['accepted']}, duplicates {data['duplicates']}, rejected {data['rejected']}, "
                 f"anomalies {data['anomalies']}")
    return "\n".join(lines)


@click.command("process")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--gap-hours", type=click.FloatRange(min=0), default=DEFAULT_GAP_SECONDS / 3600, show_default=True,
              help="Report a card's counter gap still open after this long.")
@click.option("--programs", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of signed loyalty programs to recompute points with [home/programs].")
@click.option("--quarantine", type=click.Path(file_okay=False, path_type=Path),
              help="Where rejected batch files are kept [home/quarantine].")
@click.option("--parallel-from", type=click.IntRange(min=1), default=ImportOptions.parallel_min_records,
              show_default=True, help="Batches of this many records or more: a second process verifies the MACs "
              "while this one stores.")
@pass_cli
def process(cli: CliContext, files: tuple[Path, ...], gap_hours: float, programs: Path | None,
            quarantine: Path | None, parallel_from: int) -> None:
    """Import terminal batch FILES: verify, post once, reconcile; bad batches go to quarantine."""
    for path in files:
        if not path.is_file():
            raise UserError(f"no batch file {path}")
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    keys = load_processing_keys(cli.home, passphrase())
    engine = open_database(cli.db_url)
    options = ImportOptions(quarantine_dir=quarantine or cli.home.path / "quarantine",
                            gap_seconds=int(gap_hours * 3600),
                            programs=load_verified_programs(programs or cli.home.path / "programs",
                                                            keys.issuer_public_key),
                            parallel_min_records=parallel_from)

    @contextmanager
    def file_progress(path: Path) -> Iterator[Callable[[int], None] | None]:
        records = max(0, (path.stat().st_size - HEADER_SIZE - TRAILER_SIZE) // ENTRY_SIZE)
        with progress(cli, records, path.name, at_least=PROGRESS_MIN_RECORDS) as advance:
            yield advance

    run = process_files(engine, files, keys, options, file_progress)
    data = run.as_dict()
    emit(cli, data, _summary_text)
    if data["rejected"]:
        raise BatchesRejected(f"{data['rejected']} of {len(files)} batches rejected (batch files kept in "
                              "quarantine)")


@click.command("check")
@click.option("--gap-hours", type=click.FloatRange(min=0), default=DEFAULT_GAP_SECONDS / 3600, show_default=True,
              help="List counter gaps open longer than this many hours (missing records not yet received).")
@pass_cli
def check(cli: CliContext, gap_hours: float) -> None:
    """Verify the ledger's invariants; exit non-zero with the evidence when one fails."""
    engine = open_database(cli.db_url)
    with engine.connect() as conn:
        rep = run_check(conn)
        gaps = [a.as_dict() for a in open_gaps(conn, int(time.time()), int(gap_hours * 3600))]
    data = {"ok": rep.ok, "figures": rep.figures, "failures": rep.failures, "open_gaps": gaps}

    def text(d: dict[str, Any]) -> str:
        f = d["figures"]
        lines = [f"card float {f['card_float']}, shadow balances {f['shadow_balances']}, records net "
                 f"{f['records_net']}, debits {f['debits']}, credits {f['credits']} (minor units)"]
        for fail in d["failures"]:
            lines.append(f"FAILED {fail['invariant']}: {fail['message']}")
            ev = fail["evidence"]
            lines += [f"  {e}" for e in (ev if isinstance(ev, list) else [ev])]
        lines += [f"open gap: {g['detail']}" for g in d["open_gaps"]]
        if f["quarantined_batches"]:
            lines.append(f"held in quarantine (not posted): {f['quarantined_batches']} batches announcing purchases "
                         f"{f['quarantined_purchases']}, cancellations {f['quarantined_cancellations']}, loads "
                         f"{f['quarantined_loads']} (minor units)"
                         + (f"; {f['quarantined_unreadable']} unreadable" if f["quarantined_unreadable"] else "")
                         + ": repair and import them again")
        if f["held_records"]:
            lines.append(f"held out of accepted batches (card certificate does not verify, not posted): "
                         f"{f['held_records']} records, purchases {f['held_purchases']}, cancellations "
                         f"{f['held_cancellations']}, loads {f['held_loads']} (minor units): "
                         "see `smartpurse report anomalies`")
        lines.append("all invariants hold" if d["ok"] else "INVARIANTS FAILED")
        return "\n".join(lines)

    emit(cli, data, text)
    if not rep.ok:
        raise SmartpurseError(f"{len(rep.failures)} invariants failed (evidence above)")


@click.command("settle")
@click.option("--until", "until", type=DAY, required=True,
              help="Settle records of days before this day (YYYY-MM-DD).")
@pass_cli
def settle(cli: CliContext, until: dt.datetime) -> None:
    """Per-merchant settlement statements (gross, cancellations, fee, net) and their journal entries."""
    day = until.date()
    assert day is not None
    engine = open_database(cli.db_url)
    statements = [s.as_dict() for s in settle_until(engine, day)]

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"nothing to settle before {day}"
        return "\n".join(f"merchant {s['merchant_id']} ({s['merchant']}): {s['purchase_count']} purchases "
                         f"{s['gross']}, {s['cancel_count']} cancellations {s['cancellations']}, fee {s['fee']} "
                         f"({s['fee_bps']} bp), net {s['net']} (minor units)" for s in rows)

    emit(cli, statements, text)


@click.command("report")
@click.argument("kind", type=click.Choice((*reports.KINDS, "dashboard")))
@click.option("--format", "fmt", type=click.Choice(reportfmt.FORMATS),
              help="csv, xlsx or json  [required, except for the dashboard, which is HTML].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (.csv, .xlsx, .json; .html for the dashboard).")
@click.option("--from", "start", type=DAY, help="First day (YYYY-MM-DD).")
@click.option("--to", "end", type=DAY, help="Last day (YYYY-MM-DD), included.")
@click.option("--card", help="Card number (statement).")
@click.option("--rate", help="Annual interest rate in percent for the float report, e.g. 35.")
@pass_cli
def report(cli: CliContext, kind: str, fmt: str, out: Path, start: dt.datetime | None, end: dt.datetime | None,
           card: str | None,
           rate: str | None) -> None:
    """Write a report: settlement, float, statement, points, anomalies, or the HTML dashboard."""
    if kind == "dashboard":
        from processing.dashboard import dashboard_options, write_dashboard

        path = write_dashboard(open_database(cli.db_url), out, _day(start), _day(end),
                               **dashboard_options(cli.home))
        emit(cli, {"report": "dashboard", "out": str(path)}, lambda d: f"dashboard written to {d['out']}")
        return
    if fmt is None:
        raise click.UsageError("--format is required for this report: csv, xlsx or json")
    rate_pct = None
    if rate is not None:
        try:
            rate_pct = Decimal(rate)
        except InvalidOperation:
            raise UserError(f"--rate: not a percentage: {rate!r}") from None
        if not rate_pct.is_finite() or rate_pct < 0:
            raise UserError(f"--rate: not a percentage: {rate!r}")
    engine = open_database(cli.db_url)
    with engine.connect() as conn:
        rep = reports.build(conn, kind, start=_day(start), end=_day(end), card=card,
                            rate=rate_pct)
    reportfmt.write(rep, fmt, out)
    data = {"report": kind, "format": fmt, "out": str(out), "rows": len(rep.rows), "summary": rep.summary}
    emit(cli, data, lambda d: f"{d['report']} report: {d['rows']} rows written to {d['out']}")
