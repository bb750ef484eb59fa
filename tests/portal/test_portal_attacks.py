"""The attacks on a login by one-time code, each tried against the served portal: refused, and logged.

Brute force of codes, codes replayed and expired, card numbers tried to see which exist, a session
reaching for another holder's card, forms without their CSRF token, SQL and HTML in every field.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from sqlalchemy import func, select
from stdnum import luhn
from support.portal import Client, Portal, code_in, logged, mails_to, wait_mail

from portal.app import COOKIE, SECURITY_HEADERS
from processing.schema.holders import consents, holder_requests
from processing.schema.portal import portal_codes, portal_sessions
from processing.schema.registry import cards, holders


def _states(p: Portal) -> dict[str, str]:
    with p.world.engine.connect() as conn:
        return {str(n): str(s) for n, s in conn.execute(select(cards.c.number, cards.c.state))}


def _counts(p: Portal) -> tuple[int, ...]:
    with p.world.engine.connect() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (consents, holder_requests, holders, cards))


def _blank(text: str) -> str:
    """A page with its random tokens blanked: what stays is what the visitor learns."""
    return re.sub(r'value="[A-Za-z0-9_-]{20,}"', 'value=""', text)


def test_five_wrong_codes_lock_the_card_and_the_address_even_for_the_right_code(portal: Portal) -> None:
    p, anna = portal, portal.holders.anna.number
    browser = p.client()
    asked = browser.ask_code(anna)
    code = code_in(wait_mail(p.smtp, p.holders.anna_email, 1)[-1])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        refused = browser.post("/login/code", {"token": asked.field("token"), "code": wrong})
        assert refused.status == 401 and "not right" in refused.text
    locked = browser.post("/login/code", {"token": asked.field("token"), "code": code})
    assert locked.status == 429 and "Too many wrong codes" in locked.text
    assert browser.get("/cards").status == 302  # not logged in
    assert logged(p.world.engine, "code-refused") == ["wrong"] * 5 + ["locked"]
    # the address is locked too: the next card it tries gets no code
    other = browser.ask_code(p.holders.boris.number)
    assert other.status == 429 and "Too many wrong codes" in other.text
    assert mails_to(p.smtp, p.holders.boris_email) == []
    assert logged(p.world.engine, "login-refused") == ["locked"]
    # and the card is locked from any address (as a card nobody holds would be, after five wrong codes) ...
    assert Client(p.url).ask_code(anna).status == 429
    # ... until the lock has run out: then a new code logs Anna in
    p.clock.now += 16 * 60
    assert browser.log_in(anna, p.smtp, p.holders.anna_email).status == 303
    assert browser.get("/cards").status == 200


def test_a_card_nobody_holds_gets_the_same_answer_as_a_real_one(portal: Portal) -> None:
    p = portal
    unknown = "627700999999999" + luhn.calc_check_digit("627700999999999")
    real, fake = p.client(), p.client()
    a, b = real.ask_code(p.holders.boris.number), fake.ask_code(unknown)
    assert (a.status, _blank(a.text)) == (b.status, _blank(b.text))
    wait_mail(p.smtp, p.holders.boris_email, 1)
    assert len(p.smtp.received) == 1  # nothing was sent for the unknown card
    wrong_real = real.post("/login/code", {"token": a.field("token"), "code": "000000"})
    wrong_fake = fake.post("/login/code", {"token": b.field("token"), "code": "000000"})
    assert (wrong_real.status, _blank(wrong_real.text)) == (wrong_fake.status, _blank(wrong_fake.text))
    # the tables hold no list of the numbers tried: a subject is a hash, the log masks it
    with p.world.engine.connect() as conn:
        subjects = conn.execute(select(portal_codes.c.subject)).scalars().all()
    assert unknown not in " ".join(subjects) and all(len(s) == 64 for s in subjects)
    assert any("nobody holds it" in d for d in logged(p.world.engine, "code-asked"))


def test_a_code_logs_in_once_and_not_after_it_expired(portal: Portal) -> None:
    p = portal
    first = p.client()
    asked = first.ask_code(p.holders.anna.number)
    code = code_in(wait_mail(p.smtp, p.holders.anna_email, 1)[-1])
    assert first.post("/login/code", {"token": asked.field("token"), "code": code}).status == 303
    thief = p.client()  # the same token and code, replayed from another browser
    thief.get("/login")
    replayed = thief.post("/login/code", {"token": asked.field("token"), "code": code})
    assert replayed.status == 401 and thief.get("/cards").status == 302
    late = p.client()
    asked = late.ask_code(p.holders.anna.number)
    code = code_in(wait_mail(p.smtp, p.holders.anna_email, 2)[-1])
    p.clock.now += 10 * 60  # [portal] code_minutes = 10
    expired = late.post("/login/code", {"token": asked.field("token"), "code": code})
    assert expired.status == 401 and late.get("/cards").status == 302
    assert logged(p.world.engine, "code-refused") == ["replayed", "expired"]


def test_asking_for_code_after_code_is_limited(portal: Portal) -> None:
    p = portal
    browser = p.client()
    for _ in range(3):  # [portal] codes_per_hour
        assert browser.ask_code(p.holders.anna.number).status == 200
    again = browser.ask_code(p.holders.anna.number)
    assert again.status == 429 and "Too many codes asked for" in again.text
    assert len(wait_mail(p.smtp, p.holders.anna_email, 3)) == 3
    assert logged(p.world.engine, "login-refused") == ["throttled"]


def test_a_session_reaches_its_own_holders_cards_only(portal: Portal) -> None:
    p, boris = portal, portal.holders.boris.number
    before = p.client()
    before.get("/login")
    planted = before.cookie  # a cookie an attacker planted before the login ...
    anna = Client(p.url, cookie=planted)
    assert anna.log_in(p.holders.anna.number, p.smtp, p.holders.anna_email).status == 303
    assert anna.cookie != planted  # ... is not the holder's session: logging in made a new one
    assert Client(p.url, cookie=planted).get("/cards").status == 302
    assert anna.get("/cards").status == 200 and boris not in anna.get("/cards").text
    for path in (f"/cards/{boris}", f"/cards/{boris}/statement", f"/cards/{boris}/statement.csv",
                 f"/cards/{boris}/statement.pdf", f"/cards/{boris}/lost", f"/cards/{boris}/payout"):
        assert anna.get(path).status == 404, path
    anna.get("/cards")
    assert anna.post(f"/cards/{boris}/lost", {"why": "stolen"}).status == 404
    assert anna.post(f"/cards/{boris}/payout").status == 404
    assert _states(p)[boris] == "issued"
    assert len(logged(p.world.engine, "not-theirs")) == 8
    # Boris's own session cannot be borrowed by guessing: a made-up cookie is nobody's
    assert Client(p.url, cookie="A" * 43).get(f"/cards/{boris}").status == 302
    session = anna.cookie
    anna.post("/logout")
    assert anna.cookie is None  # the browser is told to drop it ...
    assert Client(p.url, cookie=session).get("/cards").status == 302  # ... and a copy of it is worth nothing


def test_a_form_without_its_csrf_token_is_refused(portal: Portal) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    other = p.client()
    other.get("/login")
    before = _counts(p)
    assert anna.post(f"/cards/{number}/lost", {"why": "lost"}, csrf=False).status == 403
    assert anna.post(f"/cards/{number}/lost", {"why": "lost", "csrf": other.csrf}).status == 403
    assert anna.post(f"/cards/{number}/payout", {"csrf": ""}).status == 403
    assert anna.post("/consent", {"email": "", "sms": ""}, csrf=False).status == 403
    assert anna.post("/logout", csrf=False).status == 403 and anna.get("/cards").status == 200
    fresh = p.client()
    assert fresh.post("/login", {"identifier": number}, csrf=False).status == 403  # no session, no code
    assert _states(p)[number] == "issued" and _counts(p) == before
    assert len(logged(p.world.engine, "csrf-refused")) == 6


PAYLOADS = ("' OR '1'='1", "1; DROP TABLE cards; --", "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
            "6277000000000011' --", "%00", "😀" * 10, "x" * 5000)


def test_sql_and_html_in_every_field_are_refused_and_never_echoed_raw(portal: Portal) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    states, counts = _states(p), _counts(p)
    pages = []
    for bad in PAYLOADS:
        p.clock.now += 16 * 60  # each round's wrong code below counts against 127.0.0.1: let its lock run out
        visitor = p.client()
        pages.append(reply := visitor.ask_code(bad))
        assert reply.status == 400 and "Enter a card number" in reply.text
        visitor.get("/login")
        pages.append(reply := visitor.post("/login/code", {"token": bad, "code": bad}))
        assert reply.status == 401
        for name in ("from", "to", "kind"):
            pages.append(reply := anna.get(f"/cards/{number}/statement?{urlencode({name: bad})}"))
            assert reply.status == 400, name
        pages.append(reply := anna.post(f"/cards/{number}/lost", {"why": bad}))
        assert reply.status == 400
        pages.append(reply := anna.post("/consent", {"email": bad, "sms": bad}))
        assert reply.status == 200  # anything but "on" is "off": consent stays as the holder left it
        pages.append(anna.get(f"/language/{quote(bad, safe='')}"))
        assert pages[-1].status == 404
        pages.append(anna.get(f"/cards/{quote(bad, safe='')}"))
        assert pages[-1].status == 404
    assert anna.get("/language/ru?next=//evil.example/").headers["Location"] == "/"  # no open redirect
    for page in pages:
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert _states(p) == states
    assert _counts(p)[1:] == counts[1:]  # no request, holder or card appeared
    with p.world.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cards)).scalar_one() == 2  # the table is there
        assert conn.execute(select(func.count()).select_from(portal_sessions)).scalar_one() > 0
    refused = logged(p.world.engine, "bad-input")
    assert sum("not a card number" in d for d in refused) == len(PAYLOADS)
    assert sum("statement" in d for d in refused) == 3 * len(PAYLOADS)
    assert sum(d.startswith("lost:") for d in refused) == len(PAYLOADS)


def test_every_page_carries_the_security_headers_and_the_cookie_its_flags(portal: Portal) -> None:
    p = portal
    browser = p.client()
    page = browser.get("/login")
    assert 'id="insecure"' in page.text  # plain HTTP to 127.0.0.1: the browser would drop the Secure cookie
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert page.headers["Cache-Control"] == "no-store"
    (cookie,) = browser.set_cookies
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert cookie.startswith(f"{COOKIE}=") and {"secure", "httponly", "path=/", "samesite=strict"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    css = browser.get("/static/portal.css")
    assert css.status == 200 and css.headers["X-Content-Type-Options"] == "nosniff"
    missing = browser.get("/nothing-here")
    assert missing.status == 404 and "Traceback" not in missing.text and "Not found" in missing.text
    assert browser.request("PUT", "/login").status == 405
    big = browser.post("/login", {"identifier": "1" * 20_000})
    assert big.status == 413


def test_a_request_the_server_cannot_read_gets_a_page_not_a_traceback(portal: Portal) -> None:
    """A form body that is no form (a multipart body without its end): read as an empty form, so refused as a
    form without its token, with the page that says so."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(portal.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    conn.request("POST", "/login", body=b"--x\r\nContent-Disposition: broken\r\n\r\nno end",
                 headers={"Content-Type": "multipart/form-data; boundary=x"})
    answer = conn.getresponse()
    text = answer.read().decode()
    assert (answer.status, "This form has expired" in text, "Traceback" in text) == (403, True, False)
