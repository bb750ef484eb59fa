"""What a holder sees of their cards: balance and points as of the last batch, standing per program,
prizes won, deposits, requests made; and their own contact and consent.

Every lookup of a card goes through ``holder_card``, which answers None for a card that is not one of
the session's holders': the page then says "not found", as for a card that does not exist, so a
session can never read another holder's card by changing a number in an address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from processing.card_return import deposit_owed
from processing.holders.consent import consent_state
from processing.holders.figures import ProgramStanding, card_balance, program_standings
from processing.schema.holders import CHANNELS, holder_requests
from processing.schema.processing import programs, records
from processing.schema.registry import cards, holders, merchants
from purse.protocol import RecordType
from purse.records import record_details

__all__ = ["CardView", "PrizeWon", "HolderView", "holder_cards", "holder_card", "prizes_won", "holder_view"]


@dataclass(frozen=True)
class CardView:
    number: str
    state: str  # the registry's: issued, blocked, replaced, returned
    balance: int | None  # None: no record of it reached processing yet
    standings: list[ProgramStanding]
    deposit: int  # what is refunded when it is returned
    requests: dict[str, int] = field(default_factory=dict)  # kind -> requested at (unix seconds)
    replaced_by: str | None = None
    holder_id: int | None = None

    @property
    def masked(self) -> str:
        return f"•••• {self.number[-4:]}"


@dataclass(frozen=True)
class PrizeWon:
    time: int
    program: str
    count: int
    text: str
    merchant: str


@dataclass(frozen=True)
class HolderView:
    name: str
    email: str | None
    phone: str | None
    consent: dict[str, bool]


def _card_view(conn: Connection, row: Any) -> CardView:
    number = str(row.number)
    q = holder_requests.c
    requests = {str(k): int(at) for k, at in conn.execute(select(q.kind, q.requested_at)
                                                            .where(q.card_number == number))}
    return CardView(number, str(row.state), card_balance(conn, number), program_standings(conn, number),
                    deposit_owed(conn, number), requests, row.replaced_by, row.holder_id)


def holder_cards(conn: Connection, holder_ids: list[int]) -> list[CardView]:
    """The holders' cards, newest first."""
    if not holder_ids:
        return []
    c = cards.c
    rows = conn.execute(select(c.number, c.state, c.replaced_by, c.holder_id).where(c.holder_id.in_(holder_ids))
                        .order_by(c.issued_at.desc(), c.number)).all()
    return [_card_view(conn, row) for row in rows]


def holder_card(conn: Connection, holder_ids: list[int], number: str) -> CardView | None:
    """Card ``number`` when it is one of the holders'; None otherwise (unknown and not theirs alike)."""
    if not holder_ids or not (number.isascii() and number.isdigit() and len(number) <= 19):
        return None
    c = cards.c
    row = conn.execute(select(c.number, c.state, c.replaced_by, c.holder_id)
                       .where(c.number == number, c.holder_id.in_(holder_ids))).first()
    return None if row is None else _card_view(conn, row)


def prizes_won(conn: Connection, number: str) -> list[PrizeWon]:
    """The purchases of the card that won a prize, newest first, with the program's prize text."""
    r, p, m = records.c, programs.c, merchants.c
    names = {int(i): (n, t or "") for i, n, t in conn.execute(select(p.program_id, p.name, p.prize_text))}
    shops = {int(i): n for i, n in conn.execute(select(m.merchant_id, m.name))}
    won = []
    for raw, merchant_id in conn.execute(select(r.raw, r.merchant_id).where(
            r.card_number == number, r.record_type == RecordType.PURCHASE).order_by(r.counter.desc())):
        d = record_details(bytes(raw))
        if d.prizes:
            name, text = names.get(d.program_id, (f"program {d.program_id}", ""))
            won.append(PrizeWon(d.time, name, d.prizes, text, shops.get(int(merchant_id), str(merchant_id))))
    return won


def holder_view(conn: Connection, holder_ids: list[int]) -> HolderView | None:
    """The first holder's contact and consent (a phone login with several holders shows the first)."""
    if not holder_ids:
        return None
    h = holders.c
    row = conn.execute(select(h.id, h.name, h.email, h.phone).where(h.id == holder_ids[0])).first()
    if row is None:
        return None
    state = consent_state(conn, [int(row.id)])
    return HolderView(row.name, row.email, row.phone, {ch: state.get((int(row.id), ch), False) for ch in CHANNELS})
