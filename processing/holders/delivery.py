"""``smartpurse notify run``: the delivery worker. Events become messages, and messages leave, once.

Each run first calls *interrupted* every message a worker had claimed and not finished within its
lease (the worker died while handing it over: it may have reached the holder, so it is never sent
again, and says so), then plans the due events into one message per channel, then delivers what is
due. A message is claimed by a compare-and-set on its state, committed before anything is sent, so
two workers never take the same message, and a worker killed at any moment leaves every message
either untouched (queued), finished (sent, failed, suppressed) or interrupted: none is sent twice,
none is lost (docs/holders.md, "Delivery you can trust").

The holder's consent on the channel is asked at the moment of sending; quiet hours hold messages
back until they end; a holder gets at most ``daily_cap`` messages a day on a channel; a temporary
failure is retried with a doubling wait up to ``max_attempts``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, func, select, update

from processing.holders.channels import ChannelMissing, DeliveryError, EmailChannel, SmsGateway
from processing.holders.consent import consented
from processing.holders.events import DAY
from processing.holders.expiry import expiring_points
from processing.holders.render import Rendered, event_context, render
from processing.holders.sms import sms_length
from processing.presentation import Presentation
from processing.schema import insert_once
from processing.schema.holders import Channel, EventKind, MessageState, holder_events, messages
from processing.schema.registry import holders
from purse.errors import UserError
from purse.settings import IssuerSettings, NotifySettings, WalletSettings

__all__ = ["Deliverer", "DeliveryRun", "QuietHours", "queue_status"]

DEFAULT_LEASE = 120  # seconds a claimed message may take: more than a channel's timeout
_BATCH = 50


@dataclass(frozen=True)
class QuietHours:
    """Local hours when nothing is sent, e.g. 22-8 (22:00 to 08:00); start == end: none."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        if not text.strip():
            return cls(0, 0)
        try:
            start, end = (int(part) for part in text.split("-"))
        except ValueError:
            raise UserError(f"[notify] quiet_hours is like 22-8 (from-to, hours), not {text!r}") from None
        if not (0 <= start < 24 and 0 <= end < 24):
            raise UserError(f"[notify] quiet_hours has hours 0..23, not {text!r}")
        return cls(start, end)

    def until(self, local: dt.datetime) -> dt.datetime | None:
        """When the quiet hours around ``local`` end; None when ``local`` is outside them."""
        if self.start == self.end:
            return None
        h = local.hour
        inside = self.start <= h < self.end if self.start < self.end else (h >= self.start or h < self.end)
        if not inside:
            return None
        end = local.replace(hour=self.end, minute=0, second=0, microsecond=0)
        return end if end > local else end + dt.timedelta(days=1)


@dataclass
class DeliveryRun:
    """What one ``notify run`` did."""

    interrupted: int = 0
    planned: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    quiet_until: int | None = None  # unix seconds: quiet hours held the rest back
    passes_updated: int = 0  # Wallet passes whose figures changed with this run's events
    pushes_sent: int = 0
    pushes_failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Deliverer:
    """Plans and delivers the outbox of one database, by the rules of ``[notify]``."""

    def __init__(self, engine: Engine, settings: NotifySettings, issuer: IssuerSettings, *,
                 clock: Callable[[], float] = time.time, lease: int = DEFAULT_LEASE,
                 worker: str | None = None, wallet: WalletSettings | None = None) -> None:
        self.engine, self.s, self.issuer, self.clock, self.lease = engine, settings, issuer, clock, lease
        self.wallet = wallet
        self._touched: set[str] = set()  # cards whose events this run planned: their Wallet passes may change
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        try:
            self.zone = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UserError(f"[notify] timezone {settings.timezone!r} is not a time zone (e.g. Europe/Moscow)") \
                from None
        self.quiet = QuietHours.parse(settings.quiet_hours)
        self._channels: dict[Channel, EmailChannel | SmsGateway | ChannelMissing] = {}

    def now(self) -> int:
        return int(self.clock())

    # -- one run ------------------------------------------------------------------------------------
    def run(self, limit: int | None = None) -> DeliveryRun:
        """Recover, plan, deliver everything due now (at most ``limit`` messages)."""
        out = DeliveryRun()
        out.interrupted = self.recover()
        with self.engine.begin() as conn:  # the clock's own events: points about to lapse
            expiring_points(conn, self.now(), self.s.expiry_warning_days)
        out.planned = self.plan()
        if self.wallet is not None and self.wallet.pass_type_id:
            from processing.holders.wallet import refresh_passes, send_pushes

            with self.engine.begin() as conn:
                out.passes_updated = refresh_passes(conn, self._touched, self.now())
                out.pushes_sent, out.pushes_failed = send_pushes(conn, self.wallet, self.now())
        done = 0
        while limit is None or done < limit:
            quiet = self.quiet.until(dt.datetime.fromtimestamp(self.now(), self.zone))
            if quiet is not None:
                out.quiet_until = int(quiet.timestamp())
                break
            due = self._due(_BATCH if limit is None else min(_BATCH, limit - done))
            if not due:
                break
            for message_id in due:
                if self._claim(message_id):
                    self._deliver(message_id, out)
                    done += 1
        return out

    def recover(self) -> int:
        """Messages a worker claimed and never finished: interrupted, never sent again."""
        m = messages.c
        with self.engine.begin() as conn:
            return int(conn.execute(update(messages).where(m.state == MessageState.SENDING,
                                                           m.claimed_until < self.now())
                                    .values(state=MessageState.INTERRUPTED,
                                            reason="the worker stopped while handing it to the channel: it may "
                                                   "have been sent, so it is not sent again")).rowcount)

    def plan(self) -> int:
        """One message per channel for each due event not planned yet; how many messages."""
        e, h = holder_events.c, holders.c
        now, made = self.now(), 0
        while True:
            with self.engine.begin() as conn:
                due = conn.execute(select(e.id, e.kind, e.due_at, e.data, e.holder_id, h.email, h.phone,
                                          e.card_number)
                                   .select_from(holder_events.outerjoin(holders, h.id == e.holder_id))
                                   .where(e.planned == 0, e.due_at <= now).order_by(e.id).limit(500)).all()
                if not due:
                    return made
                for event_id, kind, due_at, data, holder_id, email, phone, card_number in due:
                    self._touched.add(card_number)
                    not_before = self._not_before(EventKind(kind), int(due_at))
                    stale = self._stale(EventKind(kind), dict(data), now)
                    for channel, address in ((Channel.EMAIL, email), (Channel.SMS, phone)):
                        reason = stale or (None if address else f"the holder has no {_ADDRESS[channel]}")
                        made += insert_once(conn, messages, {
                            "event_id": event_id, "channel": channel, "holder_id": holder_id, "recipient": address,
                            "state": MessageState.SUPPRESSED if reason else MessageState.QUEUED,
                            "reason": reason, "not_before": not_before}, ["event_id", "channel"])
                conn.execute(update(holder_events).where(e.id.in_([d[0] for d in due])).values(planned=1))

    def _stale(self, kind: EventKind, data: dict[str, Any], now: int) -> str | None:
        """A day's digest or a load that processing learned of long after (a terminal that sent its batch
        weeks late): old news, not sent. Blocks, prizes, replacements and returns are told however late."""
        if kind == EventKind.PURCHASES:
            happened = (int(data["day"]) + 1) * DAY
        elif kind == EventKind.LOAD:
            happened = int(data.get("time", now))
        else:
            return None
        if now - happened <= self.s.stale_days * DAY:
            return None
        return f"stale: it happened more than {self.s.stale_days} days before it could be told ([notify] stale_days)"

    def _not_before(self, kind: EventKind, due_at: int) -> int:
        """A day's digest goes out the next morning (``digest_hour``, local); anything else when due."""
        if kind != EventKind.PURCHASES:
            return due_at
        day = dt.date(1970, 1, 1) + dt.timedelta(days=due_at // DAY)
        return int(dt.datetime.combine(day, dt.time(self.s.digest_hour), self.zone).timestamp())

    def _due(self, n: int) -> list[int]:
        m = messages.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(m.id).where(m.state == MessageState.QUEUED, m.not_before <= self.now())
                                     .order_by(m.not_before, m.id).limit(n)).scalars())

    def _claim(self, message_id: int) -> bool:
        m = messages.c
        with self.engine.begin() as conn:
            return bool(conn.execute(update(messages).where(m.id == message_id, m.state == MessageState.QUEUED)
                                     .values(state=MessageState.SENDING, claimed_by=self.worker,
                                             claimed_until=self.now() + self.lease, attempts=m.attempts + 1))
                        .rowcount)

    # -- one message ----------------------------------------------------------------------------------
    def _channel(self, channel: Channel) -> EmailChannel | SmsGateway | ChannelMissing:
        if channel not in self._channels:
            try:
                self._channels[channel] = EmailChannel(self.s) if channel == Channel.EMAIL else SmsGateway(self.s)
            except ChannelMissing as missing:
                self._channels[channel] = missing
        return self._channels[channel]

    def _finish(self, message_id: int, state: MessageState, reason: str | None, out: DeliveryRun,
                **values: Any) -> None:
        m = messages.c
        with self.engine.begin() as conn:
            conn.execute(update(messages).where(m.id == message_id, m.claimed_by == self.worker)
                         .values(state=state, reason=reason and reason[:300], claimed_until=None, **values))
        if state == MessageState.SENT:
            out.sent += 1
        elif state == MessageState.QUEUED:
            out.retried += 1
        else:
            setattr(out, str(state), getattr(out, str(state)) + 1)
        if reason and state != MessageState.SENT:
            key = reason.split(":")[0]
            out.reasons[key] = out.reasons.get(key, 0) + 1

    def _deliver(self, message_id: int, out: DeliveryRun) -> None:
        m, e, h = messages.c, holder_events.c, holders.c
        with self.engine.begin() as conn:
            row = conn.execute(select(m.channel, m.recipient, m.attempts, m.holder_id, e.kind, e.card_number,
                                      e.data, e.occurred_at, h.name, h.language)
                               .select_from(messages.join(holder_events, e.id == m.event_id)
                                            .outerjoin(holders, h.id == m.holder_id))
                               .where(m.id == message_id)).one()
            channel = Channel(row.channel)
            why_not = self._why_not(conn, row.holder_id, channel)
            sender = self._channel(channel)
            if why_not is None and isinstance(sender, ChannelMissing):
                why_not = str(sender)
            if why_not is None:
                rendered, url = self._prepare(conn, message_id, row, channel)
        if why_not is not None:
            self._finish(message_id, MessageState.SUPPRESSED, why_not, out)
            return
        try:  # committed above: the link works once the message is out; a crash from here is "interrupted"
            if isinstance(sender, EmailChannel):
                sender.send(str(row.recipient), rendered, url)
            else:
                assert isinstance(sender, SmsGateway)
                sender.send(str(row.recipient), rendered.sms)
        except DeliveryError as error:
            if error.temporary and int(row.attempts) < self.s.max_attempts:
                wait = self.s.retry_seconds * 2 ** (int(row.attempts) - 1)
                self._finish(message_id, MessageState.QUEUED, f"retry: {error.reason}", out,
                             not_before=self.now() + wait, claimed_by=None)
            else:
                tries = f" (after {row.attempts} tries)" if error.temporary else ""
                self._finish(message_id, MessageState.FAILED, f"{error.reason}{tries}", out)
            return
        self._finish(message_id, MessageState.SENT, None, out, sent_at=self.now())

    def _prepare(self, conn: Connection, message_id: int, row: Any, channel: Channel) -> tuple[Rendered, str]:
        """Render the message in the holder's language and keep what is sent (the text, an SMS's parts and
        cost, the hash of the e-mail's unsubscribe token) before it leaves."""
        m = messages.c
        language = row.language or self.issuer.locale
        look = Presentation.for_issuer(self.issuer, language)
        token = secrets.token_urlsafe(18)
        url = f"{self.s.public_url.rstrip('/')}/unsubscribe/{token}"
        context = event_context(conn, EventKind(row.kind), row.card_number, dict(row.data), int(row.occurred_at),
                                row.name or "", look, self.zone, self.issuer.display_name)
        rendered = render(EventKind(row.kind), language, context, url)
        length = sms_length(rendered.sms) if channel == Channel.SMS else None
        conn.execute(update(messages).where(m.id == message_id).values(
            body=rendered.sms if length is not None else rendered.text,
            parts=length.parts if length is not None else None,
            cost=length.parts * self.s.sms_part_price if length is not None else None,
            unsubscribe_hash=hashlib.sha256(token.encode()).digest() if channel == Channel.EMAIL else None))
        return rendered, url

    def _why_not(self, conn: Connection, holder_id: int | None, channel: Channel) -> str | None:
        """Why this message may not go now: no consent on the channel, or the holder's cap for today."""
        if holder_id is None or not consented(conn, holder_id, channel):
            return f"no consent: the holder has not agreed to hear by {channel}"
        local = dt.datetime.fromtimestamp(self.now(), self.zone)
        midnight = int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
        m = messages.c
        today = int(conn.execute(select(func.count()).select_from(messages).where(
            m.holder_id == holder_id, m.channel == channel, m.state == MessageState.SENT,
            m.sent_at >= midnight)).scalar_one())
        if today >= self.s.daily_cap:
            return f"daily cap: {today} messages by {channel} today already ([notify] daily_cap)"
        return None


_ADDRESS = {Channel.EMAIL: "e-mail address", Channel.SMS: "phone number"}


def queue_status(engine: Engine, now: int) -> dict[str, Any]:
    """``notify status``: messages per channel and state, what is due, the events not planned, the reasons."""
    m, e = messages.c, holder_events.c
    with engine.connect() as conn:
        counts = conn.execute(select(m.channel, m.state, func.count(), func.coalesce(func.sum(m.cost), 0))
                              .group_by(m.channel, m.state).order_by(m.channel, m.state)).all()
        due = int(conn.execute(select(func.count()).select_from(messages).where(
            m.state == MessageState.QUEUED, m.not_before <= now)).scalar_one())
        later = conn.execute(select(func.min(m.not_before)).where(m.state == MessageState.QUEUED,
                                                                  m.not_before > now)).scalar()
        unplanned = int(conn.execute(select(func.count()).select_from(holder_events)
                                     .where(e.planned == 0)).scalar_one())
        reasons = conn.execute(select(m.state, m.reason, func.count()).where(
            m.state.in_([MessageState.FAILED, MessageState.SUPPRESSED, MessageState.INTERRUPTED]))
            .group_by(m.state, m.reason).order_by(func.count().desc()).limit(10)).all()
    return {"messages": [{"channel": c, "state": s, "count": int(n), "cost": int(cost)} for c, s, n, cost in counts],
            "due_now": due, "next_due": int(later) if later is not None else None, "events_to_plan": unplanned,
            "reasons": [{"state": s, "reason": r, "count": int(n)} for s, r, n in reasons]}
