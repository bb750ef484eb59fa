"""Points about to lapse: the event the clock makes rather than a batch.

A program's points lapse after ``expiry_days`` without a visit (purse.loyalty.rules.lapse). The card's
newest record of the program is its last visit, so its points lapse ``expiry_days`` after that record's
time. ``expiring_points`` writes one ``points_expiring`` event for every holder's card whose points lapse
within ``warning_days``, keyed by the card, the program and that last visit: a visit since moves the
date and makes a new event, while the same wait tells once.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from processing.schema.holders import EventKind, insert_event
from processing.schema.processing import card_points, programs, records
from processing.schema.registry import cards
from purse.records import record_details

__all__ = ["expiring_points"]

DAY = 86_400


def expiring_points(conn: Connection, now: int, warning_days: int) -> int:
    """Events for points that lapse within ``warning_days`` of ``now``; how many were new."""
    if warning_days <= 0:
        return 0
    p, cp, r, c = programs.c, card_points.c, records.c, cards.c
    new = 0
    for program_id, name, expiry_days in conn.execute(select(p.program_id, p.name, p.expiry_days)
                                                      .where(p.expiry_days > 0)):
        rows = conn.execute(
            select(cp.card_number, cp.points, r.raw, c.holder_id)
            .join(records, (r.card_number == cp.card_number) & (r.counter == cp.counter))
            .join(cards, c.number == cp.card_number)
            .where(cp.program_id == program_id, cp.points > 0, c.holder_id.is_not(None))).all()
        for number, points, raw, holder_id in rows:
            last_visit = record_details(bytes(raw)).time
            lapses_at = last_visit + int(expiry_days) * DAY
            if lapses_at - warning_days * DAY <= now < lapses_at:
                new += insert_event(conn, f"points_expiring:{number}:{program_id}:{last_visit}",
                                    EventKind.POINTS_EXPIRING, number, int(holder_id), now,
                                    {"points": int(points), "program": name, "lapses_at": lapses_at})
    return new
