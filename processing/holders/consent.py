"""Consent per channel: a history of grants and withdrawals, the newest row being what holds.

Nothing is sent on a channel without a grant there (``processing.holders.delivery`` asks
``consented`` at the moment it sends, so a withdrawal between the event and the message counts).
A row is written only when it changes what holds, so re-reading the same holders file or clicking an
unsubscribe link twice leaves one record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from processing.schema.holders import Channel, ConsentSource, consents
from processing.schema.registry import holders

__all__ = ["record_consent", "consented", "consent_state", "consent_history", "record_file_consents"]


def consent_state(conn: Connection, holder_ids: Iterable[int]) -> dict[tuple[int, str], bool]:
    """What holds now for each (holder, channel) that has any record."""
    ids = list(set(holder_ids))
    if not ids:
        return {}
    c = consents.c
    newest = (select(func.max(c.id)).where(c.holder_id.in_(ids)).group_by(c.holder_id, c.channel)).scalar_subquery()
    return {(int(h), str(ch)): bool(g) for h, ch, g in conn.execute(
        select(c.holder_id, c.channel, c.granted).where(c.id.in_(newest)))}


def consented(conn: Connection, holder_id: int, channel: Channel) -> bool:
    return consent_state(conn, [holder_id]).get((holder_id, channel), False)


def record_consent(conn: Connection, holder_id: int, channel: Channel, granted: bool, source: ConsentSource,
                   at: dt.datetime, note: str | None = None) -> bool:
    """Record a grant or a withdrawal; False (and nothing written) when it is what holds already."""
    if consent_state(conn, [holder_id]).get((holder_id, channel)) is granted:
        return False
    conn.execute(insert(consents).values(holder_id=holder_id, channel=channel, granted=int(granted), at=at,
                                         source=source, note=(note or None) and note[:200]))
    return True


def consent_history(conn: Connection, holder_id: int) -> list[dict[str, Any]]:
    c = consents.c
    return [{"channel": ch, "granted": bool(g), "at": at, "source": src, "note": note}
            for ch, g, at, src, note in conn.execute(
                select(c.channel, c.granted, c.at, c.source, c.note).where(c.holder_id == holder_id)
                .order_by(c.id))]


def record_file_consents(engine: Engine, answers: Iterable[tuple[str, str, bool]], source_note: str) -> int:
    """The consent columns of a holders file: (e-mail, channel, granted) for holders already registered
    (``cards issue --from`` registers them first); what changed is recorded, source ``csv``. How many rows."""
    answers = list(answers)
    if not answers:
        return 0
    h = holders.c
    at = dt.datetime.now(dt.UTC)
    written = 0
    with engine.begin() as conn:
        ids = dict(conn.execute(select(h.email, h.id).where(h.email.in_({e for e, _, _ in answers}))).all())
        for email, channel, granted in answers:
            if email in ids:
                written += record_consent(conn, int(ids[email]), Channel(channel), granted, ConsentSource.CSV, at,
                                          source_note)
    return written
