"""The holder-facing HTTP endpoints of the messages: the unsubscribe link and the SMS gateway's STOP.

A WSGI application (``smartpurse notify serve`` runs it on the standard library's WSGI server; behind
a TLS reverse proxy, or under any WSGI server, in production):

* ``GET /unsubscribe/<token>`` shows a page with one button, and ``POST`` to the same address
  withdraws the e-mail consent. A GET changes nothing: mail scanners fetch links. A POST is what
  the button sends, and what mail clients send for RFC 8058 one-click unsubscribe
  (``List-Unsubscribe=One-Click``). The token is random per message; only its SHA-256 is stored.
* ``POST /sms/inbound`` with ``from`` and ``text`` (the gateway's callback for an answer from a
  phone): a STOP (or СТОП) withdraws that phone's SMS consent.
* ``/wallet/v1/…``: Apple's PassKit web service for the Wallet passes (``PassKit`` below), when
  ``[wallet]`` is set up.

Each withdrawal is a consent row with its source, so the record is kept (processing.holders.consent).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine, delete, insert, select, update

from processing.holders.consent import record_consent
from processing.holders.wallet import token_hash
from processing.schema.holders import (
    Channel,
    ConsentSource,
    messages,
    wallet_passes,
    wallet_registrations,
    wallet_tokens,
)
from processing.schema.registry import cards, holders
from purse.settings import IssuerSettings, WalletSettings

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


def holder_app(engine: Engine, clock: Callable[[], float] | None = None, *, wallet: WalletSettings | None = None,
               issuer: IssuerSettings | None = None, public_url: str = "") -> Callable[..., Iterable[bytes]]:
    """The WSGI application on ``engine``'s database; ``wallet`` set up: the PassKit web service too."""
    import time

    now = clock or time.time
    passkit = PassKit(engine, wallet, issuer or IssuerSettings(), public_url, now) if wallet is not None else None

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        found = _TOKEN.match(path)
        if found:
            return _unsubscribe(found.group(1), method, start)
        if path == "/sms/inbound" and method == "POST":
            return _inbound(_form(environ), start)
        if passkit is not None and path.startswith("/wallet/v1/"):
            return passkit(environ, start, path[len("/wallet/v1/"):], method)
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


class PassKit:
    """Apple's PassKit web service for the issuer's passes (developer.apple.com, "Wallet Passes Web
    Service"): devices register a pass for updates, ask which changed, fetch the new one, unregister.
    Every call about a pass carries ``Authorization: ApplePass <token>``, the token in that pass."""

    _REGISTRATION = re.compile(r"^devices/([\w.-]{1,200})/registrations/([\w.-]{1,200})/(\d{12,19})$")
    _SERIALS = re.compile(r"^devices/([\w.-]{1,200})/registrations/([\w.-]{1,200})$")
    _PASS = re.compile(r"^passes/([\w.-]{1,200})/(\d{12,19})$")

    def __init__(self, engine: Engine, settings: WalletSettings, issuer: IssuerSettings, public_url: str,
                 now: Callable[[], float]) -> None:
        self.engine, self.s, self.issuer, self.public_url, self.now = engine, settings, issuer, public_url, now

    def __call__(self, environ: dict[str, Any], start: StartResponse, path: str, method: str) -> list[bytes]:
        if path == "log" and method == "POST":
            return self._answer(start, "200 OK")
        if m := self._REGISTRATION.match(path):
            if m.group(2) != self.s.pass_type_id:
                return self._answer(start, "404 Not Found")
            if not self._authorized(environ, m.group(3)):
                return self._answer(start, "401 Unauthorized")
            if method == "POST":
                return self._register(environ, start, m.group(1), m.group(3))
            if method == "DELETE":
                with self.engine.begin() as conn:
                    r = wallet_registrations.c
                    conn.execute(delete(wallet_registrations).where(r.device == m.group(1), r.serial == m.group(3)))
                return self._answer(start, "200 OK")
        elif (m := self._SERIALS.match(path)) and method == "GET":
            return self._serials(environ, start, m.group(1), m.group(2))
        elif (m := self._PASS.match(path)) and method == "GET":
            if m.group(1) != self.s.pass_type_id:
                return self._answer(start, "404 Not Found")
            token = self._authorized(environ, m.group(2))
            if not token:
                return self._answer(start, "401 Unauthorized")
            return self._pass(environ, start, m.group(2), token)
        return self._answer(start, "404 Not Found")

    @staticmethod
    def _answer(start: StartResponse, status: str, body: bytes = b"", kind: str = "application/json",
                headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        start(status, [("Content-Type", kind), ("Content-Length", str(len(body))), *(headers or [])])
        return [body]

    def _authorized(self, environ: dict[str, Any], serial: str) -> str | None:
        """The request's token if it is one handed out with this pass (compared by hash: constant time)."""
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme != "ApplePass" or not token:
            return None
        t = wallet_tokens.c
        with self.engine.connect() as conn:
            found = conn.execute(select(t.serial).where(t.token_hash == token_hash(token))).scalar()
        return token if found == serial else None

    def _register(self, environ: dict[str, Any], start: StartResponse, device: str, serial: str) -> list[bytes]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
            push_token = str(json.loads(environ["wsgi.input"].read(length) or b"{}")["pushToken"])[:200]
        except (ValueError, KeyError, TypeError):
            return self._answer(start, "400 Bad Request")
        r = wallet_registrations.c
        with self.engine.begin() as conn:
            known = conn.execute(select(r.id).where(r.device == device, r.serial == serial)).scalar()
            if known is not None:
                conn.execute(update(wallet_registrations).where(r.id == known).values(push_token=push_token))
                return self._answer(start, "200 OK")
            conn.execute(insert(wallet_registrations).values(device=device, serial=serial, push_token=push_token))
        return self._answer(start, "201 Created")

    def _serials(self, environ: dict[str, Any], start: StartResponse, device: str, pass_type: str) -> list[bytes]:
        since = parse_qs(environ.get("QUERY_STRING", "")).get("passesUpdatedSince", ["0"])[0]
        r, p = wallet_registrations.c, wallet_passes.c
        query = (select(p.serial, p.updated_at).join(wallet_registrations, r.serial == p.serial)
                 .where(r.device == device))
        if since.isdigit():
            query = query.where(p.updated_at > int(since))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(p.serial)).all() if pass_type == self.s.pass_type_id else []
        if not rows:
            return self._answer(start, "204 No Content")
        body = json.dumps({"serialNumbers": [s for s, _ in rows], "lastUpdated": str(max(u for _, u in rows))})
        return self._answer(start, "200 OK", body.encode())

    def _pass(self, environ: dict[str, Any], start: StartResponse, serial: str, token: str) -> list[bytes]:
        from email.utils import formatdate, parsedate_to_datetime

        from processing.holders.wallet import issue_pass

        p, c, h = wallet_passes.c, cards.c, holders.c
        with self.engine.begin() as conn:
            updated = conn.execute(select(p.updated_at).where(p.serial == serial)).scalar()
            since = environ.get("HTTP_IF_MODIFIED_SINCE")
            if updated is not None and since:
                try:
                    if int(parsedate_to_datetime(since).timestamp()) >= int(updated):
                        return self._answer(start, "304 Not Modified")
                except (TypeError, ValueError):
                    pass
            name = conn.execute(select(h.name).join(cards, c.holder_id == h.id).where(c.number == serial)).scalar()
            data = issue_pass(conn, serial, name or "", self.s, self.issuer, self.public_url, token=token)
            updated = conn.execute(select(p.updated_at).where(p.serial == serial)).scalar()
        return self._answer(start, "200 OK", data, "application/vnd.apple.pkpass",
                            [("Last-Modified", formatdate(int(updated or 0), usegmt=True))])
