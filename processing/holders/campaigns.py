"""Campaigns ("рассылки"): one message to a segment of holders, each channel respecting its consent.

A segment is chosen from what processing knows: the loyalty program and tier, the points on the card,
the last visit (idle for N days, or active within N days), a merchant visited. ``estimate`` is the dry
run the source document asks for: per channel, how many holders it reaches, how many it cannot (no
consent, no address), how many SMS parts that costs. ``launch`` writes one ``campaign`` event per
holder to the outbox, keyed by the campaign's name, so launching it twice reaches nobody twice; the
delivery worker sends it like every other event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from processing.holders.consent import consent_state
from processing.holders.sms import sms_length
from processing.schema.holders import Channel, EventKind, insert_event
from processing.schema.processing import card_accounts, card_points, records
from processing.schema.registry import cards, holders
from purse.records import record_details

__all__ = ["Segment", "Campaign", "segment_holders", "estimate", "launch"]

DAY = 86_400


@dataclass(frozen=True)
class Segment:
    program: int | None = None  # holds a card in this loyalty program
    tier: int | None = None  # ... at this tier (the card's newest record of the program says)
    min_points: int | None = None  # ... with at least these points
    idle_days: int | None = None  # no visit for at least this many days
    active_days: int | None = None  # a visit within this many days
    merchant: int | None = None  # bought at this merchant's terminals

    def describe(self) -> str:
        parts = [f"{name.replace('_', ' ')} {value}" for name, value in self.__dict__.items() if value is not None]
        return ", ".join(parts) or "every holder"


@dataclass(frozen=True)
class Campaign:
    name: str
    subject: dict[str, str]  # per language ("en", "ru"): the e-mail's subject
    text: dict[str, str]  # per language: the message

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 60 or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError("a campaign's name is 1-60 letters, digits, - or _ (it keys its messages)")


def segment_holders(conn: Connection, segment: Segment, now: int) -> dict[int, str]:
    """The holders in the segment, each with one card (the lowest number among those that match)."""
    c = cards.c
    query = select(c.holder_id, func.min(c.number)).where(c.holder_id.is_not(None), c.state == "issued")
    if segment.idle_days is not None or segment.active_days is not None:
        a = card_accounts.c
        query = query.join(card_accounts, a.card_number == c.number)
        if segment.idle_days is not None:
            query = query.where(a.chain_time <= now - segment.idle_days * DAY)
        if segment.active_days is not None:
            query = query.where(a.chain_time >= now - segment.active_days * DAY)
    if segment.program is not None or segment.min_points is not None or segment.tier is not None:
        p = card_points.c
        query = query.join(card_points, p.card_number == c.number)
        if segment.program is not None:
            query = query.where(p.program_id == segment.program)
        if segment.min_points is not None:
            query = query.where(p.points >= segment.min_points)
    if segment.merchant is not None:
        r = records.c
        query = query.where(select(r.card_number).where(r.card_number == c.number, r.merchant_id == segment.merchant)
                            .exists())
    found = {int(h): str(n) for h, n in conn.execute(query.group_by(c.holder_id))}
    if segment.tier is not None:
        found = {h: n for h, n in found.items() if _tier(conn, n, segment.program) == segment.tier}
    return found


def _tier(conn: Connection, number: str, program: int | None) -> int | None:
    """The tier the card's newest record of ``program`` (any program if None) carries."""
    p, r = card_points.c, records.c
    query = select(r.raw).join(card_points, (p.card_number == r.card_number) & (p.counter == r.counter)) \
        .where(r.card_number == number)
    if program is not None:
        query = query.where(p.program_id == program)
    raw = conn.execute(query.order_by(r.counter.desc()).limit(1)).scalar()
    return record_details(bytes(raw)).tier if raw is not None else None


def estimate(conn: Connection, campaign: Campaign, segment: Segment, now: int, sms_part_price: int,
             default_language: str) -> dict[str, Any]:
    """The dry run: per channel, the holders reached and not (no consent, no address), the SMS parts, the cost."""
    chosen = segment_holders(conn, segment, now)
    h = holders.c
    contacts = {int(i): (e, p, lang or default_language) for i, e, p, lang in conn.execute(
        select(h.id, h.email, h.phone, h.language).where(h.id.in_(list(chosen))))} if chosen else {}
    consent = consent_state(conn, chosen)
    parts_per_language = {lang: sms_length(f"{text}").parts for lang, text in campaign.text.items()}
    rows = []
    for channel in Channel:
        reached = no_consent = no_address = parts = 0
        for holder_id, (email, phone, language) in contacts.items():
            if not (email if channel == Channel.EMAIL else phone):
                no_address += 1
            elif not consent.get((holder_id, channel), False):
                no_consent += 1
            else:
                reached += 1
                if channel == Channel.SMS:
                    parts += parts_per_language.get(language, max(parts_per_language.values()))
        rows.append({"channel": str(channel), "reached": reached, "no_consent": no_consent, "no_address": no_address,
                     "sms_parts": parts if channel == Channel.SMS else 0,
                     "cost": parts * sms_part_price if channel == Channel.SMS else 0})
    return {"campaign": campaign.name, "segment": segment.describe(), "holders": len(chosen), "channels": rows,
            "languages": {lang: sum(1 for *_, x in contacts.values() if x == lang) for lang in campaign.text}}


def launch(conn: Connection, campaign: Campaign, segment: Segment, now: int) -> int:
    """One campaign event per holder of the segment; how many are new (a second launch adds none)."""
    new = 0
    data = {"campaign": campaign.name, "subject": campaign.subject, "text": campaign.text}
    for holder_id, number in sorted(segment_holders(conn, segment, now).items()):
        new += insert_event(conn, f"campaign:{campaign.name}:{holder_id}", EventKind.CAMPAIGN, number, holder_id,
                            now, data)
    return new
