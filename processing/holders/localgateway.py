"""A local SMS gateway that speaks SMS.ru's ``/sms/send`` API, and a local SMTP server: where the demo
delivers its messages (and the tests their SMS).

It is a real HTTP server on 127.0.0.1 (the standard library's), keeps every SMS it accepted, and answers
as SMS.ru does (JSON, ``status_code`` 100 for an accepted SMS). ``refuse`` makes it answer a number
with a refusal, and ``busy`` with a temporary 503, so the worker's retries can be shown.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

__all__ = ["LocalSmsGateway", "LocalSmtpServer", "ReceivedSms"]


@dataclass(frozen=True)
class ReceivedSms:
    to: str
    text: str
    sender: str


@dataclass
class LocalSmsGateway:
    api_id: str = "local-demo-key"
    received: list[ReceivedSms] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # numbers answered 207 ("cannot send to this number")
    busy: int = 0  # the next requests answered HTTP 503
    keep_in: Path | None = None  # a text file each accepted SMS is added to as it comes ("+phone: text")
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/sms/send"

    def start(self) -> LocalSmsGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, answer = gateway._answer(form)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.busy > 0:
            self.busy -= 1
            return 503, {"status": "ERROR", "status_code": 220, "status_text": "service busy"}
        if form.get("api_id") != self.api_id:
            return 200, {"status": "ERROR", "status_code": 200, "status_text": "wrong api_id"}
        to = form.get("to", "")
        if to in self.refuse:
            return 200, {"status": "OK", "status_code": 100, "sms": {to: {"status": "ERROR", "status_code": 207,
                                                                          "status_text": "cannot send to it"}}}
        self.received.append(ReceivedSms(to, form.get("msg", ""), form.get("from", "")))
        if self.keep_in is not None:
            with self.keep_in.open("a", encoding="utf-8") as out:
                out.write(f"+{to}: {form.get('msg', '')}\n")
        return 200, {"status": "OK", "status_code": 100,
                     "sms": {to: {"status": "OK", "status_code": 100, "sms_id": f"local-{len(self.received)}"}}}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class LocalSmtpServer:
    """A local SMTP server (aiosmtpd) on 127.0.0.1 that keeps every e-mail it accepts: the demo's mailbox.

    Plain SMTP without TLS or AUTH, as a relay on the same machine is (``smtp_security = "none"``);
    ``start`` passes other aiosmtpd options on (the tests add STARTTLS and AUTH, tests/support/holders.py)."""

    received: list[Any] = field(default_factory=list)  # email.message.EmailMessage, as parsed
    port: int = 0
    keep_in: Path | None = None  # an mbox file each accepted e-mail is added to as it comes
    _controller: Any = None

    async def accept(self, envelope: Any) -> None:
        """Keep one accepted e-mail (a subclass may hold it back first)."""
        from email import message_from_bytes, policy

        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        if self.keep_in is not None:
            import mailbox

            box = mailbox.mbox(self.keep_in)
            try:
                box.add(envelope.content)
                box.flush()
            finally:
                box.close()

    def start(self, **options: Any) -> LocalSmtpServer:
        import socket

        from aiosmtpd.controller import Controller

        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
                await server.accept(envelope)
                return "250 OK"

        with socket.socket() as probe:  # the controller connects to its own port once started: pick one
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
