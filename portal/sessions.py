"""Browser sessions: a random cookie, kept as SHA-256 with the holder it logged in and its CSRF token.

Server-side rather than a signed cookie so that a session ends when the holder logs out or it times
out, for good, and a cookie says nothing about whose it is. Every form of a session carries its
``csrf`` token (the synchronizer-token pattern); a state-changing request without it is refused.
Logging in makes a new session and drops the anonymous one, so a cookie planted in a browser
before the login (session fixation) never becomes a holder's.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, or_, select, update

from portal.login import Identity, token_digest
from processing.schema.portal import portal_sessions
from processing.schema.registry import holders
from purse.settings import PortalSettings

__all__ = ["Session", "open_session", "find_session", "log_in", "end_session", "set_language", "holder_ids",
           "csrf_ok"]


@dataclass(frozen=True)
class Session:
    token_hash: bytes
    holder_id: int | None
    phone: str | None
    csrf: str
    language: str | None

    @property
    def logged_in(self) -> bool:
        return self.holder_id is not None or self.phone is not None


def _new(conn: Connection, identity: Identity | None, client: str, now: int,
         language: str | None) -> tuple[str, Session]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session = Session(token_digest(token), identity.holder_id if identity else None,
                      identity.phone if identity else None, csrf, language)
    conn.execute(insert(portal_sessions).values(token_hash=session.token_hash, holder_id=session.holder_id,
                                                phone=session.phone, csrf=csrf, language=language, client=client,
                                                created_at=now, seen_at=now))
    return token, session


def open_session(conn: Connection, client: str, now: int, s: PortalSettings,
                 language: str | None = None) -> tuple[str, Session]:
    """A new anonymous session (its cookie token and row); sessions past their time are swept away."""
    t = portal_sessions.c
    conn.execute(delete(portal_sessions).where(or_(t.seen_at < now - s.idle_minutes * 60,
                                                   t.created_at < now - s.session_hours * 3600)))
    return _new(conn, None, client, now, language)


def find_session(conn: Connection, token: str, now: int, s: PortalSettings) -> Session | None:
    """The live session of cookie ``token``; None when unknown, idle too long or too old."""
    if not token or len(token) > 100:
        return None
    t = portal_sessions.c
    row = conn.execute(select(portal_sessions).where(t.token_hash == token_digest(token))).first()
    if row is None:
        return None
    if row.seen_at < now - s.idle_minutes * 60 or row.created_at < now - s.session_hours * 3600:
        conn.execute(delete(portal_sessions).where(t.token_hash == row.token_hash))
        return None
    if now - row.seen_at >= 30:
        conn.execute(update(portal_sessions).where(t.token_hash == row.token_hash).values(seen_at=now))
    return Session(bytes(row.token_hash), row.holder_id, row.phone, row.csrf, row.language)


def log_in(conn: Connection, old: Session | None, identity: Identity, client: str, now: int) -> tuple[str, Session]:
    """The holder's new session, replacing ``old`` (its language kept)."""
    language = old.language if old else None
    if old is not None:
        end_session(conn, old)
    return _new(conn, identity, client, now, language)


def end_session(conn: Connection, session: Session) -> None:
    conn.execute(delete(portal_sessions).where(portal_sessions.c.token_hash == session.token_hash))


def set_language(conn: Connection, session: Session, language: str) -> None:
    conn.execute(update(portal_sessions).where(portal_sessions.c.token_hash == session.token_hash)
                 .values(language=language))


def holder_ids(conn: Connection, session: Session) -> list[int]:
    """The holders whose cards the session may see: its holder, or every holder with its phone."""
    if session.holder_id is not None:
        return [session.holder_id]
    if session.phone is None:
        return []
    return [int(i) for i in conn.execute(select(holders.c.id).where(holders.c.phone == session.phone)).scalars()]


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return session is not None and bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())
