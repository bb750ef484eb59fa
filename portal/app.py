"""The holder's page as a WSGI application: requests in, calls of the portal's modules, pages out.

Everything a request may change is a POST that carries its session's CSRF token; a POST without it
is refused before any handler runs. Every response carries the security headers below, and pages
of a session are never cached. Errors are pages in the holder's language, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, abort, g, redirect, render_template, request
from sqlalchemy import Connection, Engine
from werkzeug.exceptions import HTTPException

from portal import actions, audit
from portal.login import Challenge, Identity, request_code, verify_code
from portal.overview import CardView, holder_card, holder_cards, holder_view, prizes_won
from portal.sender import CodeSender
from portal.sessions import csrf_ok, end_session, find_session, holder_ids, log_in, open_session, set_language
from portal.statement import KINDS, MAX_LINES, find_font, statement_csv, statement_lines, statement_pdf
from portal.subjects import read_subject
from portal.words import LANGUAGES, WORDS, pick_language
from processing.holders.figures import processed_as_of
from processing.holders.render import date_text, when_text
from processing.presentation import Presentation
from purse.errors import UserError
from purse.settings import Settings

__all__ = ["create_app", "COOKIE", "SECURITY_HEADERS"]

# "__Host-": the browser keeps it only if it is Secure, for this host alone, for the whole site (RFC 6265bis).
COOKIE = "__Host-smartpurse"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Strict-Transport-Security": "max-age=31536000",  # ignored over plain HTTP; the proxy serves HTTPS
}
MAX_FORM_BYTES = 16 * 1024


def create_app(engine: Engine, settings: Settings, *, sender: CodeSender | None = None,
               clock: Callable[[], float] = time.time) -> Flask:
    """The portal on ``engine``'s database; ``sender`` delivers the login codes (one is started when None)."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_FORM_BYTES, TEMPLATES_AUTO_RELOAD=False)
    s, issuer, notify = settings.portal, settings.issuer, settings.notify
    zone = ZoneInfo(notify.timezone)
    codes = sender or CodeSender(engine, notify, issuer.display_name, s.code_minutes, issuer.locale, clock)
    app.extensions["smartpurse_sender"] = codes

    # -- per request: the clock, the client, the session, the language -----------------------------------
    @app.before_request
    def load_session() -> Response | None:
        g.now, g.client, g.new_cookie = int(clock()), (request.remote_addr or "-")[:64], None
        g.language = issuer.locale if issuer.locale in WORDS else "en"  # until the session says (errors need it)
        with engine.begin() as conn:
            g.session = find_session(conn, request.cookies.get(COOKIE, ""), g.now, s)
        g.language = (g.session.language if g.session and g.session.language else
                      pick_language(request.headers.get("Accept-Language", ""), issuer.locale))
        if request.method == "POST" and not csrf_ok(g.session, request.form.get("csrf")):
            _log("csrf-refused", detail=f"{request.method} {request.path}")
            return _page("message.html", 403, text=_w("csrf"), again="/login")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["Cache-Control"] = "no-store"
        if g.get("new_cookie"):
            response.set_cookie(COOKIE, g.new_cookie, secure=True, httponly=True, samesite="Strict", path="/")
        elif g.get("drop_cookie"):
            response.delete_cookie(COOKIE, secure=True, httponly=True, samesite="Strict", path="/")
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        key = {400: "bad_request", 404: "not_found", 405: "method", 413: "too_large"}.get(error.code or 500,
                                                                                          "server_error")
        return _page("message.html", error.code or 500, text=_w(key))

    @app.errorhandler(Exception)
    def server_error(error: Exception) -> Response:
        audit.log.exception("the portal failed on %s %s", request.method, request.path)
        return _page("message.html", 500, text=_w("server_error"))

    def _w(key: str, **values: Any) -> str:
        return WORDS[g.language][key].format(**values)

    def _log(event: str, **kw: Any) -> None:
        with engine.begin() as conn:
            audit.record(conn, g.now, event, g.client, **kw)

    def _page(template: str, status: int = 200, **context: Any) -> Response:
        look = Presentation.for_issuer(issuer, g.language)
        body = render_template(template, w=WORDS[g.language], lang=g.language, issuer=issuer.display_name,
                               session=g.get("session"), money=look.money, when=_when, day=_day,
                               languages=LANGUAGES, path=request.path, **context)
        return Response(body, status, content_type="text/html; charset=utf-8")

    def _when(unix: int) -> str:
        return when_text(unix, Presentation.for_issuer(issuer, g.language), zone)

    def _day(unix: int) -> str:
        return date_text(unix, Presentation.for_issuer(issuer, g.language), zone)

    def _anonymous_session() -> None:
        """A session for the login forms' CSRF token, when the browser has none."""
        if g.session is None:
            with engine.begin() as conn:
                g.new_cookie, g.session = open_session(conn, g.client, g.now, s, g.language)

    def _holders() -> list[int]:
        if g.session is None or not g.session.logged_in:
            abort(redirect("/login"))
        with engine.connect() as conn:
            return holder_ids(conn, g.session)

    def _card(number: str) -> CardView:
        ids = _holders()
        with engine.connect() as conn:
            card = holder_card(conn, ids, number)
        if card is None:
            _log("not-theirs", holder_id=g.session.holder_id, detail=f"card …{number[-4:]}"[:60])
            abort(404)
        return card

    # -- logging in ---------------------------------------------------------------------------------------
    @app.get("/")
    def home() -> Any:
        return redirect("/cards" if g.session is not None and g.session.logged_in else "/login")

    @app.get("/login")
    def login_form() -> Any:
        if g.session is not None and g.session.logged_in:
            return redirect("/cards")
        _anonymous_session()
        # The cookie is Secure: over plain HTTP a browser keeps it from localhost alone, and the login would
        # silently not stick. Say so, rather than send the holder round in circles.
        insecure = request.scheme != "https" and request.host.rsplit(":", 1)[0] not in ("localhost", "[::1]")
        return _page("login.html", insecure=insecure)

    @app.post("/login")
    def login() -> Any:
        subject = read_subject(request.form.get("identifier", ""), issuer.phone_region)
        if subject is None:
            _log("bad-input", detail="login: not a card number or a phone")
            return _page("login.html", 400, error=_w("bad_identifier"))
        with engine.begin() as conn:
            asked = request_code(conn, subject, g.client, g.now, s)
            if isinstance(asked, Challenge):
                audit.record(conn, g.now, "code-asked", g.client, subject=subject.masked,
                             detail="queued" if asked.send else "nobody holds it: no code sent")
            else:
                audit.record(conn, g.now, "login-refused", g.client, subject=subject.masked, detail=asked.reason)
        if not isinstance(asked, Challenge):
            key = "locked" if asked.reason == "locked" else "throttled"
            return _page("login.html", 429, error=_w(key, minutes=max(1, -(-asked.wait // 60))))
        if asked.send is not None:
            codes.submit(asked.send, g.client, subject.masked)
        return _page("code.html", token=asked.token, note=_w("code_sent", minutes=s.code_minutes))

    @app.post("/login/code")
    def login_code() -> Any:
        token, code = request.form.get("token", "")[:100], request.form.get("code", "")[:20]
        with engine.begin() as conn:
            found = verify_code(conn, token, code, g.client, g.now, s)
            if isinstance(found, Identity):
                g.new_cookie, g.session = log_in(conn, g.session, found, g.client, g.now)
                audit.record(conn, g.now, "login", g.client, holder_id=found.holder_id,
                             subject=f"phone …{found.phone[-4:]}" if found.phone else None)
            else:
                audit.record(conn, g.now, "code-refused", g.client, detail=found.reason)
        if isinstance(found, Identity):
            return redirect("/cards", 303)
        if found.reason == "locked":
            return _page("code.html", 429, token=token, error=_w("locked", minutes=max(1, -(-found.wait // 60))))
        return _page("code.html", 401, token=token, error=_w("wrong_code"))

    @app.post("/logout")
    def logout() -> Any:
        with engine.begin() as conn:
            end_session(conn, g.session)
            audit.record(conn, g.now, "logout", g.client, holder_id=g.session.holder_id)
        g.session, g.drop_cookie = None, True
        return _page("message.html", text=_w("logged_out"), again="/login")

    @app.get("/language/<code>")
    def language(code: str) -> Any:
        if code not in LANGUAGES:
            abort(404)
        g.language = code
        _anonymous_session()
        with engine.begin() as conn:
            set_language(conn, g.session, code)
        back = request.args.get("next", "/")
        return redirect(back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/")

    # -- what the holder sees -------------------------------------------------------------------------------
    @app.get("/cards")
    def cards_page() -> Any:
        ids = _holders()
        with engine.connect() as conn:
            cards, holder, as_of = holder_cards(conn, ids), holder_view(conn, ids), processed_as_of(conn)
        return _page("cards.html", cards=cards, holder=holder, as_of=as_of)

    @app.get("/cards/<number>")
    def card_page(number: str) -> Any:
        card = _card(number)
        with engine.connect() as conn:
            prizes, as_of = prizes_won(conn, card.number), processed_as_of(conn)
        return _page("card.html", card=card, prizes=prizes, as_of=as_of, wallet=bool(settings.wallet.pass_type_id),
                     google=_google_link(card))

    def _filters() -> tuple[dt.date | None, dt.date | None, frozenset[str]]:
        try:
            start = dt.date.fromisoformat(request.args["from"]) if request.args.get("from") else None
            end = dt.date.fromisoformat(request.args["to"]) if request.args.get("to") else None
        except ValueError:
            _log("bad-input", detail="statement: a date not YYYY-MM-DD")
            abort(_page("message.html", 400, text=_w("bad_date")))
        kinds = frozenset(request.args.getlist("kind")) - {""}
        if not kinds <= set(KINDS):
            _log("bad-input", detail="statement: unknown kind")
            abort(_page("message.html", 400, text=_w("bad_kind")))
        return start, end, kinds

    @app.get("/cards/<number>/statement")
    def statement_page(number: str) -> Any:
        card = _card(number)
        start, end, kinds = _filters()
        with engine.connect() as conn:
            lines = statement_lines(conn, card.number, start, end, kinds)
        return _page("statement.html", card=card, lines=lines, start=start, end=end, kinds=kinds, all_kinds=KINDS,
                     query=request.query_string.decode("ascii", "replace"), cut=len(lines) >= MAX_LINES)

    @app.get("/cards/<number>/statement.<fmt>")
    def statement_file(number: str, fmt: str) -> Any:
        if fmt not in ("csv", "pdf"):
            abort(404)
        card = _card(number)
        start, end, kinds = _filters()
        look, words = Presentation.for_issuer(issuer, g.language), WORDS[g.language]
        with engine.connect() as conn:
            lines = statement_lines(conn, card.number, start, end, kinds)
        _log("statement", holder_id=g.session.holder_id, detail=f"{fmt} card …{card.number[-4:]}")
        name = f"statement-{card.number[-4:]}.{fmt}"
        if fmt == "csv":
            data, kind = statement_csv(lines, look, zone, words), "text/csv; charset=utf-8"
        else:
            try:
                font = find_font(s.pdf_font)
            except UserError as e:
                audit.log.error("%s", e)
                abort(_page("message.html", 503, text=_w("server_error")))
            span = " ".join([f"{words['from']} {start}" if start else "", f"{words['to']} {end}" if end else "",
                             ", ".join(words[f"kind_{k}"] for k in sorted(kinds))]).strip()
            data = statement_pdf(lines, title=f"{issuer.display_name}: {words['statement']} {card.masked}",
                                 subtitle=span, look=look, zone=zone, words=words, font=font)
            kind = "application/pdf"
        return Response(data, 200, content_type=kind,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # -- what the holder can do -------------------------------------------------------------------------------
    @app.get("/cards/<number>/lost")
    def lost_form(number: str) -> Any:
        card = _card(number)
        with engine.connect() as conn:
            as_of = processed_as_of(conn)
        return _page("lost.html", card=card, as_of=as_of)

    def _act(card: CardView, what: str, act: Callable[[], object], event: str, detail: str, done: str) -> Response:
        """Run a holder's action on ``card``: its page when done, the refusal's (400) when the rules say no."""
        try:
            act()
        except UserError as e:
            _log("bad-input", holder_id=card.holder_id, detail=f"{what}: {e}")
            return _page("message.html", 400, text=str(e), again=f"/cards/{card.number}")
        _log(event, holder_id=card.holder_id, detail=f"card …{card.number[-4:]}{detail}")
        return _page("message.html", text=_w(done), again=f"/cards/{card.number}")

    @app.post("/cards/<number>/lost")
    def lost(number: str) -> Any:
        card, why = _card(number), request.form.get("why", "")
        return _act(card, "lost", lambda: actions.report_lost(engine, card, why, g.now), "card-lost", f" {why}",
                    "lost_done")

    @app.get("/cards/<number>/payout")
    def payout_form(number: str) -> Any:
        return _page("payout.html", card=_card(number))

    @app.post("/cards/<number>/payout")
    def payout(number: str) -> Any:
        card = _card(number)
        return _act(card, "payout", lambda: actions.ask_payout(engine, card, g.now), "payout-asked", "",
                    "payout_done")

    @app.get("/cards/<number>/wallet.pkpass")
    def wallet_pass(number: str) -> Any:
        from processing.holders.wallet import issue_pass

        card = _card(number)
        if not settings.wallet.pass_type_id:
            abort(404)
        try:
            with engine.begin() as conn:
                data = issue_pass(conn, card.number, _holder_name(conn, card), settings.wallet, issuer,
                                  notify.public_url)
        except UserError as e:
            audit.log.error("Wallet pass for card …%s: %s", card.number[-4:], e)
            abort(_page("message.html", 503, text=_w("server_error")))
        _log("wallet", holder_id=card.holder_id, detail=f"card …{card.number[-4:]}")
        return Response(data, 200, content_type="application/vnd.apple.pkpass",
                        headers={"Content-Disposition": f'attachment; filename="card-{card.number[-4:]}.pkpass"'})

    def _holder_name(conn: Connection, card: CardView) -> str:
        holder = holder_view(conn, [card.holder_id] if card.holder_id else [])
        return holder.name if holder else ""

    def _google_link(card: CardView) -> str | None:
        if not settings.wallet.google_issuer_id:
            return None
        from processing.holders.wallet import google_save_link, pass_content

        try:
            with engine.connect() as conn:
                return google_save_link(pass_content(conn, card.number, _holder_name(conn, card)), settings.wallet,
                                        issuer)
        except UserError as e:
            audit.log.error("Google Wallet link for card …%s: %s", card.number[-4:], e)
            return None

    @app.get("/consent")
    def consent_form() -> Any:
        ids = _holders()
        with engine.connect() as conn:
            holder = holder_view(conn, ids)
        return _page("consent.html", holder=holder)

    @app.post("/consent")
    def consent() -> Any:
        ids = _holders()
        if not ids:
            abort(404)
        wanted = {ch: request.form.get(ch) == "on" for ch in ("email", "sms")}
        changed = actions.change_consent(engine, ids[0], wanted, g.now)
        if changed:
            _log("consent", holder_id=ids[0], detail=", ".join(f"{c} {'on' if wanted[c] else 'off'}" for c in changed))
        with engine.connect() as conn:
            holder = holder_view(conn, ids)
        return _page("consent.html", holder=holder, note=_w("saved"))

    return app
