"""``smartpurse keys …`` and ``smartpurse cards issue|list|show|block|unblock|replace|face|pin-reset``.

Thin: parse, call ``personalization`` and print through ``emit`` (text or ``--json``).
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Engine

from personalization import lifecycle, registry
from personalization.faces import write_face
from personalization.holders_csv import HoldersCsvError, read_holders
from personalization.issuing import (
    DEFAULT_CHUNK,
    CardProfile,
    IssueReport,
    card_profile,
    issue_to_images,
    issue_to_reader,
    issuer_sam,
    pcsc_presenter,
    requests_for_count,
    requests_for_holders,
)
from personalization.keyfiles import get_passphrase, load_issuer, role_key_path, write_role_keys
from personalization.keystore import Keystore, init_keystore, rotate_keystore
from personalization.numbering import format_number, validate_number
from personalization.sealed import write_private
from processing.db import open_database
from purse.cliutil import CliContext, emit, pass_cli
from purse.errors import UserError
from purse.money import format_amount, parse_amount


def _render(renderable: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=110, highlight=False, no_color=True).print(renderable)
    return buffer.getvalue().rstrip("\n")


def _issuer(cli: CliContext) -> Keystore:
    return load_issuer(cli.home, get_passphrase())


def _engine(cli: CliContext) -> Engine:
    return open_database(cli.db_url)


def _fee_bps(cli: CliContext) -> int:
    return int(cli.home.config.get("merchants", {}).get("default_fee_bps", registry.DEFAULT_FEE_BPS))


def _number(text: str) -> str:
    return validate_number(text)


# -- keys ----------------------------------------------------------------------------------------
@click.group("keys")
def keys() -> None:
    """The issuer's keystore: key ceremony, role key files, rotation."""


@keys.command("init")
@pass_cli
def keys_init(cli: CliContext) -> None:
    """Create the master keys and the issuer signing key in an encrypted keystore."""
    store = init_keystore(cli.home, get_passphrase("New keystore passphrase", confirm=True))
    summary = store.summary() | {"keystore": str(cli.home.keystore_path)}
    emit(cli, summary, lambda s: f"keystore created at {s['keystore']} (mode 0600), key version "
                                 f"{s['current_version']}; issuer public key {s['issuer_public_key']}")


@keys.command("show")
@pass_cli
def keys_show(cli: CliContext) -> None:
    """Key versions and fingerprints (never a key)."""
    summary = _issuer(cli).summary()

    def text(s: dict[str, Any]) -> str:
        table = Table(title=f"issuer {s['issuer_id']} keystore, current version {s['current_version']}")
        table.add_column("master")
        table.add_column("version")
        table.add_column("fingerprint")
        for name, versions in s["masters"].items():
            for version, fp in versions.items():
                table.add_row(name, version, fp)
        return _render(table) + f"\nissuer public key (Ed25519): {s['issuer_public_key']}"

    emit(cli, summary, text)


@keys.command("rotate")
@pass_cli
def keys_rotate(cli: CliContext) -> None:
    """A new version of every master key; cards issued from now on use it."""
    store = rotate_keystore(cli.home, get_passphrase())
    emit(cli, {"current_version": store.current_version},
         f"key version {store.current_version} is now current; re-export the role key files "
         f"(keys export) so terminals and processing accept the new cards and keep the old")


@keys.command("export")
@click.option("--role", type=click.Choice(["pos", "credit", "processing"]), required=True)
@click.option("--terminal", type=int, help="Terminal id (required for pos; optional for credit: its log key).")
@click.option("--merchant", type=int, default=1, show_default=True, help="Merchant the POS terminal belongs to.")
@click.option("--name", help="A name for the terminal in the registry.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Key file [home/keys/<role>.key].")
@click.option("--passphrase-env", metavar="VAR",
              help="Seal the file with the passphrase in env VAR instead of the keystore's.")
@pass_cli
def keys_export(cli: CliContext, role: str, terminal: int | None, merchant: int, name: str | None,
                out: Path | None, passphrase_env: str | None) -> None:
    """Write a separately encrypted key file holding only what ROLE may hold."""
    if role == "processing" and terminal is not None:
        raise UserError("processing holds MK_TERM and derives every terminal's log key: no --terminal")
    if not 0 < merchant < 2**32:
        raise UserError(f"merchant id must be 1..{2**32 - 1}, not {merchant}")
    passphrase = get_passphrase()
    file_passphrase = passphrase
    if passphrase_env is not None:
        file_passphrase = os.environ.get(passphrase_env, "")
        if not file_passphrase:
            raise UserError(f"--passphrase-env {passphrase_env}: that variable is not set or empty")
    store = load_issuer(cli.home, passphrase)
    role_keys = store.role_keys(role, terminal, merchant if role == "pos" else None)
    path = out or role_key_path(cli.home, role, terminal)
    write_role_keys(path, role_keys, file_passphrase)
    if role == "pos":
        assert terminal is not None
        registry.register_terminal(_engine(cli), terminal, merchant, role_keys.log_key_version,
                                   fee_bps=_fee_bps(cli), name=name)
    held = [f"{ref.name} v{','.join(map(str, role_keys.versions(ref)))}" for ref in role_keys.masters]
    if role_keys.term_masters:
        held.append(f"TERM v{','.join(map(str, sorted(role_keys.term_masters)))}")
    if role_keys.log_key is not None:
        held.append(f"log key of terminal {terminal} (v{role_keys.log_key_version})")
    result = {"role": role, "path": str(path), "terminal_id": terminal,
              "merchant_id": role_keys.merchant_id, "holds": held}
    emit(cli, result, lambda r: f"{r['role']} key file written to {r['path']} (mode 0600): holds "
                                f"{'; '.join(r['holds'])}")


# -- cards issue ------------------------------------------------------------------------------------
@contextmanager
def _progress(cli: CliContext, total: int, what: str) -> Iterator[Callable[[int], None]]:
    console = Console(stderr=True)
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True, disable=cli.json or not console.is_terminal) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def _expiry(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        month = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise UserError(f"--expiry is a month like 2031-12, not {text!r}") from None
    nxt = month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
    return int(nxt.timestamp()) - 1


def _report_data(report: IssueReport, profile: CardProfile, pins_file: Path | None) -> dict[str, Any]:
    return {
        "batch": report.batch, "requested": report.requested, "issued": len(report.issued),
        "already_issued": report.already_issued, "skipped_holders": report.skipped_holders,
        "key_version": report.key_version, "seconds": round(report.seconds, 3),
        "cards_per_second": round(report.rate, 1),
        "expiry": datetime.fromtimestamp(profile.expiry, UTC).date().isoformat(),
        "pins_file": str(pins_file) if pins_file else None,
        "cards": [{"number": c.number, "uid": c.uid.hex(), "holder": c.holder, "where": c.where,
                   **({} if pins_file else {"pin": c.pin})} for c in report.issued],
    }


def _report_text(data: dict[str, Any]) -> str:
    summary = Table(title=f"batch {data['batch']}", show_header=False)
    summary.add_column()
    summary.add_column(justify="right")
    for label, key in (("requested", "requested"), ("issued now", "issued"), ("issued before", "already_issued"),
                       ("key version", "key_version"), ("expiry", "expiry"), ("seconds", "seconds"),
                       ("cards/s", "cards_per_second")):
        summary.add_row(label, str(data[key]))
    if data["skipped_holders"]:
        summary.add_row("holders who already have a card", str(len(data["skipped_holders"])))
    parts = [_render(summary)]
    if data["cards"]:
        cards = Table(title="cards (PINs are shown once: hand them over now)" if not data["pins_file"] else
                      f"cards (PINs in {data['pins_file']})")
        for column in ("number", "holder", "PIN" if not data["pins_file"] else "where"):
            cards.add_column(column)
        for c in data["cards"]:
            cards.add_row(format_number(c["number"]), c["holder"] or "", c.get("pin") or c["where"])
        parts.append(_render(cards))
    return "\n".join(parts)


def _write_pins(path: Path, report: IssueReport) -> None:
    lines = ["number,holder,pin"] + [f"{c.number},{(c.holder or '').replace(',', ' ')},{c.pin}"
                                     for c in report.issued]
    write_private(path, ("\n".join(lines) + "\n").encode(), overwrite=False)


@click.command("issue")
@click.option("--count", type=int, help="Issue N cards without holders.")
@click.option("--from", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Holders CSV: name, phone, email [, program, tier, pin].")
@click.option("--batch", help="Batch name; run again with the same name to resume [csv-<hash> or count-<time>].")
@click.option("--reader", help="Write cards in this PC/SC reader instead of virtual card images.")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for virtual card images [home/cards].")
@click.option("--program", type=click.IntRange(1, 0xFFFF), help="Loyalty program id for every card.")
@click.option("--tier", type=click.IntRange(0, 255), help="Starting tier index.")
@click.option("--max-balance", help="Maximum balance, e.g. 15000.00 [issuer config].")
@click.option("--currency", type=int, help="ISO 4217 numeric currency [issuer config].")
@click.option("--expiry", help="Expiry month YYYY-MM [issue date + card_validity_years].")
@click.option("--pins", "pins_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the PINs to this file (0600) instead of showing them.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for each card.")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=DEFAULT_CHUNK, show_default=True,
              help="Cards per registry transaction (virtual images).")
@pass_cli
def issue(cli: CliContext, count: int | None, csv_path: Path | None, batch: str | None, reader: str | None,
          folder: Path | None, program: int | None, tier: int | None, max_balance: str | None,
          currency: int | None, expiry: str | None, pins_file: Path | None, timeout: float, chunk: int) -> None:
    """Personalize cards (virtual images by default) and record them in the registry."""
    if (count is None) == (csv_path is None):
        raise UserError("give either --count N or --from holders.csv")
    if reader is not None and folder is not None:
        raise UserError("give either --reader or --out, not both")
    if pins_file is not None and pins_file.exists():
        raise UserError(f"{pins_file} already exists; PINs are written once, to a new file")
    exponent = int(cli.home.issuer.get("currency_exponent", 2))
    limit = parse_amount(max_balance, exponent) if max_balance is not None else None
    if csv_path is not None:
        try:
            holders, digest = read_holders(csv_path)
        except HoldersCsvError as e:
            if not cli.json:
                for problem in e.problems:
                    click.echo(f"  {csv_path}: {problem}", err=True)
            raise
        requests = requests_for_holders(holders, program=program, tier=tier)
        batch = batch or f"csv-{digest}"
        source = str(csv_path)
    else:
        assert count is not None
        requests = requests_for_count(count, program=program, tier=tier)
        batch = batch or f"count-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        source = f"--count {count}"
    store = _issuer(cli)
    profile = card_profile(cli.home, store, max_balance=limit, currency=currency, expiry=_expiry(expiry))
    engine = _engine(cli)
    sam = issuer_sam(store)
    with _progress(cli, len(requests), f"issuing batch {batch}") as advance:
        if reader is not None:
            def say(message: str) -> None:
                if not cli.json:
                    click.echo(message, err=True)

            present = pcsc_presenter(sam, reader, say, timeout=timeout)
            report = issue_to_reader(engine, sam, profile, requests, batch, reader, present, source=source,
                                     progress=advance)
        else:
            report = issue_to_images(engine, sam, profile, requests, batch, folder or cli.home.cards_dir,
                                     source=source, chunk=chunk, progress=advance)
    if pins_file is not None and report.issued:
        _write_pins(pins_file, report)
    emit(cli, _report_data(report, profile, pins_file if report.issued else None), _report_text)


# -- cards life cycle -------------------------------------------------------------------------------
def _card_text(row: dict[str, Any], exponent: int) -> str:
    lines = [f"card {format_number(row['number'])}: {row['state']}"]
    for label, key in (("holder", "holder_name"), ("e-mail", "email"), ("phone", "phone"), ("UID", "uid"),
                       ("key version", "key_version"), ("program", "program"), ("tier", "tier"),
                       ("issued", "issued_at"), ("blocked", "blocked_at"), ("reason", "block_reason"),
                       ("replaced by", "replaced_by"), ("replaces", "replaces"), ("batch", "batch"),
                       ("image", "image"), ("reader", "reader")):
        if row.get(key) is not None:
            lines.append(f"  {label}: {row[key]}")
    lines.append(f"  maximum balance: {format_amount(row['max_balance'], exponent)}")
    lines.append(f"  expires: {datetime.fromtimestamp(row['expiry'], UTC).date().isoformat()}")
    if "shadow_balance" in row:
        sb = row["shadow_balance"]
        complete = f"records 1..{sb['complete_to_counter']}" + (
            f", gap before {sb['highest_counter']} (batches to come)" if sb["gap_open"] else "")
        lines.append(f"  shadow balance (processing): {format_amount(sb['balance'], exponent)} ({complete})")
        for program, points in sb["points"].items():
            lines.append(f"  points in program {program}: {points}")
    if "transfer" in row:
        t = row["transfer"]
        if t.get("loaded_at"):
            status = f"{format_amount(t['amount'] or 0, exponent)} loaded onto the new card {t['loaded_at']:%Y-%m-%d}"
        elif t["credited_at"]:
            status = (f"{format_amount(t['amount'] or 0, exponent)} to load onto the new card at a desk "
                      f"(smartpurse load {t['to_number']} --transfer)" if t["amount"] else "nothing was left to move")
        else:
            status = "pending (processing moves it once the old card's last batches are in)"
        lines.append(f"  transfer {t['from_number']} -> {t['to_number']}: {status}")
    return "\n".join(lines)


@click.command("list")
@click.option("--state", type=click.Choice(["issued", "blocked", "replaced"]))
@click.option("--limit", type=click.IntRange(1), help="At most this many cards.")
@pass_cli
def list_cards(cli: CliContext, state: str | None, limit: int | None) -> None:
    """Cards in the registry."""
    rows = registry.list_cards(_engine(cli), state, limit)

    def text(rs: list[dict[str, Any]]) -> str:
        if not rs:
            return "no cards"
        table = Table()
        for column in ("number", "state", "holder", "key v", "program", "issued"):
            table.add_column(column)
        for r in rs:
            table.add_row(format_number(r["number"]), r["state"], r["holder_name"] or "", str(r["key_version"]),
                          str(r["program"] or ""), r["issued_at"].strftime("%Y-%m-%d %H:%M"))
        return _render(table)

    emit(cli, rows, text)


@click.command("show")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@pass_cli
def show(cli: CliContext, number: str) -> None:
    """Registry data of card NUMBER (and its shadow balance once processing provides it)."""
    row = lifecycle.card_details(_engine(cli), cli.home, number)
    emit(cli, row, lambda r: _card_text(r, int(cli.home.issuer.get("currency_exponent", 2))))


@click.command("block")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@click.option("--reason", default="lost", show_default=True)
@pass_cli
def block(cli: CliContext, number: str, reason: str) -> None:
    """Block card NUMBER in the registry: the next hotlist carries it to every terminal."""
    row = lifecycle.block(_engine(cli), number, reason)
    emit(cli, {"number": number, "state": row["state"], "blocked_at": row["blocked_at"],
               "reason": row["block_reason"]},
         lambda r: f"card {format_number(number)} blocked ({r['reason']}) at {r['blocked_at']}; "
                   f"export a new hotlist for the terminals")


@click.command("unblock")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@pass_cli
def unblock(cli: CliContext, number: str) -> None:
    """Unblock card NUMBER (and its virtual card, if a terminal blocked it on the chip)."""
    row = lifecycle.unblock(_engine(cli), cli.home, number, lambda: _issuer(cli))
    emit(cli, {"number": number, "state": row["state"], "unblocked_on_card": row.get("unblocked_on_card", False)},
         lambda r: f"card {format_number(number)} is {r['state']} again"
                   + (" (and unblocked on the card)" if r["unblocked_on_card"] else ""))


@click.command("replace")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@click.option("--reason", default="lost", show_default=True)
@click.option("--reader", help="Write the new card in this PC/SC reader.")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path), help="Image folder [home/cards].")
@click.option("--timeout", type=float, default=120.0, show_default=True)
@pass_cli
def replace(cli: CliContext, number: str, reason: str, reader: str | None, folder: Path | None,
            timeout: float) -> None:
    """Replace a lost or damaged card: block it, issue a new one, record the value transfer."""
    store = _issuer(cli)
    profile = card_profile(cli.home, store)
    present = None
    if reader is not None:
        present = pcsc_presenter(issuer_sam(store), reader, lambda m: click.echo(m, err=True), timeout=timeout)
    result, report = lifecycle.replace(_engine(cli), cli.home, store, profile, number, reason, folder=folder,
                                       reader=reader, present=present)
    if report.issued:
        result["pin"] = report.issued[0].pin
    emit(cli, result, lambda r: f"card {format_number(r['old'])} replaced by {format_number(r['new'])}"
                                + (f", PIN {r['pin']} (shown once)" if "pin" in r else "")
                                + "; once processing has the old card's last batches, load its balance onto "
                                  f"the new card at a desk: smartpurse load {r['new']} --transfer")


@click.command("face")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.png or FILE.svg")
@pass_cli
def face(cli: CliContext, number: str, out: Path) -> None:
    """Draw card NUMBER's face: number, QR code and barcode."""
    row = registry.card_row(_engine(cli), number)
    path = write_face(number, out, issuer=str(cli.home.issuer["system_identifier"]), holder=row["holder_name"],
                      expiry=row["expiry"])
    emit(cli, {"number": number, "path": str(path)}, f"card face written to {path}")


@click.command("pin-reset")
@click.argument("number", callback=lambda _c, _p, v: _number(v))
@click.option("--pin", help="The new PIN [generated, shown once].")
@click.option("--reader", help="The card is in this PC/SC reader [its virtual image].")
@pass_cli
def pin_reset(cli: CliContext, number: str, pin: str | None, reader: str | None) -> None:
    """Set a new PIN on card NUMBER (ADMIN key): redemption works again after too many wrong PINs."""
    new_pin = lifecycle.reset_pin(_engine(cli), cli.home, _issuer(cli), number, pin, reader)
    emit(cli, {"number": number, "pin": new_pin}, f"card {format_number(number)}: new PIN {new_pin} (shown once)")


COMMANDS: list[click.Command] = [keys]
CARD_COMMANDS: list[click.Command] = [issue, list_cards, show, block, unblock, replace, face, pin_reset]
