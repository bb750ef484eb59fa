"""The holder's page in tests: the real app under waitress on 127.0.0.1 in a thread, a clock the test moves,
a world of two holders with cards, points and processed batches, and a browser-like HTTP client.

The client keeps its one cookie itself: the standard library's cookie jar (rightly) never sends a Secure
cookie over plain HTTP, and a test must see exactly what a browser is sent and sends back.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message

from sqlalchemy import Engine, select

from processing.holders.localgateway import LocalSmsGateway
from processing.run import name_programs
from processing.schema.portal import portal_log
from processing.synthetic import SynthCard
from purse.loyalty.program import Prize, Program, Tier
from purse.settings import IssuerSettings, NotifySettings, PortalSettings, Settings
from support.backoffice import NOW, World
from support.holders import SmtpServer, add_holder

COFFEE = Program(program_id=1, name="Coffee club", prize=Prize(100, "reset", "A free coffee"),
                 tiers=(Tier("Silver", 0, 300), Tier("Gold", 100_000, 500)), expiry_days=90)


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Holders:
    """Anna (a card with 70 points, 30 short of the prize) and Boris (another holder, who won the prize)."""

    anna: SynthCard
    boris: SynthCard
    anna_email: str = "anna@example.org"
    boris_email: str = "boris@example.org"


def two_holders(w: World) -> Holders:
    w.merchant(42, name="Cafe North")
    t = w.terminal(7, 42)
    anna, boris = w.card(1, load=50_000), w.card(2, load=10_000)
    w.register_card(anna)
    w.register_card(boris)
    add_holder(w.engine, anna.number)
    add_holder(w.engine, boris.number, name="Boris", email="boris@example.org", phone="+79123456780")
    t.purchase(anna, 1_200, NOW + 10, program_id=1, earned=30)
    t.purchase(anna, 800, NOW + 20, program_id=1, earned=40)
    t.purchase(boris, 100, NOW + 30, program_id=1, earned=110, prizes=1, points_after=10)  # 110 ≥ 100: a prize
    with w.engine.begin() as conn:
        name_programs(conn, {1: COFFEE})
    w.ingest_loads()
    w.process(t.close(w.tmp / "b1.spb"))
    return Holders(anna, boris)


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def field(self, name: str) -> str:
        """The value of the page's hidden input ``name`` (the CSRF token, the login token)."""
        found = re.search(rf'name="{name}" value="([^"]*)"', self.text)
        assert found is not None, f"no {name} field in a {self.status} page"
        return found.group(1)


@dataclass
class Client:
    """One browser: its cookie, and the CSRF token of the last page that had one."""

    base: str
    cookie: str | None = None
    csrf: str = ""
    set_cookies: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, form: dict[str, str] | list[tuple[str, str]] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        url = urllib.parse.urlsplit(self.base)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        body = urllib.parse.urlencode(form) if form is not None else None
        sent = {**({"Cookie": f"__Host-smartpurse={self.cookie}"} if self.cookie else {}),
                **({"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}),
                **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        answer = conn.getresponse()
        reply = Reply(answer.status, answer.headers, answer.read())
        conn.close()
        for value in answer.headers.get_all("Set-Cookie") or []:
            self.set_cookies.append(value)
            name, _, rest = value.partition("=")
            if name == "__Host-smartpurse":
                token = rest.split(";")[0]
                self.cookie = token or None
        if answer.headers.get_content_type() == "text/html" and 'name="csrf"' in reply.text:
            self.csrf = reply.field("csrf")
        return reply

    def get(self, path: str, **kw: object) -> Reply:
        return self.request("GET", path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, form: dict[str, str] | None = None, *, csrf: bool = True) -> Reply:
        data = dict(form or {})
        if csrf:
            data.setdefault("csrf", self.csrf)
        return self.request("POST", path, data)

    def ask_code(self, identifier: str) -> Reply:
        self.get("/login")
        return self.post("/login", {"identifier": identifier})

    def log_in(self, identifier: str, smtp: SmtpServer, address: str) -> Reply:
        """Ask for a code, read it from the e-mail the SMTP server received, log in with it."""
        had = len(mails_to(smtp, address))
        asked = self.ask_code(identifier)
        assert asked.status == 200, asked.text
        code = code_in(wait_mail(smtp, address, had + 1)[-1])
        return self.post("/login/code", {"token": asked.field("token"), "code": code})


def mails_to(smtp: SmtpServer, address: str) -> list[Message]:
    return [m for m in smtp.received if m["To"] == address]


def wait_mail(smtp: SmtpServer, address: str, n: int, timeout: float = 15.0) -> list[Message]:
    deadline = time.monotonic() + timeout
    while len(mails_to(smtp, address)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    got = mails_to(smtp, address)
    assert len(got) >= n, f"{len(got)} e-mails to {address}, not {n}"
    return got


def code_in(message: Message) -> str:
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    found = re.search(r"\b(\d{6})\b", body.get_content())
    assert found is not None
    return found.group(1)


@dataclass
class Portal:
    """A served portal on a world of two holders, the servers their codes reach, the clock it reads."""

    world: World
    holders: Holders
    smtp: SmtpServer
    gateway: LocalSmsGateway
    clock: Clock
    url: str

    def client(self) -> Client:
        return Client(self.url)



def settings_for(notify: NotifySettings, **portal: object) -> Settings:
    return Settings(issuer=IssuerSettings(name="Coffee House"), notify=notify,
                    portal=PortalSettings(**portal))  # type: ignore[arg-type]


@contextmanager
def portal_server(engine: Engine, settings: Settings, clock: Clock) -> Iterator[str]:
    """The portal served by waitress on a free port of 127.0.0.1; its base URL."""
    from waitress import create_server

    from portal.app import create_app

    app = create_app(engine, settings, clock=clock)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # select() on the sockets close() just closed under it
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    finally:
        stopping.set()
        server.task_dispatcher.shutdown()  # type: ignore[union-attr]
        server.close()
        thread.join(timeout=10)
        app.extensions["smartpurse_sender"].stop()


def logged(engine: Engine, event: str) -> list[str]:
    """The details of the portal log's ``event`` rows, oldest first."""
    p = portal_log.c
    with engine.connect() as conn:
        return [str(d) for d in conn.execute(select(p.detail).where(p.event == event).order_by(p.id)).scalars()]
