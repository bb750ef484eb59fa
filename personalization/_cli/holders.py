"""``smartpurse holders``: card holders as contacts, and the record of their consent per channel."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from sqlalchemy import select

from personalization.holders_csv import normalize_phone
from processing.db import open_database
from processing.holders.consent import consent_history, consent_state, record_consent
from processing.schema.holders import Channel, ConsentSource
from processing.schema.registry import cards, holders
from purse._cli.util import CliContext, emit, pass_cli, table
from purse.errors import UserError


def _find_holder(conn: Any, card: str | None, email: str | None, phone: str | None, region: str) -> Any:
    """The holder named by one of card number, e-mail or phone, or a one-line error."""
    if sum(x is not None for x in (card, email, phone)) != 1:
        raise click.UsageError("name the holder by one of --card, --email or --phone")
    h = holders.c
    query = select_holder()
    if card is not None:
        query = query.join(cards, cards.c.holder_id == h.id).where(cards.c.number == card)
    elif email is not None:
        query = query.where(h.email == email.strip().lower())
    else:
        normalized = normalize_phone(str(phone), region)
        if normalized is None:
            raise UserError(f"not a phone number: {phone!r}")
        query = query.where(h.phone == normalized)
    row = conn.execute(query).first()
    if row is None:
        raise UserError("no such holder: " + (f"card {card} has no holder" if card else "nobody registered with "
                                              + (f"e-mail {email}" if email else f"phone {phone}")))
    return row


def select_holder() -> Any:
    h = holders.c
    return select(h.id, h.name, h.email, h.phone, h.language)


def _holder_options(f: Any) -> Any:
    for option in (click.option("--phone", help="The holder's phone, as people write it."),
                   click.option("--email", help="The holder's e-mail."),
                   click.option("--card", help="One of the holder's card numbers.")):
        f = option(f)
    return f


@click.group("holders")
def holders_group() -> None:
    """Card holders as contacts: their consent per channel, and its record."""


@holders_group.command("show")
@_holder_options
@pass_cli
def show(cli: CliContext, card: str | None, email: str | None, phone: str | None) -> None:
    """A holder: contact, cards, consent per channel now, and the record of every change."""
    engine = open_database(cli.db_url)
    with engine.connect() as conn:
        h = _find_holder(conn, card, email, phone, cli.home.issuer.phone_region)
        numbers = list(conn.execute(select(cards.c.number).where(cards.c.holder_id == h.id)
                                    .order_by(cards.c.number)).scalars())
        now = consent_state(conn, [h.id])
        history = consent_history(conn, h.id)
    data = {"holder_id": h.id, "name": h.name, "email": h.email, "phone": h.phone,
            "language": h.language or cli.home.issuer.locale, "cards": numbers,
            "consent": {c.value: now.get((h.id, c.value), False) for c in Channel}, "history": history}

    def text(d: dict[str, Any]) -> str:
        head = (f"{d['name']} <{d['email']}> {d['phone']} ({d['language']}); cards {', '.join(d['cards']) or '-'}\n"
                + "consent: " + ", ".join(f"{c} {'yes' if v else 'no'}" for c, v in d["consent"].items()))
        rows = [(f"{r['at']:%Y-%m-%d %H:%M}", r["channel"], "granted" if r["granted"] else "withdrawn", r["source"],
                 r["note"] or "") for r in d["history"]]
        return head + ("\n" + table(("at", "channel", "", "source", "note"), rows, title="record of consent")
                       if rows else "\nno consent recorded: nothing is sent to this holder")

    emit(cli, data, text)


@holders_group.command("consent")
@_holder_options
@click.option("--channel", type=click.Choice([c.value for c in Channel]), required=True,
              help="The channel the consent is for.")
@click.option("--grant/--withdraw", required=True, help="The holder agrees, or no longer agrees.")
@click.option("--note", help="Who took it and how (kept with the record).")
@pass_cli
def consent(cli: CliContext, card: str | None, email: str | None, phone: str | None, channel: str, grant: bool,
            note: str | None) -> None:
    """Record a holder's consent on a channel, given or withdrawn at the desk."""
    engine = open_database(cli.db_url)
    with engine.begin() as conn:
        h = _find_holder(conn, card, email, phone, cli.home.issuer.phone_region)
        changed = record_consent(conn, int(h.id), Channel(channel), grant, ConsentSource.DESK,
                                 dt.datetime.now(dt.UTC), note)
    what = "granted" if grant else "withdrawn"
    emit(cli, {"holder_id": h.id, "channel": channel, "granted": grant, "changed": changed},
         f"{h.name}: {channel} consent {what}" + ("" if changed else " already (nothing recorded)"))
