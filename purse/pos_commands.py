"""Terminal commands: loyalty programs, the credit desk (``load``) and the POS (``pos ...``).

For trying the system out and for shops without a POS integration: each command opens
the card (a virtual card image by number, or ``--reader``), builds the library's
``Terminal``/``CreditTerminal`` from the role's key file, and prints a receipt through
``emit``. What a terminal has installed (its signed program, its hotlist) lives next to
its log in ``home/terminals`` and is verified with the issuer public key at every use,
so a file edited after installation is refused, not trusted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from personalization.keyfiles import get_passphrase, load_issuer, load_role_keys, role_key_path
from personalization.keystore import Keystore
from personalization.roles import RoleKeys
from purse.cliutil import CliContext, emit, pass_cli
from purse.errors import UserError
from purse.home import TerminalFiles
from purse.hotlist import Hotlist, load_hotlist
from purse.loyalty import (
    Program,
    ProgramPolicy,
    load_signed_program,
    parse_program_bytes,
    read_program_file,
    sign_program,
)
from purse.loyalty.signed import KIND as PROGRAM_KIND
from purse.money import format_amount, parse_amount
from purse.sam import SoftwareSam
from purse.session import PurseSession
from purse.signing import SignatureError, verify_document
from purse.terminal import CreditTerminal, Receipt, Terminal
from purse.terminal_log import TerminalLog
from purse.transport import Transport

# "-1" must reach parse_amount as an argument, not be taken for an unknown option.
AMOUNT_COMMAND = {"ignore_unknown_options": True}


# -- keys (personalization's key files) -------------------------------------------------------

def _passphrase(what: str) -> str:
    return get_passphrase(f"Passphrase for {what}")


def _role_keys(cli: CliContext, role: str, terminal_id: int | None = None) -> RoleKeys:
    """The role's key file, decrypted (``smartpurse keys export`` wrote it)."""
    path = role_key_path(cli.home, role, terminal_id)
    if not Path(path).is_file():
        hint = f" --terminal {terminal_id}" if terminal_id is not None else ""
        raise UserError(f"no {role} key file {path}: export it with `smartpurse keys export --role {role}{hint}`")
    return load_role_keys(path, _passphrase(f"{Path(path).name}"))


def _issuer(cli: CliContext) -> Keystore:
    return load_issuer(cli.home, _passphrase("the issuer keystore"))


# -- a terminal's files in the home ------------------------------------------------------------

@dataclass
class PosStation:
    """One POS terminal as the CLI runs it: keys, log, verified program and hotlist."""

    files: TerminalFiles
    keys: RoleKeys

    @classmethod
    def open(cls, cli: CliContext, terminal_id: int) -> PosStation:
        keys = _role_keys(cli, "pos", terminal_id)
        if keys.role != "pos" or keys.terminal_id != terminal_id or keys.merchant_id is None or keys.log_key is None:
            raise UserError(f"the key file of terminal {terminal_id} is not a POS key file for it "
                            f"(role {keys.role}, terminal {keys.terminal_id})")
        return cls(TerminalFiles(cli.home.terminals_dir, terminal_id), keys)

    @property
    def merchant_id(self) -> int:
        assert self.keys.merchant_id is not None  # checked in open()
        return self.keys.merchant_id

    def log(self) -> TerminalLog:
        return TerminalLog(self.files.log, terminal_id=self.files.terminal_id, merchant_id=self.merchant_id,
                           log_key=self.keys.log_key)

    def program(self) -> Program | None:
        if not self.files.program.is_file():
            return None
        return load_signed_program(self.files.program, self.keys.issuer_public_key)[1]

    def hotlist(self) -> Hotlist:
        if not self.files.hotlist.is_file():
            return Hotlist(0, 0, 0)
        return load_hotlist(self.files.hotlist, self.keys.issuer_public_key)

    def terminal_at(self, cli: CliContext, number: str, reader: str | None) -> Terminal:
        """This terminal with card NUMBER presented (its virtual image, or the card in ``reader``)."""
        return self.terminal(open_card(cli, number, reader, self.keys.sam()))

    def terminal(self, transport: Transport) -> Terminal:
        return Terminal(transport, self.keys.sam(), self.log(), terminal_id=self.files.terminal_id,
                        merchant_id=self.merchant_id, hotlist=self.hotlist())


def _install(source: Path, target: Path) -> None:
    """Copy through a temporary file and rename: an interrupted install leaves the old file."""
    tmp = target.with_suffix(target.suffix + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


# -- cards ------------------------------------------------------------------------------------

def _card_number(number: str) -> str:
    if len(number) != 16 or not number.isdigit():
        raise UserError(f"not a card number: {number!r} (16 digits)")
    return number


def open_card(cli: CliContext, number: str, reader: str | None, sam: SoftwareSam) -> Transport:
    """The card NUMBER: its virtual image in the home, or the card in ``reader``, checked to be NUMBER."""
    number = _card_number(number)
    transport: Transport
    if reader is not None:
        from purse.transport.pcsc import PcscTransport

        transport = PcscTransport(reader)
    else:
        from purse.transport.virtual import VirtualTransport

        image = cli.home.cards_dir / f"{number}.card"
        if not image.is_file():
            raise UserError(f"unknown card {number}: no image {image} (issue cards with `smartpurse cards issue`)")
        transport = VirtualTransport.open(image)
    transport.connect()
    found = PurseSession(transport, sam).select().number
    if found != number:
        raise UserError(f"the card presented is {found}, not {number}")
    return transport


def _amount(cli: CliContext, text: str) -> int:
    return parse_amount(text, int(cli.home.issuer["currency_exponent"]))


# -- output -----------------------------------------------------------------------------------

def _money(cli: CliContext, minor: int) -> str:
    return format_amount(minor, int(cli.home.issuer["currency_exponent"]))


def receipt_data(receipt: Receipt, program: Program | None = None, tier: int | None = None) -> dict[str, Any]:
    data = receipt.as_dict()
    if program is not None:
        data["program_name"] = program.name
        if tier is not None:
            data["tier"] = program.tier(tier).name
    return data


def receipt_text(cli: CliContext, data: dict[str, Any]) -> str:
    m = lambda v: _money(cli, v)  # noqa: E731
    lines = [f"{data['kind'].upper()}  card {data['card_number']}  terminal {data['terminal_id']}"
             f"  seq {data['terminal_seq']}  counter {data['counter']}"]
    if data["kind"] == "purchase":
        lines.append(f"  price        {m(data['price']):>12}")
        if data["discount"]:
            lines.append(f"  discount     {m(-data['discount']):>12}  ({data.get('tier', 'tier')})")
        if data["points_redeemed"]:
            n = data["points_redeemed"]
            lines.append(f"  points paid  {m(-data['points_value']):>12}  ({n} point{'s' * (n != 1)})")
        lines.append(f"  debited      {m(data['amount']):>12}")
    else:
        lines.append(f"  amount       {m(data['amount']):>12}")
    lines.append(f"  balance      {m(data['balance']):>12}")
    if data["program_id"]:
        name = data.get("program_name", f"program {data['program_id']}")
        lines.append(f"  points       {data['points_after']:>12}  ({name}: {data['points_earned']:+d} earned, "
                     f"{data['points_redeemed']} redeemed)")
    for text in data["prize_text"]:
        lines.append(f"  *** PRIZE: {text} ***")
    if data.get("transfer_from"):
        lines.append(f"  value of replaced card {data['transfer_from']}: no cash taken")
    lines.append(f"  certificate  {data['certificate']}")
    return "\n".join(lines)


# -- program ----------------------------------------------------------------------------------

@click.group("program")
def program_group() -> None:
    """Loyalty programs: sign a program file, show a program's rules."""


@program_group.command("sign")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Signed file to write [FILE with .signed].")
@pass_cli
def program_sign(cli: CliContext, file: Path, out: Path | None) -> None:
    """Check a program FILE (TOML or JSON) and sign it with the issuer key."""
    data, program = read_program_file(file)
    signed = sign_program(data, _issuer(cli).signing_key, str(file))
    out = out or file.with_suffix(".signed")
    try:
        out.write_bytes(signed)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}") from None
    emit(cli, {"program_id": program.program_id, "name": program.name, "version": program.version, "out": str(out)},
         f"signed program {program.program_id} {program.name!r} v{program.version} -> {out}")


@program_group.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--terminal", "terminal_id", type=int,
              help="Verify with the issuer key in this POS terminal's key file [the issuer keystore].")
@pass_cli
def program_show(cli: CliContext, file: Path, terminal_id: int | None) -> None:
    """Verify a signed program FILE and print its rules (an unsigned file: just check it)."""
    data, signed = _read_maybe_signed(file)
    if signed:
        if terminal_id is not None:
            key = _role_keys(cli, "pos", terminal_id).issuer_public_key
        else:
            key = _issuer(cli).public_key_bytes
        data = verify_document(data, PROGRAM_KIND, key, source=str(file))
    program = parse_program_bytes(data, str(file))
    result = {"file": str(file), "signed": signed, **program.describe()}
    emit(cli, result, _program_text)


def _read_maybe_signed(file: Path) -> tuple[bytes, bool]:
    try:
        data = file.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    return data, b'"smartpurse-signed/' in data[:200]


def _program_text(d: dict[str, Any]) -> str:
    status = "signed by the issuer (verified)" if d["signed"] else "NOT signed (terminals will refuse it)"
    lines = [f"program {d['id']} {d['name']!r} version {d['version']}: {status}"]
    earn = d["earn"]
    if "per_amount" in earn:
        lines.append(f"  earn {earn['per_amount']['points']} per {earn['per_amount']['amount']} debited")
    if "per_visit" in earn:
        lines.append(f"  earn {earn['per_visit']} per visit")
    if "big_purchase" in earn:
        lines.append(f"  earn {earn['big_purchase']['points']} for a purchase of {earn['big_purchase']['threshold']}"
                     " or more")
    if "frequency" in earn:
        f = earn["frequency"]
        lines.append(f"  earn {f['points']} on the {f['visits']}th visit within {f['days']} days")
    for ms in earn.get("milestones", []):
        lines.append(f"  earn {ms['points']} when cumulative spend reaches {ms['spend']}")
    if "prize" in d:
        p = d["prize"]
        lines.append(f"  prize at {p['threshold']} points: {p['text']!r}, then points {p['mode']}")
    for t in d["tiers"]:
        lines.append(f"  tier {t['name']}: from {t['min_spend']} spent, {t['discount_percent']}% off")
    if "expiry" in d:
        lines.append(f"  points lapse after {d['expiry']['days']} days without a visit")
    if "redeem" in d:
        lines.append(f"  redeem: 1 point pays {d['redeem']['point_value']}, at least {d['redeem']['min_points']}"
                     " points, PIN required")
    return "\n".join(lines)


# -- pos --------------------------------------------------------------------------------------

@click.group("pos")
def pos_group() -> None:
    """A POS terminal: sell, cancel, read a card, install a program or a hotlist, close a batch."""


terminal_option = click.option("--terminal", "terminal_id", type=int, required=True, envvar="SMARTPURSE_TERMINAL",
                               help="Terminal id (its key file is keys/pos-<T>.key).")
reader_option = click.option("--reader", help="Use the card in this PC/SC reader instead of the virtual image.")


@pos_group.command("program")
@click.argument("file", type=click.Path(path_type=Path))
@terminal_option
@pass_cli
def pos_program(cli: CliContext, file: Path, terminal_id: int) -> None:
    """Install a signed program FILE on terminal T (after checking the issuer's signature)."""
    if not _read_maybe_signed(file)[1]:
        raise UserError(f"{file} is not a signed program: sign it first with `smartpurse program sign {file}`")
    station = PosStation.open(cli, terminal_id)
    _, program = load_signed_program(file, station.keys.issuer_public_key)
    _install(file, station.files.program)
    emit(cli, {"terminal_id": terminal_id, "program_id": program.program_id, "name": program.name,
               "version": program.version},
         f"terminal {terminal_id} now runs program {program.program_id} {program.name!r} v{program.version}")


@pos_group.command("hotlist")
@click.argument("file", type=click.Path(path_type=Path))
@terminal_option
@pass_cli
def pos_hotlist(cli: CliContext, file: Path, terminal_id: int) -> None:
    """Install a signed hotlist FILE on terminal T; hotlisted cards are then blocked on sight."""
    station = PosStation.open(cli, terminal_id)
    hotlist = load_hotlist(file, station.keys.issuer_public_key)
    current = station.hotlist()
    if hotlist.sequence < current.sequence:
        raise SignatureError(f"{file}: hotlist {hotlist.sequence} is older than the installed {current.sequence}")
    _install(file, station.files.hotlist)
    emit(cli, {"terminal_id": terminal_id, "sequence": hotlist.sequence, "cards": len(hotlist.cards)},
         f"terminal {terminal_id}: hotlist {hotlist.sequence} installed ({len(hotlist.cards)} cards)")


@pos_group.command("sell", context_settings=AMOUNT_COMMAND)
@click.argument("number")
@click.argument("amount")
@terminal_option
@click.option("--redeem-points", type=click.IntRange(min=0), default=0, help="Pay part of the price with points.")
@click.option("--pin", envvar="SMARTPURSE_PIN", help="Card holder PIN for redeeming (else asked).")
@reader_option
@pass_cli
def pos_sell(cli: CliContext, number: str, amount: str, terminal_id: int, redeem_points: int, pin: str | None,
             reader: str | None) -> None:
    """Sell to card NUMBER for AMOUNT (like 12.50), with the terminal's loyalty program."""
    price = _amount(cli, amount)
    station = PosStation.open(cli, terminal_id)
    program = station.program()
    if redeem_points and program is None:
        raise UserError(f"terminal {terminal_id} runs no loyalty program: install one with `smartpurse pos program`")
    if redeem_points and pin is None:
        pin = click.prompt("Card holder PIN", hide_input=True)
    terminal = station.terminal_at(cli, number, reader)
    policy = ProgramPolicy(program) if program else None
    receipt = terminal.debit(price, points=policy, redeem_points=redeem_points, pin=pin if redeem_points else None)
    tier = receipt.record.tier if receipt.record is not None else None
    emit(cli, receipt_data(receipt, program, tier), lambda d: receipt_text(cli, d))


@pos_group.command("cancel")
@click.argument("number")
@terminal_option
@reader_option
@pass_cli
def pos_cancel(cli: CliContext, number: str, terminal_id: int, reader: str | None) -> None:
    """Cancel this terminal's last purchase on card NUMBER: money and points come back."""
    station = PosStation.open(cli, terminal_id)
    terminal = station.terminal_at(cli, number, reader)
    receipt = terminal.cancel_last()
    emit(cli, receipt_data(receipt, station.program()), lambda d: receipt_text(cli, d))


@pos_group.command("read")
@click.argument("number")
@terminal_option
@reader_option
@pass_cli
def pos_read(cli: CliContext, number: str, terminal_id: int, reader: str | None) -> None:
    """Show card NUMBER: balance, this terminal's program points, the card's log."""
    station = PosStation.open(cli, terminal_id)
    program = station.program()
    terminal = station.terminal_at(cli, number, reader)
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
    }
    emit(cli, data, lambda d: _card_text(cli, d))


def _card_text(cli: CliContext, d: dict[str, Any]) -> str:
    lines = [f"card {d['card_number']} ({d['state']}): balance {_money(cli, d['balance'])}, counter {d['counter']}"]
    p = d["points"]
    if p is not None:
        lines.append(f"  {p['program_name']}: {p['points']} points, tier {p['tier']}, {p['visits']} visits, "
                     f"spent {_money(cli, p['cumulative_spend'])}, {p['prizes_won']} prizes won")
    for r in d["log"]:
        lines.append(f"  #{r['counter']:<5} {r['type']:<8} {_money(cli, r['amount']):>10}  balance "
                     f"{_money(cli, r['balance_after']):>10}  terminal {r['terminal_id']}")
    return "\n".join(lines)


@pos_group.command("batch")
@terminal_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Batch file to write.")
@pass_cli
def pos_batch(cli: CliContext, terminal_id: int, out: Path) -> None:
    """Close every record not yet batched into a batch file OUT for processing."""
    station = PosStation.open(cli, terminal_id)
    if out.exists():
        raise UserError(f"{out} exists: choose another file, a batch is never overwritten")
    summary = Terminal(_NoCard(), station.keys.sam(), station.log(), terminal_id=terminal_id,
                       merchant_id=station.merchant_id).export_batch(out)
    data = {"out": str(summary.path), "batch_seq": summary.batch_seq, "records": summary.records,
            "totals": summary.totals.__dict__}
    emit(cli, data, lambda d: f"batch {d['batch_seq']} of terminal {terminal_id}: {d['records']} records -> "
                              f"{d['out']} (purchases {_money(cli, d['totals']['purchase_total'])}, cancels "
                              f"{_money(cli, d['totals']['cancel_total'])})")


class _NoCard:
    """Closing a batch needs no card: a transport that says so if ever used."""

    def connect(self) -> bytes:
        raise UserError("no card is needed to close a batch")

    def transmit(self, apdu: bytes) -> bytes:
        raise UserError("no card is needed to close a batch")

    def disconnect(self) -> None:
        return None


# -- credit desk ------------------------------------------------------------------------------

@click.command("load", context_settings=AMOUNT_COMMAND)
@click.argument("number")
@click.argument("amount", required=False)
@click.option("--transfer", is_flag=True,
              help="Load the value of the card NUMBER replaces, once processing has transferred it (no AMOUNT).")
@reader_option
@pass_cli
def load(cli: CliContext, number: str, amount: str | None, transfer: bool, reader: str | None) -> None:
    """Load AMOUNT onto card NUMBER at the issuer's credit desk (AMOUNT like 500.00).

    With --transfer, load the value of the card that NUMBER replaced instead: no cash is taken,
    processing posts it against the replaced card's value."""
    from processing.db import open_database
    from processing.issuer_loads import load_at_desk

    if transfer == (amount is not None):
        raise UserError("give an AMOUNT to load, or --transfer to load a replaced card's value (not both)")
    value = None if transfer else _amount(cli, str(amount))
    keys = _role_keys(cli, "credit")
    engine = open_database(cli.db_url)  # before the card: a load must find its database
    terminal_id = int(keys.terminal_id or 0)
    log = TerminalLog(cli.home.terminals_dir / "credit.db", terminal_id=terminal_id, merchant_id=0, log_key=None)
    sam = keys.sam()
    terminal = CreditTerminal(open_card(cli, number, reader, sam), sam, log, terminal_id=terminal_id)
    receipt, due = load_at_desk(engine, terminal, number, value)
    data = receipt_data(receipt)
    if due is not None:
        data["transfer_from"] = due.from_number
    emit(cli, data, lambda d: receipt_text(cli, d))


COMMANDS: list[click.Command] = [program_group, pos_group, load]
