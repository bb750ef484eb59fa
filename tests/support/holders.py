"""The holder-channel test world: holders with consent, a real SMTP server (aiosmtpd, with STARTTLS and
AUTH) and the local SMS gateway on 127.0.0.1, and the settings that point the worker at them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, update

from processing.holders.consent import record_consent
from processing.holders.localgateway import LocalSmsGateway, LocalSmtpServer
from processing.schema.holders import Channel, ConsentSource
from processing.schema.registry import cards, holders
from purse.settings import NotifySettings

SMTP_USER, SMTP_PASSWORD = "issuer", "smtp-secret"


def add_holder(engine: Engine, number: str, *, name: str = "Anna", email: str | None = "anna@example.org",
               phone: str | None = "+79123456789", language: str = "en",
               consent: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS)) -> int:
    """A holder of card ``number`` (registered already), consenting on ``consent``; its id."""
    with engine.begin() as conn:
        holder_id = int(conn.execute(insert(holders).values(name=name, email=email, phone=phone, language=language)
                                     .returning(holders.c.id)).scalar_one())
        conn.execute(update(cards).where(cards.c.number == number).values(holder_id=holder_id))
        for channel in consent:
            record_consent(conn, holder_id, channel, True, ConsentSource.CSV, dt.datetime.now(dt.UTC), "test")
    return holder_id


@dataclass
class SmtpServer(LocalSmtpServer):
    """The local SMTP server with STARTTLS (a self-signed certificate) and AUTH; ``stall`` holds DATA."""

    folder: Path = Path(".")
    stall: threading.Event | None = None
    in_data: int = 0  # DATA commands begun (a stalled one included)
    ca_file: Path = Path(".")

    async def accept(self, envelope: Any) -> None:
        import asyncio

        self.in_data += 1
        while self.stall is not None and not self.stall.is_set():
            await asyncio.sleep(0.05)
        await super().accept(envelope)

    def start(self, **options: Any) -> SmtpServer:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        cert, key = self.folder / "smtp.crt", self.folder / "smtp.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        self.ca_file = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticate(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(),
                                                                                      SMTP_PASSWORD.encode())
            return AuthResult(success=ok, handled=False)  # a refusal answers 535

        super().start(tls_context=context, require_starttls=True, authenticator=authenticate, auth_require_tls=True,
                      auth_exclude_mechanism=["LOGIN"], **options)  # aiosmtpd's LOGIN waits out smtplib's retry
        return self

    def settings(self, gateway: LocalSmsGateway, **overrides: Any) -> NotifySettings:
        """[notify] pointing at this server and ``gateway``."""
        base = NotifySettings(smtp_host="localhost", smtp_port=self.port, smtp_security="starttls",
                              smtp_user=SMTP_USER, smtp_ca_file=str(self.ca_file), sms_url=gateway.url,
                              sms_api="smsru", sms_sender="Coffee", sms_part_price=350, quiet_hours="",
                              stale_days=60,  # the test world processes its records a month after they were made
                              public_url="http://127.0.0.1:8025", mail_from="Coffee House <cards@coffee.example>")
        return dataclasses.replace(base, **overrides)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@contextmanager
def channels(tmp_path: Path) -> Iterator[tuple[SmtpServer, LocalSmsGateway]]:
    smtp, gateway = SmtpServer(folder=tmp_path).start(), LocalSmsGateway().start()
    try:
        yield smtp, gateway
    finally:
        smtp.stop()
        gateway.stop()


def notify_home(folder: Path, smtp: SmtpServer, gateway: LocalSmsGateway) -> Path:
    """A home whose smartpurse.toml points ``smartpurse notify`` at these servers, with no quiet hours."""
    folder.mkdir(parents=True, exist_ok=True)
    s = smtp.settings(gateway)
    (folder / "smartpurse.toml").write_text(
        "[issuer]\nname = \"Coffee House\"\n[notify]\n" + "".join(
            f"{name} = {value!r}\n".replace("'", '"') for name, value in (
                ("smtp_host", s.smtp_host), ("smtp_port", s.smtp_port), ("smtp_security", s.smtp_security),
                ("smtp_user", s.smtp_user), ("smtp_ca_file", s.smtp_ca_file), ("sms_url", s.sms_url),
                ("sms_sender", s.sms_sender), ("sms_part_price", s.sms_part_price), ("quiet_hours", ""),
                ("stale_days", 3650),  # the loads happened in 2023: old news by now, and still to be told here
                ("mail_from", s.mail_from))), encoding="utf-8")
    return folder
