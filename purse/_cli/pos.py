"""``smartpurse pos …``: a POS terminal for trying the system out and for shops without a POS integration.

Each command opens the terminal's station (``purse.station.PosStation``: keys, log,
verified program and hotlist), presents the card (its virtual image by number, or
``--reader``) and prints a receipt through ``emit``; every rule is the library's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from purse._cli.receipts import COMPLETED_BEFORE, receipt_data, receipt_text
from purse._cli.util import AMOUNT_COMMAND, CliContext, emit, pass_cli, passphrase
from purse.errors import UserError
from purse.loyalty import ProgramPolicy
from purse.station import PosStation
from purse.terminal import CompletedBefore

reader_option = click.option("-r", "--reader", help="Use the card in this PC/SC reader instead of the virtual image.")


def open_station(cli: CliContext, terminal_id: int) -> PosStation:
    """Terminal T of the home, its key file opened with the passphrase (env or prompt)."""
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    return PosStation.open(cli.home, terminal_id, passphrase(f"Passphrase for pos-{terminal_id}.key"))


@click.group("pos")
def pos_group() -> None:
    """A POS terminal: sell, cancel, read a card, install a program or a hotlist, close a batch."""


terminal_option = click.option("--terminal", "terminal_id", type=int, required=True, envvar="SMARTPURSE_TERMINAL",
                               help="Terminal id (its key file is keys/pos-<T>.key).")


@pos_group.command("program")
@click.argument("file", type=click.Path(path_type=Path))
@terminal_option
@pass_cli
def pos_program(cli: CliContext, file: Path, terminal_id: int) -> None:
    """Install a signed program FILE on terminal T (after checking the issuer's signature)."""
    program = open_station(cli, terminal_id).install_program(file)
    emit(cli, {"terminal_id": terminal_id, "program_id": program.program_id, "name": program.name,
               "version": program.version},
         f"terminal {terminal_id} now runs program {program.program_id} {program.name!r} v{program.version}")


@pos_group.command("hotlist")
@click.argument("file", type=click.Path(path_type=Path))
@terminal_option
@pass_cli
def pos_hotlist(cli: CliContext, file: Path, terminal_id: int) -> None:
    """Install a signed hotlist FILE on terminal T; hotlisted cards are then blocked on sight."""
    hotlist = open_station(cli, terminal_id).install_hotlist(file)
    emit(cli, {"terminal_id": terminal_id, "sequence": hotlist.sequence, "cards": len(hotlist.cards)},
         f"terminal {terminal_id}: hotlist {hotlist.sequence} installed ({len(hotlist.cards)} cards)")


@pos_group.command("sell", context_settings=AMOUNT_COMMAND)
@click.argument("number")
@click.argument("amount")
@terminal_option
@click.option("--redeem-points", type=click.IntRange(min=0), default=0, help="Pay part of the price with points.")
@click.option("--pin", envvar="SMARTPURSE_PIN", help="Card holder PIN for redeeming (else asked).")
@click.option("--again", is_flag=True,
              help="Sell even if the same sale on this card just completed before the card was pulled.")
@reader_option
@pass_cli
def pos_sell(cli: CliContext, number: str, amount: str, terminal_id: int, redeem_points: int, pin: str | None,
             again: bool, reader: str | None) -> None:
    """Sell to card NUMBER for AMOUNT (like 12.50), with the terminal's loyalty program."""
    price = cli.amount(amount)
    station = open_station(cli, terminal_id)
    program = station.program()
    if redeem_points and program is None:
        raise UserError(f"terminal {terminal_id} runs no loyalty program: install one with `smartpurse pos program`")
    if redeem_points and pin is None:
        pin = click.prompt("Card holder PIN", hide_input=True)
    terminal = station.terminal_at(number, reader)
    policy = ProgramPolicy(program) if program else None
    try:
        receipt = terminal.debit(price, points=policy, redeem_points=redeem_points,
                                 pin=pin if redeem_points else None, again=again)
        before = False
    except CompletedBefore as e:  # the cashier's retry after a pulled card: it was sold once
        receipt, before = e.receipt, True
    tier = receipt.record.tier if receipt.record is not None else None
    emit(cli, receipt_data(receipt, program, tier, completed_before=before), lambda d: receipt_text(cli, d))


@pos_group.command("cancel")
@click.argument("number")
@terminal_option
@reader_option
@pass_cli
def pos_cancel(cli: CliContext, number: str, terminal_id: int, reader: str | None) -> None:
    """Cancel this terminal's last purchase on card NUMBER: money and points come back."""
    station = open_station(cli, terminal_id)
    terminal = station.terminal_at(number, reader)
    try:
        receipt, before = terminal.cancel_last(), False
    except CompletedBefore as e:  # the retry of a cancel a pulled card had completed
        receipt, before = e.receipt, True
    emit(cli, receipt_data(receipt, station.program(), completed_before=before), lambda d: receipt_text(cli, d))


@pos_group.command("read")
@click.argument("number")
@terminal_option
@reader_option
@pass_cli
def pos_read(cli: CliContext, number: str, terminal_id: int, reader: str | None) -> None:
    """Show card NUMBER: balance, this terminal's program points, the card's log."""
    station = open_station(cli, terminal_id)
    program = station.program()
    terminal = station.terminal_at(number, reader)
    view = terminal.read_card(program.program_id if program else 0)
    slot = view.points
    data: dict[str, Any] = {
        "card_number": view.info.number, "state": view.info.state.name.lower(), "balance": view.balance,
        "counter": view.counter,
        "points": None if program is None else {
            "program_id": program.program_id, "program_name": program.name, "points": slot.points,
            "tier": program.tier(slot.tier).name, "visits": slot.visits, "cumulative_spend": slot.cumulative_spend,
            "last_visit": slot.last_visit, "prizes_won": slot.prizes_won},
        "log": [{"type": r.record_type.name.lower(), "counter": r.counter, "amount": r.amount,
                 "balance_after": r.balance_after, "program_id": r.program_id, "points_after": r.points_after,
                 "terminal_id": r.terminal_id, "time": r.time} for r in view.log],
        "recovered": [r.as_dict() for r in view.recovered],
    }
    emit(cli, data, lambda d: _card_text(cli, d))


def _card_text(cli: CliContext, d: dict[str, Any]) -> str:
    lines = [f"{COMPLETED_BEFORE}: {r['kind']} of {cli.money(r['amount'])}, counter {r['counter']} (now in the log)"
             for r in d["recovered"]]
    lines.append(f"card {d['card_number']} ({d['state']}): balance {cli.money(d['balance'])}, counter {d['counter']}")
    p = d["points"]
    if p is not None:
        lines.append(f"  {p['program_name']}: {p['points']} points, tier {p['tier']}, {p['visits']} visits, "
                     f"spent {cli.money(p['cumulative_spend'])}, {p['prizes_won']} prizes won")
    for r in d["log"]:
        lines.append(f"  #{r['counter']:<5} {r['type']:<8} {cli.money(r['amount']):>10}  balance "
                     f"{cli.money(r['balance_after']):>10}  terminal {r['terminal_id']}")
    return "\n".join(lines)


@pos_group.command("batch")
@terminal_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Batch file to write.")
@click.option("--batch", "batch_seq", type=click.IntRange(min=1),
              help="Write closed batch N again (a lost file): the same bytes, processing sees a duplicate.")
@pass_cli
def pos_batch(cli: CliContext, terminal_id: int, out: Path, batch_seq: int | None) -> None:
    """Close every record not yet batched into a batch file OUT for processing."""
    station = open_station(cli, terminal_id)
    summary = station.export_batch(out, batch_seq)
    data = {"out": str(summary.path), "batch_seq": summary.batch_seq, "records": summary.records,
            "totals": summary.totals.__dict__}
    emit(cli, data, lambda d: f"batch {d['batch_seq']} of terminal {terminal_id}: {d['records']} records -> "
                              f"{d['out']} (purchases {cli.money(d['totals']['purchase_total'])}, cancels "
                              f"{cli.money(d['totals']['cancel_total'])})")


COMMANDS: list[click.Command] = [pos_group]
