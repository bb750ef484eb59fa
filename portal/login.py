"""One-time login codes: asked for, sent, checked once, and locked out after too many wrong ones.

* A code is 6 random digits, good for ``[portal] code_minutes`` and once. The database keeps its
  SHA-256 under a per-code salt, and the login form carries a random token naming the code row
  (also kept as SHA-256 only), so a stolen table lets nobody in.
* A card or phone nobody holds gets the same answer and the same kind of row (with no code that
  can match): whoever tries card numbers learns nothing about which exist, the harvest that
  stolen-points fraud starts with (seed 003).
* Every wrong, replayed or expired code counts against its card or phone and against the client's
  address; ``max_wrong_codes`` of either within ``lock_minutes`` lock it, and a locked login refuses
  even the right code. Asking for codes is limited too (``codes_per_hour``), so the page cannot be
  used to send a phone SMS after SMS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update

from portal.subjects import Subject
from processing.schema.portal import portal_codes, portal_failures
from processing.schema.registry import cards, holders
from purse.settings import PortalSettings

__all__ = ["CodeToSend", "Challenge", "Identity", "Refusal", "request_code", "verify_code", "locked_for",
           "token_digest"]

CODE_DIGITS = 6


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _code_digest(salt: bytes, code: str) -> bytes:
    return hashlib.sha256(salt + code.encode()).digest()


@dataclass(frozen=True)
class CodeToSend:
    """What the code sender delivers: the code, to whom and on which channel, in their language."""

    channel: str  # "email" or "sms"
    address: str
    code: str
    language: str | None


@dataclass(frozen=True)
class Challenge:
    token: str  # goes into the code form, hidden
    send: CodeToSend | None  # None: nobody holds the card or phone (the answer is the same)


@dataclass(frozen=True)
class Identity:
    """Who a right code logs in: the holder of a card, or every holder with a phone."""

    holder_id: int | None
    phone: str | None


@dataclass(frozen=True)
class Refusal:
    """Why a login step was refused: ``reason`` for the security log, ``wait`` seconds when locked or throttled."""

    reason: str  # wrong, replayed, expired, unknown-token, locked, throttled
    wait: int = 0


def locked_for(conn: Connection, subject: str, client: str, now: int, s: PortalSettings) -> int:
    """Seconds until the subject and the client address may try again (0: not locked)."""
    window = s.lock_minutes * 60
    f = portal_failures.c
    wait = 0
    for column, value in ((f.subject, subject), (f.client, client)):
        recent = conn.execute(select(f.at).where(column == value, f.at > now - window)
                              .order_by(f.at.desc()).limit(s.max_wrong_codes)).scalars().all()
        if len(recent) >= s.max_wrong_codes:
            wait = max(wait, int(min(recent)) + window - now)
    return wait


def _recipient(conn: Connection, subject: Subject) -> tuple[Identity, CodeToSend | None] | None:
    h, c = holders.c, cards.c
    if subject.kind == "card":
        row = conn.execute(select(h.id, h.email, h.phone, h.language).join(cards, c.holder_id == h.id)
                           .where(c.number == subject.value)).first()
        if row is None:
            return None
        channel, address = ("email", row.email) if row.email else ("sms", row.phone)
        return Identity(int(row.id), None), (CodeToSend(channel, address, "", row.language) if address else None)
    row = conn.execute(select(h.language).where(h.phone == subject.value).order_by(h.id)).first()
    if row is None:
        return None
    return Identity(None, subject.value), CodeToSend("sms", subject.value, "", row.language)


def request_code(conn: Connection, subject: Subject, client: str, now: int,
                 s: PortalSettings) -> Challenge | Refusal:
    """A new code for ``subject`` (to send), or why not: locked, or too many codes asked for."""
    wait = locked_for(conn, subject.key, client, now, s)
    if wait:
        return Refusal("locked", wait)
    k = portal_codes.c
    hour = now - 3600
    by_subject = conn.execute(select(func.count()).where(k.subject == subject.key, k.created_at > hour)).scalar_one()
    by_client = conn.execute(select(func.count()).where(k.client == client, k.created_at > hour)).scalar_one()
    if by_subject >= s.codes_per_hour or by_client >= 5 * s.codes_per_hour:
        oldest = conn.execute(select(func.min(k.created_at)).where(
            (k.subject == subject.key) if by_subject >= s.codes_per_hour else (k.client == client),
            k.created_at > hour)).scalar_one()
        return Refusal("throttled", max(1, int(oldest) + 3600 - now))
    token, code, salt = secrets.token_urlsafe(32), f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}", \
        os.urandom(16)
    found = _recipient(conn, subject)
    identity, send = found if found is not None else (Identity(None, None), None)
    if send is not None:
        send = CodeToSend(send.channel, send.address, code, send.language)
    conn.execute(insert(portal_codes).values(
        token_hash=token_digest(token), subject=subject.key, holder_id=identity.holder_id, phone=identity.phone,
        code_hash=_code_digest(salt, code) if send is not None else None, salt=salt,
        channel=send.channel if send else None, client=client, created_at=now, expires_at=now + s.code_minutes * 60))
    return Challenge(token, send)


def verify_code(conn: Connection, token: str, code: str, client: str, now: int,
                s: PortalSettings) -> Identity | Refusal:
    """Who the code logs in, or why it does not. A refusal is counted (the caller commits it)."""
    k = portal_codes.c
    row = conn.execute(select(k.id, k.subject, k.holder_id, k.phone, k.code_hash, k.salt, k.expires_at, k.used_at)
                       .where(k.token_hash == token_digest(token))).first() if token else None
    subject = row.subject if row is not None else "unknown-token"
    wait = locked_for(conn, subject, client, now, s)
    if wait:
        return Refusal("locked", wait)
    reason = None
    if row is None:
        reason = "unknown-token"
    elif row.used_at is not None:
        reason = "replayed"
    elif now >= row.expires_at:
        reason = "expired"
    elif row.code_hash is None or not hmac.compare_digest(_code_digest(bytes(row.salt), code.strip()),
                                                          bytes(row.code_hash)):
        reason = "wrong"
    elif conn.execute(update(portal_codes).where(k.id == row.id, k.used_at.is_(None))
                      .values(used_at=now)).rowcount != 1:
        reason = "replayed"  # another request used it a moment ago
    if reason is not None or row is None:
        conn.execute(insert(portal_failures).values(subject=subject, client=client, at=now))
        return Refusal(reason or "unknown-token")
    return Identity(row.holder_id, row.phone)
