"""What the issuer tells card holders: their consent per channel, the events processing learns, the
messages the delivery worker sends (docs/holders.md).

* ``consents`` is a history, never updated in place: the holder's consent on a channel is its newest
  row. Each row says when, and from where (the CSV, the desk, the self-service page, an unsubscribe
  link, a STOP reply, a command), so the record of consent is kept as long as the holder is.
* ``holder_events`` is the outbox. Processing writes an event in the same transaction as the posting
  that learned it, under a key that names it (``load:<card>:<counter>``), unique: a re-imported batch
  creates no event twice.
* ``messages`` are what the worker made of an event, one per channel, each ending in a final state
  (sent, failed, suppressed, interrupted) with its reason. ``(event_id, channel)`` is unique, so two
  workers never send one event twice on one channel.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from processing.schema import RegistryCardNumber, insert_once, metadata


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class ConsentSource(StrEnum):
    CSV = "csv"  # a column of the holders file ``cards issue --from`` read
    DESK = "desk"  # the issuer's staff, on the holder's word (``smartpurse holders consent``)
    SELF_SERVICE = "self-service"  # the holder's own page
    UNSUBSCRIBE_LINK = "unsubscribe-link"  # the link (and List-Unsubscribe header) in an e-mail
    STOP_REPLY = "stop-reply"  # a STOP answered to an SMS, through the gateway's inbound callback


class MessageState(StrEnum):
    QUEUED = "queued"  # waiting for its time (quiet hours, a digest's day, a retry's backoff)
    SENDING = "sending"  # claimed by a worker, handed to the channel
    SENT = "sent"
    FAILED = "failed"  # the channel refused for good, or retries ran out: ``reason`` says why
    SUPPRESSED = "suppressed"  # not sent on purpose: no consent, no address, the daily cap
    INTERRUPTED = "interrupted"  # a worker died while handing it over: maybe sent, so never sent again


CHANNELS = tuple(c.value for c in Channel)
CONSENT_SOURCES = tuple(s.value for s in ConsentSource)
MESSAGE_STATES = tuple(s.value for s in MessageState)

consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("granted", Integer, nullable=False),  # 1 granted, 0 withdrawn
    Column("at", DateTime(timezone=True), nullable=False),
    Column("source", String(20), nullable=False),
    Column("note", String(200), nullable=True),  # e.g. which message's link, which staff member
    CheckConstraint(f"channel IN {CHANNELS!r}", name="channel"),
    CheckConstraint(f"source IN {CONSENT_SOURCES!r}", name="source"),
    CheckConstraint("granted IN (0, 1)", name="granted"),
    Index("ix_consents_holder_channel", "holder_id", "channel", "id"),
)

holder_events = Table(
    "holder_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_key", String(120), nullable=False, unique=True),
    Column("kind", String(30), nullable=False),  # an EventKind (below)
    Column("card_number", RegistryCardNumber, nullable=False, index=True),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("occurred_at", BigInteger, nullable=False),  # unix seconds, the import's clock
    Column("due_at", BigInteger, nullable=False),  # not delivered before (a day's digest: after the day)
    Column("data", JSON, nullable=False),  # what the message says: amounts, balance, points, dates
    Column("planned", Integer, nullable=False, server_default="0"),  # 1 once its messages exist
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("holder_events.id"), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("recipient", String(254), nullable=True),
    Column("state", String(12), nullable=False),
    Column("reason", String(300), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("not_before", BigInteger, nullable=False),  # unix seconds
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", BigInteger, nullable=True),
    Column("sent_at", BigInteger, nullable=True),
    Column("parts", Integer, nullable=True),  # an SMS's parts (GSM-7: 160/153, UCS-2: 70/67 characters)
    Column("cost", BigInteger, nullable=True),  # minor units the gateway charges for it
    Column("body", Text, nullable=True),  # the text as sent (plain part of an e-mail)
    Column("unsubscribe_hash", LargeBinary(32), nullable=True, unique=True),  # SHA-256 of the link's token
    UniqueConstraint("event_id", "channel", name="uq_messages_event_channel"),
    CheckConstraint(f"channel IN {CHANNELS!r}", name="channel"),
    CheckConstraint(f"state IN {MESSAGE_STATES!r}", name="state"),
    Index("ix_messages_state_not_before", "state", "not_before"),
)


class EventKind(StrEnum):
    """What a holder hears about (docs/holders.md, "Events")."""

    LOAD = "load"  # money loaded at a desk
    PURCHASES = "purchases"  # a day's purchases and cancellations: one digest the day after, not one per coffee
    PRIZE = "prize"  # a purchase passed the prize threshold: the prize waits at the till
    LOW_BALANCE = "low_balance"  # the card fell below [notify] low_balance
    BLOCKED = "blocked"  # blocked in the registry (lost, stolen) or by a terminal (hotlisted)
    REPLACEMENT_READY = "replacement_ready"  # a new card was issued for a replaced one
    VALUE_MOVED = "value_moved"  # the replaced card's value was loaded onto the new card
    RETURNED = "returned"  # the card was given back: its balance and deposit paid out
    CAMPAIGN = "campaign"  # the issuer's message to a segment of holders (processing.holders.campaigns)
    POINTS_EXPIRING = "points_expiring"  # the card's points lapse within [notify] expiry_warning_days


EVENT_KINDS = tuple(k.value for k in EventKind)


def insert_event(conn: Connection, key: str, kind: EventKind, card_number: str, holder_id: int | None,
                 occurred_at: int, data: dict[str, Any], due_at: int | None = None) -> bool:
    """Write one event to the outbox unless its key is there already (a re-import, a re-run); whether new.

    The one way events are written, by processing and by the issuer station alike, in the caller's
    transaction: the event stands or falls with the posting that learned it."""
    row = {"event_key": key, "kind": kind, "card_number": card_number, "holder_id": holder_id,
           "occurred_at": occurred_at, "due_at": occurred_at if due_at is None else due_at, "data": data}
    return insert_once(conn, holder_events, row, ["event_key"])


class RequestKind(StrEnum):
    """What a holder asks the issuer for on their own page (docs/portal.md)."""

    REPLACEMENT = "replacement"  # the card was reported lost or stolen: staff issue the new one (`cards replace`)
    PAYOUT = "payout"  # pay the balance and the deposit out when the card is brought back (`cash-out`)


REQUEST_KINDS = tuple(k.value for k in RequestKind)

# A holder's request, made once per card and kind (a second click finds the first); ``done_at`` is
# stamped by the command that fulfils it, in the same transaction.
holder_requests = Table(
    "holder_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card_number", RegistryCardNumber, ForeignKey("cards.number"), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("requested_at", BigInteger, nullable=False),  # unix seconds
    Column("source", String(20), nullable=False),  # a ConsentSource-like origin: self-service, desk
    Column("done_at", BigInteger, nullable=True),
    Column("note", String(200), nullable=True),  # what fulfilled it: the new card's number, the cash-out
    UniqueConstraint("card_number", "kind", name="uq_holder_requests_card_kind"),
    CheckConstraint(f"kind IN {REQUEST_KINDS!r}", name="kind"),
)


def request_once(conn: Connection, number: str, kind: RequestKind, holder_id: int | None, at: int,
                 source: str) -> bool:
    """Record a holder's request unless that card has one of that kind already; whether it is new."""
    return insert_once(conn, holder_requests, {"card_number": number, "kind": kind, "holder_id": holder_id,
                                               "requested_at": at, "source": source}, ["card_number", "kind"])


def fulfil_request(conn: Connection, number: str, kind: RequestKind, at: int, note: str) -> bool:
    """Stamp the card's open request of ``kind`` done, in the caller's transaction (the issuer station's
    ``cards replace`` and the desk's ``cash-out`` alike); whether there was one."""
    from sqlalchemy import update

    q = holder_requests.c
    return bool(conn.execute(update(holder_requests).where(q.card_number == number, q.kind == kind,
                                                           q.done_at.is_(None)).values(done_at=at, note=note[:200]))
                .rowcount)


# -- Wallet cards (processing.holders.wallet) ------------------------------------------------------------
# A card's Wallet pass: its serial number is the card number; what it showed last, and when that changed
# (the PassKit web service answers "updated since" from it).
wallet_passes = Table(
    "wallet_passes",
    metadata,
    Column("serial", RegistryCardNumber, primary_key=True),
    Column("updated_at", BigInteger, nullable=False),  # unix seconds
    Column("shown", JSON, nullable=False),  # balance, points, as of: what the pass shows
)

# The authentication tokens of the passes handed out (each download gets its own), kept as SHA-256 only.
wallet_tokens = Table(
    "wallet_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("serial", RegistryCardNumber, ForeignKey("wallet_passes.serial"), nullable=False, index=True),
)

# Devices that registered a pass for updates (PassKit web service), with their push tokens.
wallet_registrations = Table(
    "wallet_registrations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device", String(200), nullable=False),
    Column("serial", RegistryCardNumber, ForeignKey("wallet_passes.serial"), nullable=False),
    Column("push_token", String(200), nullable=False),
    UniqueConstraint("device", "serial", name="uq_wallet_registrations_device_serial"),
)

# Pushes requested when a pass changed: one per registration and change, sent by `notify run`.
wallet_pushes = Table(
    "wallet_pushes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("serial", RegistryCardNumber, nullable=False),
    Column("push_token", String(200), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # queued, sent, failed
    Column("reason", String(300), nullable=True),
    Column("sent_at", BigInteger, nullable=True),
    Index("ix_wallet_pushes_state", "state"),
)
