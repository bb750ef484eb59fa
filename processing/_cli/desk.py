"""``smartpurse load`` and ``smartpurse cash-out``: the issuer's desk, online, recording what it does as it happens."""

from __future__ import annotations

from typing import Any

import click

from processing.card_return import require_returnable, return_at_desk
from processing.db import open_database
from processing.issuer_loads import load_at_desk, require_loadable
from purse import cardnumber
from purse._cli.pos import reader_option
from purse._cli.receipts import receipt_data, receipt_text
from purse._cli.util import AMOUNT_COMMAND, CliContext, emit, pass_cli, passphrase
from purse.cardaccess import open_card
from purse.errors import UserError
from purse.rolekeys import Role, open_role_keys
from purse.terminal import CreditTerminal
from purse.terminal_log import TerminalLog

CREDIT_LOG = "credit.db"  # the desk's own terminal log, beside the POS logs


@click.command("load", context_settings=AMOUNT_COMMAND)
@click.argument("number")
@click.argument("amount", required=False)
@click.option("--transfer", is_flag=True,
              help="Load the value of the card NUMBER replaces, once processing has transferred it (no AMOUNT).")
@click.option("--again", is_flag=True,
              help="Load even if the same load onto this card just completed before the card was pulled.")
@reader_option
@pass_cli
def load(cli: CliContext, number: str, amount: str | None, transfer: bool, again: bool, reader: str | None) -> None:
    """Load AMOUNT onto card NUMBER at the issuer's credit desk (AMOUNT like 500.00).

    With --transfer, load the value of the card that NUMBER replaced instead: no cash is taken,
    processing posts it against the replaced card's value."""
    if transfer == (amount is not None):
        raise UserError("give an AMOUNT to load, or --transfer to load a replaced card's value (not both)")
    value = None if transfer else cli.amount(str(amount))
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    engine = open_database(cli.db_url)  # before the card: a load must find its database and the card in it
    require_loadable(engine, cardnumber.validate(number))
    done = load_at_desk(engine, _desk(cli, number, reader), number, value, again=again)
    data = receipt_data(done.receipt, completed_before=done.completed_before)
    if done.transfer is not None:
        data["transfer_from"] = done.transfer.from_number
    emit(cli, data, lambda d: receipt_text(cli, d))


def _desk(cli: CliContext, number: str, reader: str | None) -> CreditTerminal:
    """The credit desk's terminal for card ``number``: its role keys, its own log, the card's reader or image."""
    keys = open_role_keys(cli.home, Role.CREDIT, passphrase("Passphrase for credit.key"))
    terminal_id = int(keys.terminal_id or 0)
    log = TerminalLog(cli.home.terminals_dir / CREDIT_LOG, terminal_id=terminal_id, merchant_id=0, log_key=None)
    return CreditTerminal(open_card(cli.home, number, reader=reader), keys.sam(), log, terminal_id=terminal_id)


@click.command("cash-out")
@click.argument("number")
@reader_option
@pass_cli
def cash_out(cli: CliContext, number: str, reader: str | None) -> None:
    """Take card NUMBER back: the card pays its whole balance out and the deposit is refunded.

    The card empties its purse and marks itself returned in one certified transaction; the desk
    then pays the holder the balance and the deposit it says. A card pulled in the middle is
    finished at the next try, never paid twice; a card the books hold as returned is refused."""
    number = cardnumber.validate(number)
    cli.home.ensure()
    engine = open_database(cli.db_url)
    require_returnable(engine, number)  # before the passphrase and the card: a refusal costs nothing
    done = return_at_desk(engine, _desk(cli, number, reader), number)
    data = receipt_data(done.receipt)
    data.update(deposit=done.deposit, paid_out=done.paid_out, completed_before=done.completed_before)

    def text(d: dict[str, Any]) -> str:
        head = "the card had paid out before it was pulled: recorded now\n" if d["completed_before"] else ""
        m = cli.money
        return (head + receipt_text(cli, {**d, "completed_before": False}) +
                f"\nPAY OUT {m(d['paid_out'])}: balance {m(d['amount'])} + deposit {m(d['deposit'])}; "
                "the card is returned, keep it")

    emit(cli, data, text)
