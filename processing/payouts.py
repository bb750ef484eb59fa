"""Payment files a bank imports, one payment per merchant settlement statement.

* **1C ClientBankExchange** (version 1.03): the text format Russian bank clients import payment
  orders from ("1CClientBankExchange", ``СекцияДокумент=Платежное поручение`` ... ``КонецДокумента``),
  Windows-1251, CRLF, amounts in roubles with a dot. ``read_client_bank_exchange`` parses it back, so a
  file can be checked before it is sent.
* **ISO 20022 pain.001** (customer credit transfer initiation, 001.001.03) for merchants with an IBAN,
  built and validated against its XSD by the well-kept ``sepaxml``.

The statements come from ``smartpurse settle`` (``settlements``): a statement's number is the payment
order's number, so a file written again for the same day is the same payments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, select

from processing.schema.processing import settlements
from processing.schema.registry import merchants
from purse.errors import UserError
from purse.money import format_amount

__all__ = ["Party", "Payment", "payments_for", "client_bank_exchange", "read_client_bank_exchange", "pain001"]


@dataclass(frozen=True)
class Party:
    """Who pays or is paid: names, tax number and bank details (a Russian account, or an IBAN)."""

    legal_name: str
    tax_number: str | None
    bank_name: str | None
    bank_bic: str | None
    bank_account: str | None
    iban: str | None = None


@dataclass(frozen=True)
class Payment:
    number: int  # the settlement statement's number
    day: dt.date
    amount: int  # minor units
    payee: Party
    purpose: str


def payments_for(conn: Connection, until: dt.date, exponent: int = 2) -> list[Payment]:
    """One payment per statement settled ``until`` this day with money to pay; ``UserError`` when a merchant
    lacks what a bank needs (a legal name, bank details)."""
    s, m = settlements.c, merchants.c
    out = []
    for sid, merchant_id, net, gross, fee, name, legal, inn, bank, bic, account, iban in conn.execute(
            select(s.id, s.merchant_id, s.net, s.gross, s.fee, m.name, m.legal_name, m.tax_number, m.bank_name,
                   m.bank_bic, m.bank_account, m.iban)
            .select_from(settlements.join(merchants, merchants.c.merchant_id == s.merchant_id))
            .where(s.until == until, s.net > 0).order_by(s.id)):
        if not legal or not (account or iban):
            raise UserError(f"merchant {merchant_id} ({name}) has no legal name or bank details: add them with "
                            f"`smartpurse merchants edit {merchant_id}` before its payout is written")
        period_end = until - dt.timedelta(days=1)
        purpose = (f"Возмещение по операциям с картами по {period_end:%d.%m.%Y}, отчёт № {sid}: "
                   f"продажи {format_amount(int(gross), exponent)}, "
                   f"комиссия {format_amount(int(fee), exponent)}. Без НДС")
        out.append(Payment(int(sid), until, int(net), Party(legal, inn, bank, bic, account, iban), purpose))
    return out


# -- 1C ClientBankExchange ------------------------------------------------------------------------
def _party_lines(role: str, party: Party) -> list[str]:
    return [f"{role}Счет={party.bank_account or ''}",
            f"{role}={'ИНН ' + party.tax_number + ' ' if party.tax_number else ''}{party.legal_name}",
            f"{role}ИНН={party.tax_number or ''}", f"{role}1={party.legal_name}",
            f"{role}РасчСчет={party.bank_account or ''}", f"{role}Банк1={party.bank_name or ''}",
            f"{role}БИК={party.bank_bic or ''}"]


def client_bank_exchange(payments: list[Payment], payer: Party, created: dt.datetime, exponent: int = 2) -> bytes:
    """The payment orders as a 1C ClientBankExchange file (Windows-1251, CRLF)."""
    if not payer.bank_account:
        raise UserError("the issuer has no Russian bank account ([issuer] bank_account) to pay from")
    days = [p.day for p in payments] or [created.date()]
    lines = ["1CClientBankExchange", "ВерсияФормата=1.03", "Кодировка=Windows", "Отправитель=smartpurse",
             "Получатель=", f"ДатаСоздания={created:%d.%m.%Y}", f"ВремяСоздания={created:%H:%M:%S}",
             f"ДатаНачала={min(days):%d.%m.%Y}", f"ДатаКонца={max(days):%d.%m.%Y}", f"РасчСчет={payer.bank_account}",
             "Документ=Платежное поручение"]
    for p in payments:
        lines += ["СекцияДокумент=Платежное поручение", f"Номер={p.number}", f"Дата={p.day:%d.%m.%Y}",
                  f"Сумма={format_amount(p.amount, exponent)}", *_party_lines("Плательщик", payer),
                  *_party_lines("Получатель", p.payee), "ВидОплаты=01", "Очередность=5",
                  f"НазначениеПлатежа={p.purpose}", "КонецДокумента"]
    lines.append("КонецФайла")
    try:
        return ("\r\n".join(lines) + "\r\n").encode("cp1251")
    except UnicodeEncodeError as e:
        raise UserError(f"a name holds a character Windows-1251 cannot write ({e.object[e.start:e.end]!r})") from None


def read_client_bank_exchange(data: bytes, exponent: int = 2) -> list[Payment]:
    """The payment orders of a ClientBankExchange file (what a bank client would import)."""
    text = data.decode("cp1251")
    if not text.startswith("1CClientBankExchange"):
        raise UserError("not a 1C ClientBankExchange file")
    out: list[Payment] = []
    doc: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("СекцияДокумент="):
            doc = {}
        elif line == "КонецДокумента" and doc is not None:
            payee = Party(doc["Получатель1"], doc["ПолучательИНН"] or None, doc["ПолучательБанк1"] or None,
                          doc["ПолучательБИК"] or None, doc["ПолучательРасчСчет"] or None)
            amount = int(Decimal(doc["Сумма"]).scaleb(exponent))
            out.append(Payment(int(doc["Номер"]), dt.datetime.strptime(doc["Дата"], "%d.%m.%Y").date(), amount,
                               payee, doc["НазначениеПлатежа"]))
            doc = None
        elif doc is not None and "=" in line:
            key, _, value = line.partition("=")
            doc[key] = value
    return out


# -- ISO 20022 pain.001 ------------------------------------------------------------------------------
def pain001(payments: list[Payment], payer: Party, currency: str) -> bytes:
    """The payments as a pain.001.001.03 credit transfer initiation, validated against its XSD by sepaxml."""
    from sepaxml import SepaTransfer

    if not payer.iban or not payer.bank_bic:
        raise UserError("the issuer has no IBAN and SWIFT BIC ([issuer] iban, bank_bic) to pay from")
    missing = [p.payee.legal_name for p in payments if not p.payee.iban]
    if missing:
        raise UserError(f"pain.001 pays IBANs only: {', '.join(missing)} have a Russian account (use --format 1c)")
    transfer = SepaTransfer({"name": payer.legal_name[:70], "IBAN": payer.iban, "BIC": payer.bank_bic,
                             "batch": True, "currency": currency}, clean=True)
    for p in payments:
        transfer.add_payment({"name": p.payee.legal_name[:70], "IBAN": p.payee.iban, "BIC": p.payee.bank_bic,
                              "amount": p.amount, "execution_date": p.day, "description": p.purpose[:140],
                              "endtoend_id": f"SMARTPURSE{p.number}"})
    xml: bytes = transfer.export(validate=True, pretty_print=True)  # raises when the XSD refuses it
    return xml
