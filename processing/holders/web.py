"""The holder-facing HTTP endpoints of the messages: the unsubscribe link and the SMS gateway's STOP.

A WSGI application (``smartpurse notify serve`` runs it on the standard library's WSGI server; behind
a TLS reverse proxy, or under any WSGI server, in production):

* ``GET /unsubscribe/<token>`` shows a page with one button, and ``POST`` to the same address
  withdraws the e-mail consent. A GET changes nothing: mail scanners fetch links. A POST is what
  the button sends, and what mail clients send for RFC 8058 one-click unsubscribe
  (``List-Unsubscribe=One-Click``). The token is random per message; only its SHA-256 is stored.
* ``POST /sms/inbound`` with ``from`` and ``text`` (the gateway's callback for an answer from a
  phone): a STOP (or СТОП) withdraws that phone's SMS consent.

Each withdrawal is a consent row with its source, so the record is kept (processing.holders.consent).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine, select

from processing.holders.consent import record_consent
from processing.schema.holders import Channel, ConsentSource, messages
from processing.schema.registry import holders

__all__ = ["holder_app"]

_TOKEN = re.compile(r"^/unsubscribe/([A-Za-z0-9_-]{16,64})$")
_STOP_WORDS = frozenset({"stop", "стоп", "отписаться", "unsubscribe"})
_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head><body style="font-family: sans-serif; max-width: 30em; margin: 2em auto">
<h1 style="font-size: 1.3em">{title}</h1>{body}</body></html>"""
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _page(start: StartResponse, status: str, title: str, body: str) -> list[bytes]:
    start(status, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                   ("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "default-src 'none'; "
                    "style-src 'unsafe-inline'; form-action 'self'")])
    return [_PAGE.format(title=html.escape(title), body=body).encode()]


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
    return {k: v[0] for k, v in parse_qs(raw).items()}


def holder_app(engine: Engine, clock: Callable[[], float] | None = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI application on ``engine``'s database."""
    import time

    now = clock or time.time

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        found = _TOKEN.match(path)
        if found:
            return _unsubscribe(found.group(1), method, start)
        if path == "/sms/inbound" and method == "POST":
            return _inbound(_form(environ), start)
        return _page(start, "404 Not Found", "Not found", "<p>There is nothing here.</p>")

    def _unsubscribe(token: str, method: str, start: StartResponse) -> list[bytes]:
        m = messages.c
        digest = hashlib.sha256(token.encode()).digest()
        with engine.begin() as conn:
            row = conn.execute(select(m.id, m.holder_id).where(m.unsubscribe_hash == digest)).first()
            if row is None or row.holder_id is None:
                return _page(start, "404 Not Found", "Link not known",
                             "<p>This unsubscribe link is not one of ours, or it was mistyped.</p>")
            if method != "POST":
                return _page(start, "200 OK", "Unsubscribe",
                             "<p>Stop e-mails about your card? / Больше не присылать письма о карте?</p>"
                             f'<form method="post" action="/unsubscribe/{html.escape(token)}">'
                             '<button type="submit">Unsubscribe / Отписаться</button></form>')
            record_consent(conn, int(row.holder_id), Channel.EMAIL, False, ConsentSource.UNSUBSCRIBE_LINK,
                           dt.datetime.fromtimestamp(now(), dt.UTC), f"message {row.id}")
        return _page(start, "200 OK", "Unsubscribed",
                     "<p>You will get no more e-mails about your card. / Письма о карте больше не придут.</p>")

    def _inbound(form: dict[str, str], start: StartResponse) -> list[bytes]:
        sender, text = form.get("from", "").strip(), form.get("text", "").strip().lower()
        if text.strip(" .!") not in _STOP_WORDS:
            return _page(start, "200 OK", "Noted", "<p>Not a STOP: nothing changed.</p>")
        phone = sender if sender.startswith("+") else f"+{sender}"
        with engine.begin() as conn:
            holder_ids = conn.execute(select(holders.c.id).where(holders.c.phone == phone)).scalars().all()
            for holder_id in holder_ids:
                record_consent(conn, int(holder_id), Channel.SMS, False, ConsentSource.STOP_REPLY,
                               dt.datetime.fromtimestamp(now(), dt.UTC), f"STOP from {phone}")
        return _page(start, "200 OK", "Stopped", f"<p>{len(holder_ids)} holder(s) will get no more SMS.</p>")

    return app
