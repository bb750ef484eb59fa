"""``smartpurse merchants add|edit|list|show|payouts``: the merchants as counterparties, and their payments.

Details are checked whole before anything is stored (``personalization.counterparty``); the payout
files come from processing's settlement statements (``processing.payouts``), so the command is composed
here, at the top of the application layer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import click

from personalization import registry
from personalization._cli.common import engine
from personalization.counterparty import SCHEDULES, MerchantDetails, check_bank, check_inn
from processing._cli.backoffice import DAY
from processing.payouts import Party, client_bank_exchange, pain001, payments_for
from processing.presentation import Presentation
from purse._cli.util import CliContext, emit, pass_cli, table
from purse.errors import UserError
from purse.files import write_atomic

_DETAILS = (
    ("legal_name", "--legal-name", "Legal name, as the bank knows it (e.g. ООО «Ромашка»)."),
    ("tax_number", "--inn", "Tax number (INN, checked: 10 or 12 digits)."),
    ("bank_name", "--bank", "The bank's name."),
    ("bank_bic", "--bic", "The bank's BIC: 9 digits for a Russian account, a SWIFT BIC with an IBAN."),
    ("bank_account", "--account", "The 20-digit Russian settlement account (checked against the BIC)."),
    ("iban", "--iban", "An IBAN instead, for a bank outside Russia (pain.001)."),
)


def _detail_options(command: Any) -> Any:
    for field, flag, text in reversed(_DETAILS):
        command = click.option(flag, field, help=text)(command)
    command = click.option("--schedule", type=click.Choice(SCHEDULES), help="Payout schedule [monthly].")(command)
    command = click.option("--fee-bps", type=click.IntRange(0, 10_000),
                           help="Settlement fee in basis points (150 = 1.50 %) [merchants config].")(command)
    return click.option("--name", help="The merchant's name as people know it.")(command)


@click.group("merchants")
def merchants() -> None:
    """Merchants as counterparties: legal name, tax number, bank details; the payout files a bank imports."""


def _as_dict(m: MerchantDetails) -> dict[str, Any]:
    return dataclasses.asdict(m)


def _text(m: dict[str, Any]) -> str:
    rows = [(k.replace("_", " "), str(v)) for k, v in m.items() if v is not None and k != "merchant_id"]
    return table(("", "value"), rows, title=f"merchant {m['merchant_id']}", show_header=False)


@merchants.command("add")
@click.argument("merchant_id", type=int)
@_detail_options
@pass_cli
def add(cli: CliContext, merchant_id: int, name: str | None, fee_bps: int | None, schedule: str | None,
        **details: str | None) -> None:
    """Add merchant MERCHANT_ID with its details (terminals register their merchant too: edit it then)."""
    if not name:
        raise click.UsageError("a new merchant needs --name")
    fee = fee_bps if fee_bps is not None else cli.home.settings.merchants.default_fee_bps
    saved = registry.save_merchant(engine(cli), MerchantDetails(merchant_id, name, fee, **details,
                                                                payout_schedule=schedule or "monthly"), new=True)
    emit(cli, _as_dict(saved), _text)


@merchants.command("edit")
@click.argument("merchant_id", type=int)
@_detail_options
@pass_cli
def edit(cli: CliContext, merchant_id: int, name: str | None, fee_bps: int | None, schedule: str | None,
         **details: str | None) -> None:
    """Change merchant MERCHANT_ID's details (only the options given; '' clears a detail)."""
    db = engine(cli)
    current = registry.merchant_details(db, merchant_id)
    changes: dict[str, Any] = {k: (v or None) for k, v in details.items() if v is not None}
    if name is not None:
        changes["name"] = name
    if fee_bps is not None:
        changes["fee_bps"] = fee_bps
    if schedule is not None:
        changes["payout_schedule"] = schedule
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    saved = registry.save_merchant(db, dataclasses.replace(current, **changes), new=False)
    emit(cli, _as_dict(saved), _text)


@merchants.command("list")
@pass_cli
def list_merchants(cli: CliContext) -> None:
    """Every merchant, and whether a payout to it can be written."""
    rows = [{**_as_dict(m), "payable": m.payable} for m in registry.all_merchants(engine(cli))]
    emit(cli, rows, lambda rs: table(("no", "name", "legal name", "INN", "fee bp", "payout", "bank details"),
                                     [(str(r["merchant_id"]), r["name"], r["legal_name"] or "", r["tax_number"] or "",
                                       str(r["fee_bps"]), r["payout_schedule"], "yes" if r["payable"] else "missing")
                                      for r in rs], title="merchants") if rs else "no merchants yet")


@merchants.command("show")
@click.argument("merchant_id", type=int)
@pass_cli
def show(cli: CliContext, merchant_id: int) -> None:
    """One merchant's details."""
    emit(cli, _as_dict(registry.merchant_details(engine(cli), merchant_id)), _text)


def _payer(cli: CliContext) -> Party:
    """The issuer as payer, from [issuer] in smartpurse.toml, checked."""
    issuer = cli.home.issuer
    if not issuer.legal_name:
        raise UserError("[issuer] legal_name is not set in smartpurse.toml: the payer of a payout needs it")
    inn = check_inn(issuer.tax_number) if issuer.tax_number else None
    bic, account, iban = check_bank(issuer.bank_bic or None, issuer.bank_account or None, issuer.iban or None)
    return Party(issuer.legal_name, inn, issuer.bank_name or None, bic, account, iban)


@merchants.command("payouts")
@click.option("--until", "until", type=DAY, required=True,
              help="The statements `smartpurse settle --until DAY` made (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(("1c", "pain.001")), required=True,
              help="1c: ClientBankExchange for Russian bank clients; pain.001: ISO 20022 for IBANs.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file to write.")
@pass_cli
def payouts(cli: CliContext, until: dt.datetime, fmt: str, out: Path) -> None:
    """The payment file paying each merchant its net of the statements settled until DAY."""
    if out.exists():
        raise UserError(f"{out} exists: a payout file is never overwritten (choose another name)")
    payer = _payer(cli)
    issuer = cli.home.issuer
    look = Presentation.for_issuer(issuer)
    with engine(cli).connect() as conn:
        payments = payments_for(conn, until.date(), issuer.currency_exponent)
    if not payments:
        raise UserError(f"no statement settled until {until.date()} with money to pay (run `smartpurse settle`)")
    now = dt.datetime.now(dt.UTC)
    if fmt == "1c":
        data = client_bank_exchange(payments, payer, now, issuer.currency_exponent)
    else:
        data = pain001(payments, payer, look.currency_code)
    write_atomic(out, data, overwrite=False)
    total = sum(p.amount for p in payments)
    emit(cli, {"path": str(out), "format": fmt, "payments": len(payments), "total": total},
         lambda d: f"{d['payments']} payments, {look.money(d['total'])} in all -> {d['path']} ({d['format']})")
