"""The channels a message leaves by: e-mail through an SMTP server, SMS through an HTTP gateway.

Both are configured in ``[notify]`` (docs/holders.md); secrets come from the environment variables
it names. A send either returns, or raises ``DeliveryError`` saying whether trying again later may
help (``temporary``: a server down, a 4xx SMTP answer, a gateway's 5xx) or not (a refused address, a
rejected key). The built-in SMS gateway API is SMS.ru's ``/sms/send`` (a well-known Russian gateway);
any gateway taking a form POST is described by ``sms_api = "form"`` and ``sms_params``.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from processing.holders.render import Rendered
from purse.settings import NotifySettings

__all__ = ["DeliveryError", "ChannelMissing", "EmailChannel", "SmsGateway"]

TIMEOUT = 30.0
# SMS.ru status codes that may pass if tried later (220: the service is busy); the others are final.
_SMSRU_TEMPORARY = frozenset({220})


class DeliveryError(Exception):
    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason, self.temporary = reason, temporary


class ChannelMissing(Exception):
    """The channel is not set up in ``[notify]``: its messages are suppressed with this reason."""


def _secret(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise DeliveryError(f"{what}: set the environment variable {name}", temporary=False)
    return value


class EmailChannel:
    def __init__(self, settings: NotifySettings) -> None:
        if not settings.smtp_host:
            raise ChannelMissing("no SMTP server set up ([notify] smtp_host)")
        if settings.smtp_security not in ("starttls", "tls", "none"):
            raise ChannelMissing(f"[notify] smtp_security is starttls, tls or none, not {settings.smtp_security!r}")
        self.s = settings

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.s.smtp_ca_file or None)

    def message(self, to: str, rendered: Rendered, unsubscribe_url: str) -> EmailMessage:
        """The e-mail: plain and HTML parts, and the one-click unsubscribe headers (RFC 2369, RFC 8058) when
        ``unsubscribe_url`` is given."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.s.mail_from, to, rendered.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.s.mail_from.rpartition("@")[2].strip("> ") or "localhost")
        if unsubscribe_url:  # a message the holder asked for (a login code) has nothing to unsubscribe from
            msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    def send(self, to: str, rendered: Rendered, unsubscribe_url: str) -> None:
        msg = self.message(to, rendered, unsubscribe_url)
        s = self.s
        try:
            if s.smtp_security == "tls":
                server: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=TIMEOUT,
                                                        context=self._context())
            else:
                server = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT)
            with server:
                if s.smtp_security == "starttls":
                    server.starttls(context=self._context())
                if s.smtp_user:
                    server.login(s.smtp_user, _secret(s.smtp_password_env, "the SMTP password"))
                server.send_message(msg)
        except smtplib.SMTPRecipientsRefused as e:
            code, answer = next(iter(e.recipients.values()))
            said = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
            raise DeliveryError(f"the SMTP server refused {to}: {code} {said}",
                                temporary=400 <= code < 500) from None
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"the SMTP server refused the login: {e.smtp_code}", temporary=False) from None
        except smtplib.SMTPResponseException as e:
            said = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
            raise DeliveryError(f"the SMTP server answered {e.smtp_code} {said}",
                                temporary=400 <= e.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as e:  # connection refused, reset, TLS failures, timeouts
            raise DeliveryError(f"cannot reach the SMTP server {s.smtp_host}:{s.smtp_port}: {e}",
                                temporary=True) from None


class SmsGateway:
    def __init__(self, settings: NotifySettings) -> None:
        if not settings.sms_url:
            raise ChannelMissing("no SMS gateway set up ([notify] sms_url)")
        if settings.sms_api not in ("smsru", "form"):
            raise ChannelMissing(f"[notify] sms_api is smsru or form, not {settings.sms_api!r}")
        self.s = settings

    def _post(self, body: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(self.s.sms_url, data=urllib.parse.urlencode(body).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (TimeoutError, urllib.error.URLError, OSError) as e:
            raise DeliveryError(f"cannot reach the SMS gateway {self.s.sms_url}: {e}", temporary=True) from None

    def send(self, to: str, text: str) -> None:
        s = self.s
        phone = to.lstrip("+")
        if s.sms_api == "smsru":
            body = {"api_id": _secret(s.sms_key_env, "the SMS gateway's api_id"), "to": phone, "msg": text,
                    "json": "1", **({"from": s.sms_sender} if s.sms_sender else {})}
            status, raw = self._post(body, {})
            if status >= 500 or status == 429:
                raise DeliveryError(f"the SMS gateway answered HTTP {status}", temporary=True)
            try:
                answer = json.loads(raw)
                result = answer.get("sms", {}).get(phone, answer)
                code = int(result.get("status_code", answer.get("status_code", 0)))
            except (ValueError, AttributeError, TypeError):
                raise DeliveryError(f"the SMS gateway's answer is not SMS.ru's JSON (HTTP {status})",
                                    temporary=True) from None
            if code != 100:
                text_ = result.get("status_text") or answer.get("status_text") or "refused"
                raise DeliveryError(f"the SMS gateway refused it: {code} {text_}", temporary=code in _SMSRU_TEMPORARY)
            return
        fields = {k: v.format(to=to, text=text, sender=s.sms_sender) for k, v in urllib.parse.parse_qsl(s.sms_params)}
        key = os.environ.get(s.sms_key_env, "")
        status, raw = self._post(fields, {"Authorization": f"Bearer {key}"} if key else {})
        if not 200 <= status < 300:
            raise DeliveryError(f"the SMS gateway answered HTTP {status}: {raw[:120].decode(errors='replace')}",
                                temporary=status >= 500 or status == 429)
