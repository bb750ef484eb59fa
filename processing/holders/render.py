"""A holder event as the message a person reads: e-mail (subject, plain text, HTML) and SMS.

The words are Jinja2 templates per event and language (``templates/<lang>/<kind>.txt`` and
``.sms``; the e-mail's first line is its subject), so an issuer rewords them without touching code.
What goes into them is built here from the event and the database as it is at sending time: a day's
purchases digest adds up the records of that day that processing holds by then. Card numbers are
masked to their last four digits: a full number is what harvesters of loyalty points collect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection, case, func, select

from processing.presentation import Presentation
from processing.schema.holders import EventKind
from processing.schema.processing import card_accounts, records
from purse.protocol import RecordType
from purse.records import record_details

__all__ = ["Rendered", "render", "event_context", "mask", "when_text", "date_text"]

_ENV = Environment(loader=PackageLoader("processing.holders", "templates"), undefined=StrictUndefined,
                   autoescape=select_autoescape(["html"]), keep_trailing_newline=False)
_FOOTER = {"en": ("You receive this because you agreed to hear from us about your card.", "Unsubscribe"),
           "ru": ("Вы получили это письмо, потому что согласились получать сообщения о своей карте.",
                  "Отписаться")}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str  # the e-mail's plain part
    html: str  # the e-mail's HTML part (the same paragraphs, escaped)
    sms: str


def mask(number: str) -> str:
    """A card number as messages show it: "**** 0011" (GSM-7 characters: an English SMS stays 160 long)."""
    return f"**** {number[-4:]}"


def when_text(unix: int, look: Presentation, zone: ZoneInfo) -> str:
    """A moment as holders read it, in their zone: "1 Nov 2026, 03:53" (the messages and the holder's page)."""
    from babel.dates import format_datetime

    return format_datetime(dt.datetime.fromtimestamp(unix, dt.UTC).astimezone(zone), "d MMM yyyy, HH:mm",
                           locale=look.locale)


def date_text(unix: int, look: Presentation, zone: ZoneInfo) -> str:
    """The day of a moment, in the holders' zone: "1 November 2026"."""
    from babel.dates import format_date

    return format_date(dt.datetime.fromtimestamp(unix, dt.UTC).astimezone(zone).date(), "d MMMM yyyy",
                       locale=look.locale)


def _day(day: int, look: Presentation) -> str:
    from babel.dates import format_date

    return format_date(dt.date(1970, 1, 1) + dt.timedelta(days=day), "d MMMM yyyy", locale=look.locale)


def event_context(conn: Connection, kind: EventKind, card_number: str, data: dict[str, Any], occurred_at: int,
                  name: str, look: Presentation, zone: ZoneInfo, issuer: str) -> dict[str, Any]:
    """What a message of ``kind`` says, from its event's ``data`` and (a digest) the day's records."""
    m = look.money
    ctx: dict[str, Any] = {"name": name or ("customer" if look.language == "en" else "клиент"),
                           "card": mask(card_number), "issuer": issuer}
    if "amount" in data:
        ctx["amount"] = m(data["amount"])
    if "balance" in data:
        ctx["balance"] = m(data["balance"])
    ctx["when"] = when_text(int(data.get("time") or occurred_at), look, zone)
    if kind == EventKind.PURCHASES:
        r = records.c
        is_p, is_c = r.record_type == RecordType.PURCHASE, r.record_type == RecordType.CANCEL
        purchases, spent, cancelled = conn.execute(
            select(func.sum(case((is_p, 1), else_=0)), func.sum(case((is_p, r.amount), else_=0)),
                   func.sum(case((is_c, r.amount), else_=0)))
            .where(r.card_number == card_number, r.day == data["day"])).one()
        points = sum(record_details(bytes(raw)).points_earned for raw in conn.execute(
            select(r.raw).where(r.card_number == card_number, r.day == data["day"], is_p | is_c)).scalars())
        balance = conn.execute(select(card_accounts.c.balance).where(card_accounts.c.card_number == card_number)
                               ).scalar()
        ctx.update(day=_day(data["day"], look), purchases=int(purchases or 0), spent=m(int(spent or 0)),
                   cancelled=m(int(cancelled)) if cancelled else "", points=points, balance=m(int(balance or 0)))
    elif kind == EventKind.LOW_BALANCE:
        ctx["threshold"] = m(data["threshold"])
    elif kind == EventKind.BLOCKED:
        ctx.update(by=data.get("by", "issuer"), reason=data.get("reason", ""))
    elif kind == EventKind.REPLACEMENT_READY:
        ctx["old"] = mask(data["old"])
    elif kind == EventKind.POINTS_EXPIRING:
        ctx.update(points=data["points"], program=data["program"], lapses=date_text(data["lapses_at"], look, zone))
    elif kind == EventKind.CAMPAIGN:  # the issuer's own words, in the holder's language (else any given)
        fallback = next(iter(data["text"]))
        ctx.update(subject=data["subject"].get(look.language) or data["subject"][fallback],
                   text=data["text"].get(look.language) or data["text"][fallback])
    return ctx


def render(kind: EventKind, language: str, context: dict[str, Any], unsubscribe_url: str) -> Rendered:
    """The e-mail and the SMS of one event in ``language``."""
    lines = _ENV.get_template(f"{language}/{kind}.txt").render(**context).split("\n")
    if not lines[0].startswith("Subject: "):
        raise ValueError(f"template {language}/{kind}.txt does not start with a Subject: line")
    subject, body = lines[0][len("Subject: "):], "\n".join(lines[1:]).strip()
    footer, unsubscribe = _FOOTER[language]
    text = f"{body}\n\n--\n{footer}\n{unsubscribe}: {unsubscribe_url}\n"
    html = _ENV.get_template("base.html").render(
        lang=language, subject=subject, issuer=context["issuer"], paragraphs=[p for p in body.split("\n\n") if p],
        footer=footer, unsubscribe_url=unsubscribe_url, unsubscribe_text=unsubscribe)
    sms = " ".join(_ENV.get_template(f"{language}/{kind}.sms").render(**context).split())
    return Rendered(subject, text, html, sms)
