"""``smartpurse cards issue|list|show|block|unblock|replace|face|pin-reset``: the card registry and life cycle.

Thin: parse, call ``personalization`` and print through ``emit`` (text or ``--json``).
``cards show`` composes the registry's row with processing's shadow balance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from personalization import lifecycle, registry
from personalization._cli.common import engine, issuer_keystore
from personalization.faces import write_face
from personalization.holders_csv import HoldersCsvError, normalize_phone, read_holders
from personalization.issuing import (
    DEFAULT_CHUNK,
    CardProfile,
    IssueReport,
    card_profile,
    expiry_month,
    issue_to_images,
    issue_to_reader,
    issuer_sam,
    pcsc_presenter,
    requests_for_count,
    requests_for_holders,
)
from personalization.pins import PinsFile
from processing.schema.registry import CardStatus
from processing.shadow import shadow_balance
from purse import cardnumber
from purse._cli.util import CliContext, emit, pass_cli, progress, table
from purse.errors import UserError
from purse.money import format_amount, parse_amount
from purse.profiles import CardChip


def _number(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    return cardnumber.validate(value)


# -- cards issue ------------------------------------------------------------------------------------
def _report_data(report: IssueReport, profile: CardProfile, pins_file: Path | None) -> dict[str, Any]:
    return {
        "batch": report.batch, "requested": report.requested, "issued": len(report.issued),
        "already_issued": report.already_issued, "skipped_holders": report.skipped_holders,
        "key_version": report.key_version, "seconds": round(report.seconds, 3),
        "cards_per_second": round(report.rate, 1),
        "expiry": datetime.fromtimestamp(profile.expiry, UTC).date().isoformat(),
        "pins_file": str(pins_file) if pins_file else None, "profile": profile.chip.value,
        "deposit": profile.deposit, "deposits_taken": profile.deposit * len(report.issued),
        "cards": [{"number": c.number, "uid": c.uid.hex(), "holder": c.holder, "where": c.where,
                   **({} if pins_file or not c.pin else {"pin": c.pin})} for c in report.issued],
    }


def _report_text(data: dict[str, Any], money: Callable[[int], str]) -> str:
    rows = [(label, str(data[key])) for label, key in (
        ("requested", "requested"), ("issued now", "issued"), ("issued before", "already_issued"),
        ("key version", "key_version"), ("expiry", "expiry"), ("seconds", "seconds"),
        ("cards/s", "cards_per_second"))]
    if data["deposit"]:
        rows.append(("deposits to take now", f"{data['issued']} x {money(data['deposit'])} = "
                                             f"{money(data['deposits_taken'])}"))
    if data["skipped_holders"]:
        rows.append(("holders who already have a card", str(len(data["skipped_holders"]))))
    parts = [table(("", "figure"), rows, title=f"batch {data['batch']}", show_header=False, right=("figure",))]
    if data["cards"]:
        with_pins = not data["pins_file"] and data["profile"] != "desfire"
        title = ("cards (PINs are shown once: hand them over now)" if with_pins else
                 "cards (DESFire: no PIN)" if data["profile"] == "desfire" else f"cards (PINs in {data['pins_file']})")
        parts.append(table(("number", "holder", "PIN" if with_pins else "where"),
                           [(cardnumber.format(c["number"]), c["holder"] or "", c.get("pin") or c["where"])
                            for c in data["cards"]], title=title))
    return "\n".join(parts)


@click.command("issue")
@click.option("--count", type=int, help="Issue N cards without holders.")
@click.option("--from", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Holders CSV: name, phone, email [, program, tier, pin].")
@click.option("--batch", help="Batch name; run again with the same name to resume [csv-<hash> or count-<time>].")
@click.option("-r", "--reader", help="Write cards in this PC/SC reader instead of virtual card images.")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for virtual card images [home/cards].")
@click.option("--program", type=click.IntRange(1, 0xFFFF), help="Loyalty program id for every card.")
@click.option("--tier", type=click.IntRange(0, 255), help="Starting tier index.")
@click.option("--max-balance", help="Maximum balance, e.g. 15000.00 [issuer config].")
@click.option("--currency", type=int, help="ISO 4217 numeric currency [issuer config].")
@click.option("--expiry", help="Expiry month YYYY-MM [issue date + card_validity_years].")
@click.option("--pins", "pins_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the PINs to this new file (CSV, mode 0600).")
@click.option("--show-pins", is_flag=True, help="Print the PINs instead, once (no file keeps them).")
@click.option("--profile", "chip", type=click.Choice([c.value for c in CardChip]), default=CardChip.REFERENCE.value,
              show_default=True, help="The card to issue: the reference card, or MIFARE DESFire EV2/EV3 (no PIN).")
@click.option("--deposit", help="Deposit each holder pays for a card, refunded at its return, e.g. 7.50 "
              "[issuer card_deposit].")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for each card.")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=DEFAULT_CHUNK, show_default=True,
              help="Cards per registry transaction (virtual images).")
@pass_cli
def issue(cli: CliContext, count: int | None, csv_path: Path | None, batch: str | None, reader: str | None,
          folder: Path | None, program: int | None, tier: int | None, max_balance: str | None,
          currency: int | None, expiry: str | None, pins_file: Path | None, show_pins: bool, chip: str,
          deposit: str | None, timeout: float, chunk: int) -> None:
    """Personalize cards (virtual images by default) and record them in the registry.

    The PINs go where you say: a new 0600 file (``--pins``) or the screen (``--show-pins``), never
    to stdout by default, where 20,000 of them would land in a terminal's scrollback or a log."""
    if (count is None) == (csv_path is None):
        raise UserError("give either --count N or --from holders.csv")
    if reader is not None and folder is not None:
        raise UserError("give either --reader or --out, not both")
    if pins_file is not None and pins_file.exists():
        raise UserError(f"{pins_file} already exists; PINs are written once, to a new file")
    exponent = cli.currency_exponent
    limit = parse_amount(max_balance, exponent) if max_balance is not None else None
    card_deposit = parse_amount(deposit, exponent, allow_zero=True) if deposit is not None else None
    if csv_path is not None:
        try:
            holders, digest = read_holders(csv_path, cli.home.issuer.phone_region)
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
    card_chip = CardChip(chip)
    if card_chip is CardChip.DESFIRE:
        if pins_file is not None or show_pins:
            raise click.UsageError("DESFire cards get no PIN (docs/desfire.md): drop --pins and --show-pins")
    elif (pins_file is None) == (not show_pins):
        raise click.UsageError("say where the PINs go: --pins FILE (a new 0600 file) or --show-pins (printed once)")
    store = issuer_keystore(cli)
    profile = card_profile(cli.home, store, max_balance=limit, currency=currency,
                           expiry=None if expiry is None else expiry_month(expiry), chip=card_chip,
                           deposit=card_deposit)
    db = engine(cli)
    sam = issuer_sam(store)
    pins = PinsFile(pins_file) if pins_file is not None else None
    on_issued = pins.append if pins is not None else None
    with progress(cli, len(requests), f"issuing batch {batch}") as advance, pins or contextlib.nullcontext():
        if reader is not None:
            def say(message: str) -> None:
                if not cli.json:
                    click.echo(message, err=True)

            present = pcsc_presenter(sam, reader, say, timeout=timeout, chip=card_chip)
            report = issue_to_reader(db, sam, profile, requests, batch, reader, present, source=source,
                                     progress=advance, on_issued=on_issued)
        else:
            report = issue_to_images(db, sam, profile, requests, batch, folder or cli.home.cards_dir,
                                     source=source, chunk=chunk, progress=advance, on_issued=on_issued)
    if csv_path is not None:  # the holders are registered now: their consent columns can be recorded
        from processing.holders.consent import record_file_consents

        record_file_consents(db, ((r.holder.email, channel, granted) for r in requests if r.holder is not None
                                  for channel, granted in r.holder.consents), str(csv_path.name))
    emit(cli, _report_data(report, profile, pins_file if report.issued else None),
         lambda d: _report_text(d, cli.money))


# -- cards life cycle -------------------------------------------------------------------------------
# What fulfils each kind of holder request (docs/portal.md).
REQUEST_COMMANDS = {"replacement": "smartpurse cards replace {number}", "payout": "smartpurse cash-out {number}"}


def _card_text(row: dict[str, Any], exponent: int) -> str:
    lines = [f"card {cardnumber.format(row['number'])}: {row['state']}"]
    for label, key in (("profile", "profile"), ("holder", "holder_name"), ("e-mail", "email"), ("phone", "phone"),
                       ("UID", "uid"),
                       ("key version", "key_version"), ("program", "program"), ("tier", "tier"),
                       ("issued", "issued_at"), ("blocked", "blocked_at"), ("reason", "block_reason"),
                       ("replaced by", "replaced_by"), ("replaces", "replaces"), ("batch", "batch"),
                       ("image", "image"), ("reader", "reader")):
        if row.get(key) is not None:
            lines.append(f"  {label}: {row[key]}")
    lines.append(f"  maximum balance: {format_amount(row['max_balance'], exponent)}")
    if "deposit" in row:
        lines.append(f"  deposit taken at issue: {format_amount(row['deposit'], exponent)}")
    if "returned" in row:
        r = row["returned"]
        lines.append(f"  returned {r['at']:%Y-%m-%d %H:%M}: paid out {format_amount(r['balance_paid_out'], exponent)}"
                     f" and the deposit {format_amount(r['deposit_refunded'], exponent)}")
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
    for kind, q in row.get("requests", {}).items():
        done = f"done {q['done_at']:%Y-%m-%d} ({q['note']})" if q["done_at"] else \
            f"open: {REQUEST_COMMANDS.get(kind, '').format(number=row['number'])}"
        lines.append(f"  {kind} asked for {q['requested_at']:%Y-%m-%d %H:%M} ({q['source']}): {done}")
    return "\n".join(lines)


@click.command("list")
@click.option("--state", type=click.Choice([str(s) for s in CardStatus]), help="Only cards in this state.")
@click.option("--limit", type=click.IntRange(1), help="At most this many cards.")
@pass_cli
def list_cards(cli: CliContext, state: str | None, limit: int | None) -> None:
    """Cards in the registry."""
    rows = registry.list_cards(engine(cli), state, limit)

    def text(rs: list[dict[str, Any]]) -> str:
        if not rs:
            return "no cards"
        return table(("number", "state", "holder", "key v", "program", "issued"),
                     [(cardnumber.format(r["number"]), r["state"], r["holder_name"] or "", str(r["key_version"]),
                       str(r["program"] or ""), r["issued_at"].strftime("%Y-%m-%d %H:%M")) for r in rs])

    emit(cli, rows, text)


@click.command("requests")
@click.option("--all", "include_done", is_flag=True, help="Done requests too, with what fulfilled them.")
@pass_cli
def requests_list(cli: CliContext, include_done: bool) -> None:
    """What holders asked for on their page: replacements to issue, payouts when the card comes back."""
    rows = registry.holder_requests_list(engine(cli), include_done)

    def text(rs: list[dict[str, Any]]) -> str:
        if not rs:
            return "no requests" if include_done else "no open requests"
        return table(("card", "asked for", "when", "holder", "phone", "next" if not include_done else "done"),
                     [(cardnumber.format(r["number"]), r["kind"], r["requested_at"].strftime("%Y-%m-%d %H:%M"),
                       r["holder"] or "", r["phone"] or "",
                       f"{r['done_at']:%Y-%m-%d} ({r['note']})" if r["done_at"] else
                       REQUEST_COMMANDS.get(r["kind"], "").format(number=r["number"])) for r in rs])

    emit(cli, rows, text)


@click.command("find")
@click.option("--phone", help="The holder's phone, in any way people write it (+7 912 345-67-89, 8 912 ...).")
@click.option("--email", help="The holder's e-mail.")
@pass_cli
def find(cli: CliContext, phone: str | None, email: str | None) -> None:
    """The cards of the holder with this phone or e-mail (a holder may hold several)."""
    if (phone is None) == (email is None):
        raise click.UsageError("give either --phone or --email")
    e164 = None
    if phone is not None:
        e164 = normalize_phone(phone, cli.home.issuer.phone_region)
        if e164 is None:
            raise UserError(f"not a phone number: {phone!r}")
    rows = registry.list_cards(engine(cli), phone=e164, email=email)

    def text(rs: list[dict[str, Any]]) -> str:
        if not rs:
            return f"no card of a holder with {'phone ' + str(e164) if e164 else 'e-mail ' + str(email)}"
        return table(("number", "state", "holder", "phone", "e-mail", "issued"),
                     [(cardnumber.format(r["number"]), r["state"], r["holder_name"] or "", r["phone"] or "",
                       r["email"] or "", r["issued_at"].strftime("%Y-%m-%d %H:%M")) for r in rs])

    emit(cli, rows, text)


@click.command("show")
@click.argument("number", callback=_number)
@pass_cli
def show(cli: CliContext, number: str) -> None:
    """Registry data of card NUMBER (and its shadow balance once processing provides it)."""
    db = engine(cli)
    row = lifecycle.card_details(db, number)
    shadow = shadow_balance(db, number)  # processing's figure, once batches are in
    if shadow is not None:
        row["shadow_balance"] = dataclasses.asdict(shadow)
    emit(cli, row, lambda r: _card_text(r, cli.currency_exponent))


@click.command("block")
@click.argument("number", callback=_number)
@click.option("--reason", default="lost", show_default=True,
              help="Why: lost, stolen, damaged, or any word; kept in the registry and on the hotlist.")
@pass_cli
def block(cli: CliContext, number: str, reason: str) -> None:
    """Block card NUMBER in the registry: the next hotlist carries it to every terminal."""
    row = lifecycle.block(engine(cli), number, reason)
    emit(cli, {"number": number, "state": row["state"], "blocked_at": row["blocked_at"],
               "reason": row["block_reason"]},
         lambda r: f"card {cardnumber.format(number)} blocked ({r['reason']}) at {r['blocked_at']}; "
                   f"export a new hotlist for the terminals")


@click.command("unblock")
@click.argument("number", callback=_number)
@pass_cli
def unblock(cli: CliContext, number: str) -> None:
    """Unblock card NUMBER (and its virtual card, if a terminal blocked it on the chip)."""
    row = lifecycle.unblock(engine(cli), cli.home, number, lambda: issuer_keystore(cli))
    emit(cli, {"number": number, "state": row["state"], "unblocked_on_card": row.get("unblocked_on_card", False)},
         lambda r: f"card {cardnumber.format(number)} is {r['state']} again"
                   + (" (and unblocked on the card)" if r["unblocked_on_card"] else ""))


@click.command("replace")
@click.argument("number", callback=_number)
@click.option("--reason", default="lost", show_default=True,
              help="Why: lost, stolen, damaged, or any word; kept in the registry and on the hotlist.")
@click.option("-r", "--reader", help="Write the new card in this PC/SC reader.")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path), help="Image folder [home/cards].")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the new card in the reader.")
@pass_cli
def replace(cli: CliContext, number: str, reason: str, reader: str | None, folder: Path | None,
            timeout: float) -> None:
    """Replace a lost or damaged card: block it, issue a new one, record the value transfer."""
    store = issuer_keystore(cli)
    profile = card_profile(cli.home, store)
    present = None
    if reader is not None:
        present = pcsc_presenter(issuer_sam(store), reader, lambda m: click.echo(m, err=True), timeout=timeout)
    result, report = lifecycle.replace(engine(cli), cli.home, store, profile, number, reason, folder=folder,
                                       reader=reader, present=present)
    if report.issued:
        result["pin"] = report.issued[0].pin
    emit(cli, result, lambda r: f"card {cardnumber.format(r['old'])} replaced by {cardnumber.format(r['new'])}"
                                + (f", PIN {r['pin']} (shown once)" if "pin" in r else "")
                                + "; once processing has the old card's last batches, load its balance onto "
                                  f"the new card at a desk: smartpurse load {r['new']} --transfer")


@click.command("face")
@click.argument("number", callback=_number)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.png or FILE.svg")
@pass_cli
def face(cli: CliContext, number: str, out: Path) -> None:
    """Draw card NUMBER's face: number, QR code and barcode."""
    row = registry.card_row(engine(cli), number)
    path = write_face(number, out, issuer=cli.home.issuer.system_identifier, holder=row["holder_name"],
                      expiry=row["expiry"])
    emit(cli, {"number": number, "path": str(path)}, f"card face written to {path}")


@click.command("pin-reset")
@click.argument("number", callback=_number)
@click.option("--pin", help="The new PIN [generated, shown once].")
@click.option("-r", "--reader", help="The card is in this PC/SC reader [its virtual image].")
@pass_cli
def pin_reset(cli: CliContext, number: str, pin: str | None, reader: str | None) -> None:
    """Set a new PIN on card NUMBER (ADMIN key): redemption works again after too many wrong PINs."""
    new_pin = lifecycle.reset_pin(engine(cli), cli.home, issuer_keystore(cli), number, pin, reader)
    emit(cli, {"number": number, "pin": new_pin}, f"card {cardnumber.format(number)}: new PIN {new_pin} (shown once)")
