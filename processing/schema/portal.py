"""The holder's own web page (``portal``, docs/portal.md): its sessions, one-time login codes, the wrong
codes that lock a login, and its security log.

Nothing here holds a secret in the clear: a session cookie and a code's login token are stored as
SHA-256, a code as SHA-256 under a per-code salt, a login identifier (a card number or a phone) as
the ``subject``, SHA-256 of ``card:<number>`` or ``phone:<E.164>``, so the lock-out table is no list
of the cards people tried. Times are unix seconds.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, LargeBinary, String, Table

from processing.schema import metadata

__all__ = ["portal_sessions", "portal_codes", "portal_failures", "portal_log"]

# A browser's session: first anonymous (a login form's CSRF token needs one), then a holder's once a
# code was right. Logging in makes a new row (a new cookie): a cookie planted before login stays anonymous.
portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("phone", String(20), nullable=True),  # logged in by phone: every holder with it
    Column("csrf", String(64), nullable=False),  # the synchronizer token every form of the session carries
    Column("language", String(5), nullable=True),
    Column("client", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
)

# A code sent (or, for a card or phone nobody holds, pretended sent: same answer, nothing matches).
portal_codes = Table(
    "portal_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),  # the login form's hidden token
    Column("subject", String(64), nullable=False),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("phone", String(20), nullable=True),
    Column("code_hash", LargeBinary(32), nullable=True),  # None: nobody to send to, no code matches
    Column("salt", LargeBinary(16), nullable=False),
    Column("channel", String(10), nullable=True),
    Column("client", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Index("ix_portal_codes_subject_created", "subject", "created_at"),
    Index("ix_portal_codes_client_created", "client", "created_at"),
)

# One row per wrong (or replayed, or expired) code: five within the lock window lock the subject, and
# five from one client address lock that address, whichever cards it tries.
portal_failures = Table(
    "portal_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subject", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_portal_failures_subject_at", "subject", "at"),
    Index("ix_portal_failures_client_at", "client", "at"),
)

# What the issuer's security staff read (``smartpurse portal log``): logins, refusals and why, actions.
portal_log = Table(
    "portal_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("event", String(32), nullable=False),
    Column("client", String(64), nullable=False),
    Column("holder_id", Integer, nullable=True),
    Column("subject", String(64), nullable=True),
    Column("detail", String(300), nullable=False, server_default=""),
    Index("ix_portal_log_at", "at"),
)
