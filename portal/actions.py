"""What a holder can do on their page: report a card lost or stolen, ask for a payout at its return,
change their consent. Each is safe to repeat: a second click finds the first.

A card reported lost is blocked in the registry at once, by the one function the issuer's staff use
(``personalization.registry.set_blocked``), so the next ``smartpurse hotlist export`` carries it to every
terminal; a replacement is requested, which staff issue with ``smartpurse cards replace`` (it needs the
issuer's keys, which a web server must never hold). What will move to the new card is the value as of
the last processed batch: anything spent on the lost card before the hotlist reached the till is gone.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from personalization.registry import set_blocked
from portal.overview import CardView
from processing.holders.consent import record_consent
from processing.schema.holders import Channel, ConsentSource, RequestKind, request_once
from processing.schema.registry import CardStatus
from purse.errors import UserError

__all__ = ["report_lost", "ask_payout", "change_consent", "LOST_REASONS"]

LOST_REASONS = ("lost", "stolen")
SOURCE = "self-service"


def report_lost(engine: Engine, card: CardView, why: str, now: int) -> bool:
    """Block ``card`` and request its replacement; whether the request is new."""
    if why not in LOST_REASONS:
        raise UserError(f"a card is reported {' or '.join(LOST_REASONS)}, not {why!r}")
    if card.state not in (CardStatus.ISSUED, CardStatus.BLOCKED):
        raise UserError(f"this card is {card.state}: there is nothing to block")
    set_blocked(engine, card.number, f"{why} (reported by the holder, self-service)",
                dt.datetime.fromtimestamp(now, dt.UTC), by="holder")
    with engine.begin() as conn:
        return request_once(conn, card.number, RequestKind.REPLACEMENT, card.holder_id, now, SOURCE)


def ask_payout(engine: Engine, card: CardView, now: int) -> bool:
    """Ask for the balance and the deposit to be paid out when the card is brought back to the desk."""
    if card.state != CardStatus.ISSUED:
        raise UserError(f"this card is {card.state}: it cannot be returned for a payout")
    with engine.begin() as conn:
        return request_once(conn, card.number, RequestKind.PAYOUT, card.holder_id, now, SOURCE)


def change_consent(engine: Engine, holder_id: int, wanted: dict[str, bool], now: int) -> list[str]:
    """Record the holder's consent per channel as they set it; the channels that changed."""
    changed: list[str] = []
    with engine.begin() as conn:
        for channel in Channel:
            if channel.value in wanted and record_consent(conn, holder_id, channel, wanted[channel.value],
                                                          ConsentSource.SELF_SERVICE,
                                                          dt.datetime.fromtimestamp(now, dt.UTC), "holder's page"):
                changed.append(channel.value)
    return changed
