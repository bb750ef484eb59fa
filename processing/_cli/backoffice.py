"""Commands of the back office: process, check, settle, report.

Thin: each parses its options, calls the library (``processing.*``) and prints through
``emit``. Keys come from the processing role's key file (``keys export --role
processing``).
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from processing import reportfmt, reports
from processing.check import check_snapshot, run_check
from processing.db import open_database
from processing.importer import DEFAULT_GAP_SECONDS, ImportOptions, ImportResult
from processing.inbox import DEFAULT_LEASE_SECONDS, Inbox
from processing.keys import ProcessingKeys, load_processing_keys
from processing.labels import LANGUAGES
from processing.presentation import Presentation
from processing.programs import load_verified_programs
from processing.reconcile import open_gaps
from processing.run import ProcessingRun, ProgressFactory, process_files, process_inbox
from processing.settlement import settle as settle_until
from purse._cli.util import CliContext, emit, pass_cli, passphrase, progress, table
from purse.batch import ENTRY_SIZE, HEADER_SIZE, TRAILER_SIZE
from purse.errors import SmartpurseError, UserError
from purse.money import parse_amount

PROGRESS_MIN_RECORDS = 100_000


class BatchesRejected(SmartpurseError):
    """Some batches failed verification: they are in quarantine, nothing of them is posted."""


DAY = click.DateTime(formats=["%Y-%m-%d"])  # a calendar day; click says what is wrong with a bad one


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


def _batch_lines(b: dict[str, Any]) -> list[str]:
    """What a person reads of one batch's outcome."""
    if b["status"] == "accepted":
        return [f"{b['file']}: accepted batch {b['batch_seq']} of terminal {b['terminal_id']}: "
                f"{b['accepted']} new records posted, {b['duplicates']} duplicates, "
                + (f"{b['held']} held (card certificate does not verify), " if b["held"] else "")
                + f"{len(b['anomalies'])} anomalies"] \
            + [f"  anomaly {a['kind']}: {a['detail']}" for a in b["anomalies"]]
    if b["status"] == "duplicate":
        return [f"{b['file']}: {b['reason']}"]
    kept = f"kept in {b['quarantine']}" if b["quarantine"] else "not a batch file: not kept"
    return [f"{b['file']}: REJECTED: {b['reason']}; {kept}"]


def _totals_line(data: dict[str, Any]) -> str:
    return (f"accepted {data['accepted']}, duplicates {data['duplicates']}, rejected {data['rejected']}, "
            f"anomalies {data['anomalies']}")


def _summary_text(data: dict[str, Any], look: Presentation, batches: bool = True) -> str:
    lines = [line for b in data["batches"] for line in _batch_lines(b)] if batches else []
    for t in data["transfers"]:
        lines.append(f"transfer: card {t['from']} -> {t['to']}: {look.money(t['amount'])}, {t['points']} points")
    lines.append(_totals_line(data))
    return "\n".join(lines)


@click.command("process")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--inbox", type=click.Path(file_okay=False, path_type=Path),
              help="Take the batch files waiting in this folder, shared with other importers (on this host or "
              "others); each file is claimed in the database and moved to done/ or rejected/ once imported.")
@click.option("--watch", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="With --inbox: look again every SECONDS until stopped (SIGTERM or Ctrl-C ends it once the "
              "batches it has claimed are imported: a group or two at most).")
@click.option("--lease-minutes", type=click.FloatRange(min=0.1), default=DEFAULT_LEASE_SECONDS / 60,
              show_default=True, help="With --inbox: a claim not finished in this time is taken over (its importer "
              "died).")
@click.option("--gap-hours", type=click.FloatRange(min=0), default=DEFAULT_GAP_SECONDS / 3600, show_default=True,
              help="Report a card's counter gap still open after this long.")
@click.option("--programs", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of signed loyalty programs to recompute points with [home/programs].")
@click.option("--quarantine", type=click.Path(file_okay=False, path_type=Path),
              help="Where rejected batch files are kept [home/quarantine].")
@click.option("--parallel-from", type=click.IntRange(min=1), default=ImportOptions.parallel_min_records,
              show_default=True, help="Batches of this many records or more: a second process verifies the MACs "
              "while this one stores.")
@click.option("--group-records", type=click.IntRange(min=0), default=ImportOptions.group_records, show_default=True,
              help="Import smaller batches in groups of about this many records, one transaction a group (0: one "
              "transaction a batch).")
@pass_cli
def process(cli: CliContext, files: tuple[Path, ...], inbox: Path | None, watch: float | None, lease_minutes: float,
            gap_hours: float, programs: Path | None, quarantine: Path | None, parallel_from: int,
            group_records: int) -> None:
    """Import terminal batch FILES (or those waiting in an --inbox): verify, post once, reconcile; bad batches go
    to quarantine."""
    if not files and inbox is None:
        raise click.UsageError("give batch FILES or --inbox DIR")
    if files and inbox is not None:
        raise click.UsageError("give batch FILES or --inbox DIR, not both")
    if watch is not None and inbox is None:
        raise click.UsageError("--watch needs --inbox")
    for path in files:
        if not path.is_file():
            raise UserError(f"no batch file {path}")
    if inbox is not None and not inbox.is_dir():
        raise UserError(f"no inbox folder {inbox}")
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    keys = load_processing_keys(cli.home, passphrase())
    engine = open_database(cli.db_url)
    options = ImportOptions(quarantine_dir=quarantine or cli.home.path / "quarantine",
                            gap_seconds=int(gap_hours * 3600),
                            programs=load_verified_programs(programs or cli.home.path / "programs",
                                                            keys.issuer_public_key),
                            parallel_min_records=parallel_from, group_records=group_records,
                            low_balance=cli.home.settings.notify.low_balance)

    @contextmanager
    def file_progress(path: Path) -> Iterator[Callable[[int], None] | None]:
        records = max(0, (path.stat().st_size - HEADER_SIZE - TRAILER_SIZE) // ENTRY_SIZE)
        with progress(cli, records, path.name, at_least=PROGRESS_MIN_RECORDS) as advance:
            yield advance

    look = _presentation(cli, None)
    if inbox is None:
        run = process_files(engine, files, keys, options, file_progress)
    else:
        run = _process_inbox(cli, engine, Inbox(engine, inbox, lease_seconds=int(lease_minutes * 60)), keys, options,
                             file_progress, watch)
    data = run.as_dict()
    if watch is not None and not cli.json:  # each batch was said as it was done
        emit(cli, data, lambda d: _summary_text(d, look, batches=False))
    else:
        emit(cli, data, lambda d: _summary_text(d, look))
    if data["rejected"]:
        raise BatchesRejected(f"{data['rejected']} of {len(data['batches'])} batches rejected (batch files kept in "
                              "quarantine)")


def _process_inbox(cli: CliContext, engine: Engine, inbox: Inbox, keys: ProcessingKeys, options: ImportOptions,
                   file_progress: ProgressFactory, watch: float | None) -> ProcessingRun:
    """The inbox, once or watched; while watching, each batch is said as it is done and SIGTERM ends the run
    once the batches it has claimed are imported, as Ctrl-C does."""
    if watch is None:
        return process_inbox(engine, inbox, keys, options, file_progress)
    stop = threading.Event()

    def said(result: ImportResult) -> None:
        if not cli.json:
            click.echo("\n".join(_batch_lines(result.as_dict())))

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    previous_int = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if not cli.json:
            click.echo(f"watching {inbox.folder} every {watch:g} s as {inbox.claimant} (Ctrl-C to stop)")
        return process_inbox(engine, inbox, keys, options, file_progress, watch=watch, stop=stop, on_result=said)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


@click.command("check")
@click.option("--gap-hours", type=click.FloatRange(min=0), default=DEFAULT_GAP_SECONDS / 3600, show_default=True,
              help="List counter gaps open longer than this many hours (missing records not yet received).")
@click.option("--full", is_flag=True, help="Read every record again, not only those imported since the last check, "
              "and prove that no proven entry's records changed (an audit).")
@pass_cli
def check(cli: CliContext, gap_hours: float, full: bool) -> None:
    """Verify the ledger's invariants; exit non-zero with the evidence when one fails."""
    engine = open_database(cli.db_url)
    with check_snapshot(engine) as conn:
        rep = run_check(conn, full=full, prove=True)
        gaps = [a.as_dict() for a in open_gaps(conn, int(time.time()), int(gap_hours * 3600))]
    data = {"ok": rep.ok, "figures": rep.figures, "failures": rep.failures, "open_gaps": gaps}

    m = _presentation(cli, None).money

    def text(d: dict[str, Any]) -> str:
        f = d["figures"]
        lines = [f"card float {m(f['card_float'])}, shadow balances {m(f['shadow_balances'])}, records net "
                 f"{m(f['records_net'])}, debits {m(f['debits'])}, credits {m(f['credits'])}",
                 f"read every record ({f['records_read']})" if f["full"] else
                 f"read the {f['records_read']} records imported since the last check (--full reads all)"]
        for fail in d["failures"]:
            lines.append(f"FAILED {fail['invariant']}: {fail['message']}")
            ev = fail["evidence"]
            lines += [f"  {e}" for e in (ev if isinstance(ev, list) else [ev])]
        lines += [f"open gap: {g['detail']}" for g in d["open_gaps"]]
        if f["card_deposits"]:
            lines.append(f"card deposits held {m(f['card_deposits'])}")
        if f["deposits_to_post"] or f["cash_outs_to_post"]:
            lines.append(f"recorded at the desks, posted at the next `smartpurse process`: {f['deposits_to_post']} "
                         f"deposits, {f['cash_outs_to_post']} cash-outs")
        if f["quarantined_batches"]:
            lines.append(f"held in quarantine (not posted): {f['quarantined_batches']} batches announcing purchases "
                         f"{m(f['quarantined_purchases'])}, cancellations {m(f['quarantined_cancellations'])}, loads "
                         f"{m(f['quarantined_loads'])}"
                         + (f"; {f['quarantined_unreadable']} unreadable" if f["quarantined_unreadable"] else "")
                         + ": repair and import them again")
        if f["held_records"]:
            lines.append(f"held out of accepted batches (card certificate does not verify, not posted): "
                         f"{f['held_records']} records, purchases {m(f['held_purchases'])}, cancellations "
                         f"{m(f['held_cancellations'])}, loads {m(f['held_loads'])}: "
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
    m = _presentation(cli, None).money

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"nothing to settle before {day}"
        return "\n".join(f"merchant {s['merchant_id']} ({s['merchant']}): {s['purchase_count']} purchases "
                         f"{m(s['gross'])}, {s['cancel_count']} cancellations {m(s['cancellations'])}, fee "
                         f"{m(s['fee'])} ({s['fee_bps']} bp), net {m(s['net'])}" for s in rows)

    emit(cli, statements, text)


@click.command("report")
@click.argument("kind", type=click.Choice((*reports.KINDS, "dashboard")))
@click.option("--format", "fmt", type=click.Choice(reportfmt.PRINT_FORMATS),
              help="csv, xlsx, json, or pdf (printed by LibreOffice)  [required, except for the dashboard, "
              "which is HTML].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write (.csv, .xlsx, .json; .html for the dashboard)  [required, except for the "
              "payback, which is printed without it].")
@click.option("--from", "start", type=DAY, help="First day (YYYY-MM-DD).")
@click.option("--to", "end", type=DAY, help="Last day (YYYY-MM-DD), included.")
@click.option("--card", help="Card number (statement).")
@click.option("--account", help="One account's ledger, e.g. card_float or merchant_payable:1 (ledger).")
@click.option("--idle-days", type=click.IntRange(min=1), default=reports.DORMANT_AFTER_DAYS, show_default=True,
              help="Dormant: a card unused this long (as of --to, default today).")
@click.option("--locale", type=click.Choice(LANGUAGES), help="Labels and numbers for this reader: en, or ru (Russian "
              "labels; CSV with ; and a decimal comma)  [issuer config, en].")
@click.option("--rate", help="Annual interest rate in percent (float; payback: the credit rate the float "
              "replaces), e.g. 35.")
@click.option("--system-cost", help="Payback: what the system cost, e.g. 7500.00.")
@click.option("--deposit", help="Payback: the refundable deposit per card, e.g. 7.50  [issuer card_deposit].")
@click.option("--cash-cost", help="Payback: cash collection and counting, percent of the cash, e.g. 0.45  [0].")
@click.option("--margin", help="Payback: the shop's margin on a purchase, percent, e.g. 10  [0].")
@click.option("--growth", help="Payback: more regular customers thanks to the cards, percent, e.g. 20  [0].")
@click.option("--cards", type=click.IntRange(min=1), help="Payback scenario instead of the books: this many cards...")
@click.option("--monthly-load", help="Payback scenario: ...each loaded with this a month, e.g. 100.00...")
@click.option("--left", help="Payback scenario: ...and spent evenly down to this percent of it, e.g. 20  [0].")
@pass_cli
def report(cli: CliContext, kind: str, fmt: str, out: Path | None, start: dt.datetime | None,
           end: dt.datetime | None, card: str | None, account: str | None, idle_days: int, locale: str | None,
           rate: str | None,
           system_cost: str | None,
           deposit: str | None, cash_cost: str | None, margin: str | None, growth: str | None, cards: int | None,
           monthly_load: str | None, left: str | None) -> None:
    """Write a report: settlement, float, statement, points, anomalies, terminals, cards, dormant, the books
    (journal, ledger, trial-balance), payback, or the HTML dashboard."""
    look = _presentation(cli, locale)
    if kind == "payback":
        _payback(cli, look, fmt, out, _day(start), _day(end), rate, system_cost, deposit, cash_cost, margin, growth,
                 cards, monthly_load, left)
        return
    if out is None:
        raise click.UsageError("--out is required for this report")
    if kind == "dashboard":
        from processing.dashboard import dashboard_options, write_dashboard

        path = write_dashboard(open_database(cli.db_url), out, _day(start), _day(end),
                               **dashboard_options(cli.home))
        emit(cli, {"report": "dashboard", "out": str(path)}, lambda d: f"dashboard written to {d['out']}")
        return
    if fmt is None:
        raise click.UsageError("--format is required for this report: csv, xlsx, json or pdf")
    rate_pct = _percent("--rate", rate) if rate is not None else None
    engine = open_database(cli.db_url)
    with engine.connect() as conn:
        rep = reports.build(conn, kind, start=_day(start), end=_day(end), card=card,
                            rate=rate_pct, account=account, idle_days=idle_days)
    reportfmt.write(rep, fmt, out, look)
    data = {"report": kind, "format": fmt, "out": str(out), "rows": len(rep.rows), "summary": rep.summary}
    emit(cli, data, lambda d: f"{d['report']} report: {d['rows']} rows written to {d['out']}")


def _percent(option: str, text: str | None) -> Decimal:
    """A percentage option: a finite, non-negative decimal (0 when not given)."""
    if text is None:
        return Decimal(0)
    try:
        value = Decimal(text.replace(",", ".") if text.count(",") == 1 and "." not in text else text)
    except InvalidOperation:
        raise UserError(f"{option}: not a percentage: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise UserError(f"{option}: not a percentage: {text!r}")
    return value


def _presentation(cli: CliContext, locale: str | None) -> Presentation:
    return Presentation.for_issuer(cli.home.issuer, locale)


def _payback(cli: CliContext, look: Presentation, fmt: str | None, out: Path | None, start: dt.date | None,
             end: dt.date | None,
             rate: str | None, system_cost: str | None, deposit: str | None, cash_cost: str | None,
             margin: str | None, growth: str | None, cards: int | None, monthly_load: str | None,
             left: str | None) -> None:
    from processing.payback import scenario_inputs

    if system_cost is None:
        raise click.UsageError("the payback report needs --system-cost (and --rate, --cash-cost, --margin, --growth)")
    if (fmt is None) != (out is None):
        raise click.UsageError("give --format and --out together, or neither to print the table")
    exponent = cli.currency_exponent
    params = dict(system_cost=parse_amount(system_cost, exponent),
                  deposit_per_card=(parse_amount(deposit, exponent, allow_zero=True) if deposit is not None
                                    else cli.home.issuer.card_deposit),
                  rate_pct=_percent("--rate", rate), cash_cost_pct=_percent("--cash-cost", cash_cost),
                  margin_pct=_percent("--margin", margin), growth_pct=_percent("--growth", growth))
    if cards is not None or monthly_load is not None:
        if cards is None or monthly_load is None:
            raise click.UsageError("a payback scenario needs both --cards and --monthly-load (and --left)")
        inputs = scenario_inputs(cards=cards, monthly_load=parse_amount(monthly_load, exponent),
                                 left_pct=_percent("--left", left), **params)
    else:
        with open_database(cli.db_url).connect() as conn:
            inputs = reports.payback_inputs(conn, start, end, **params)
    rep = reports.payback_report(inputs, (start, end))
    if out is not None and fmt is not None:
        reportfmt.write(rep, fmt, out, look)
    rows = [{"item": r[0], "formula": r[1], "amount": r[2], "figure": r[3]} for r in rep.rows]

    def text(d: dict[str, Any]) -> str:
        shown = [(r["item"], r["formula"], look.money(r["amount"]) if r["amount"] is not None
                  else r["figure"]) for r in d["lines"]]
        written = f"\npayback report written to {d['out']}" if d["out"] else ""
        return table(("", "formula", "figure"), shown, title="payback of the card scheme", right=("figure",)) + written

    emit(cli, {"report": "payback", "out": str(out) if out else None, "lines": rows,
               "inputs": {k: v for k, v in rep.summary.items() if k not in ("from", "to")}}, text)


@click.group("statements")
def statements() -> None:
    """The settlement statements `settle` made: list them, print one again."""


@statements.command("list")
@click.option("--merchant", type=int, help="One merchant's statements.")
@pass_cli
def statements_list(cli: CliContext, merchant: int | None) -> None:
    """Every statement, newest first, with its number."""
    with open_database(cli.db_url).connect() as conn:
        rows = reports.statements_list(conn, merchant)
    m = _presentation(cli, None).money
    emit(cli, rows, lambda rs: table(("No.", "merchant", "sales before", "purchases", "gross", "fee", "net"),
                                     [(str(r["statement"]), r["merchant"], str(r["until"]), str(r["purchases"]),
                                       m(r["gross"]), m(r["fee"]), m(r["net"])) for r in rs],
                                     title="settlement statements", right=("purchases", "gross", "fee", "net"))
         if rs else "no statements yet (run `smartpurse settle --until DAY`)")


@statements.command("print")
@click.argument("number", type=int)
@click.option("--format", "fmt", type=click.Choice(reportfmt.PRINT_FORMATS), required=True,
              help="csv, xlsx, json, or pdf (printed by LibreOffice).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file to write.")
@click.option("--locale", type=click.Choice(LANGUAGES), help="en or ru  [issuer config].")
@pass_cli
def statements_print(cli: CliContext, number: int, fmt: str, out: Path, locale: str | None) -> None:
    """Write statement NUMBER as its merchant receives it, the same document every time."""
    with open_database(cli.db_url).connect() as conn:
        rep = reports.statement_document(conn, number)
    reportfmt.write(rep, fmt, out, _presentation(cli, locale))
    emit(cli, {"statement": number, "format": fmt, "out": str(out)},
         lambda d: f"statement {d['statement']} written to {d['out']}")
