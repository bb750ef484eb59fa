"""Wallet cards: an Apple Wallet store card per card, kept up to date, and a Google Wallet save link.

* **Apple Wallet** (``.pkpass``): ``pass.json`` with the card number as QR and Code 128, the balance
  and points as of the last processed batch (and its date), up to ten store locations with their
  relevant text. ``manifest.json`` holds every file's SHA-1, and ``signature`` is a detached PKCS#7
  signature of the manifest, made with ``cryptography``, under the issuer's pass certificate with
  Apple's WWDR intermediate. Devices register for updates with the PassKit web service
  (``processing.holders.web``), which authenticates them by the pass's token (stored as SHA-256 only).
  When an event changes what a pass shows, ``refresh_passes`` records the change and requests a push
  for every device registered; ``send_pushes`` sends them to ``[wallet] push_url``.
* **Google Wallet**: a "save" link, ``https://pay.google.com/gp/v/save/<JWT>``, the JWT an RS256-signed
  ``savetowallet`` of a loyalty object, signed with the issuer's service-account key (PyJWT).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import secrets
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from processing.holders.figures import card_balance, processed_as_of
from processing.presentation import Presentation
from processing.schema.holders import wallet_passes, wallet_pushes, wallet_registrations, wallet_tokens
from processing.schema.processing import card_points
from purse.errors import UserError
from purse.settings import IssuerSettings, WalletSettings

__all__ = ["PassContent", "pass_content", "pass_json", "build_pkpass", "issue_pass", "refresh_passes",
           "send_pushes", "google_save_link", "barcode_images", "token_hash", "MAX_LOCATIONS"]

MAX_LOCATIONS = 10  # what Wallet shows a pass near
SAVE_URL = "https://pay.google.com/gp/v/save/"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class PassContent:
    """What a card's pass shows: processing's figures as of its last processed batch."""

    serial: str  # the card number
    holder: str
    balance: int
    points: int
    as_of: int  # unix seconds: when processing last imported a batch

    def shown(self) -> dict[str, int]:
        return {"balance": self.balance, "points": self.points, "as_of": self.as_of}


def pass_content(conn: Connection, number: str, holder: str) -> PassContent:
    points = conn.execute(select(func.coalesce(func.sum(card_points.c.points), 0))
                          .where(card_points.c.card_number == number)).scalar_one()
    return PassContent(number, holder, card_balance(conn, number) or 0, int(points), processed_as_of(conn))


def _locations(text: str) -> list[dict[str, Any]]:
    out = []
    for entry in (e.strip() for e in text.split(";") if e.strip()):
        try:
            lat, lon, relevant = entry.split(",", 2)
            out.append({"latitude": float(lat), "longitude": float(lon), "relevantText": relevant.strip()})
        except ValueError:
            raise UserError(f"[wallet] locations: {entry!r} is not 'latitude,longitude,text'") from None
    if len(out) > MAX_LOCATIONS:
        raise UserError(f"[wallet] locations: Wallet shows at most {MAX_LOCATIONS}, not {len(out)}")
    return out


def pass_json(content: PassContent, settings: WalletSettings, issuer: IssuerSettings, token: str,
              web_service_url: str) -> dict[str, Any]:
    """The store card's ``pass.json``."""
    look = Presentation.for_issuer(issuer)
    as_of = dt.datetime.fromtimestamp(content.as_of, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if content.as_of else ""
    barcode = {"message": content.serial, "messageEncoding": "iso-8859-1", "altText": content.serial}
    return {
        "formatVersion": 1, "passTypeIdentifier": settings.pass_type_id, "teamIdentifier": settings.team_id,
        "serialNumber": content.serial, "organizationName": settings.organization or issuer.display_name,
        "description": f"{issuer.display_name} card", "logoText": issuer.display_name,
        "webServiceURL": web_service_url, "authenticationToken": token,
        "barcodes": [{"format": "PKBarcodeFormatQR", **barcode}, {"format": "PKBarcodeFormatCode128", **barcode}],
        "locations": _locations(settings.locations),
        "storeCard": {
            "primaryFields": [{"key": "balance", "label": "Balance", "value": float(look.major(content.balance)),
                               "currencyCode": look.currency_code,
                               "changeMessage": "Your card now holds %@"}],
            "secondaryFields": [{"key": "points", "label": "Points", "value": content.points,
                                 "changeMessage": "Points: %@"}],
            "auxiliaryFields": [{"key": "as_of", "label": "As of", "value": as_of, "dateStyle": "PKDateStyleMedium",
                                 "timeStyle": "PKDateStyleShort"}] if as_of else [],
            "backFields": [{"key": "holder", "label": "Holder", "value": content.holder},
                           {"key": "note", "label": "About", "value": "The balance and points are as of the last "
                            "batch the issuer processed: purchases since then show at the till."}],
        },
    }


def _images() -> dict[str, bytes]:
    """The icon and logo a pass must carry, drawn plainly (Pillow)."""
    from PIL import Image, ImageDraw

    out = {}
    for name, size in (("icon.png", (29, 29)), ("icon@2x.png", (58, 58)), ("logo.png", (160, 50))):
        image = Image.new("RGB", size, "#1d4e89")
        ImageDraw.Draw(image).rectangle((2, 2, size[0] - 3, size[1] - 3), outline="white", width=1)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out[name] = buf.getvalue()
    return out


def _signing_material(settings: WalletSettings) -> tuple[Any, Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not (settings.certificate and settings.key and settings.wwdr_certificate):
        raise UserError("Apple Wallet passes need [wallet] certificate, key and wwdr_certificate")
    passphrase = os.environ.get(settings.key_passphrase_env, "")
    try:
        with open(settings.certificate, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
        with open(settings.wwdr_certificate, "rb") as f:
            wwdr = x509.load_pem_x509_certificate(f.read())
        with open(settings.key, "rb") as f:
            key = load_pem_private_key(f.read(), passphrase.encode() or None)
    except OSError as e:
        raise UserError(f"cannot read the pass certificate or key: {e.strerror} ({e.filename})") from None
    except (ValueError, TypeError):
        raise UserError(f"the pass key does not open: set {settings.key_passphrase_env} to its passphrase "
                        "(the key file must be encrypted PEM)") from None
    return certificate, key, wwdr


def build_pkpass(pass_data: dict[str, Any], settings: WalletSettings) -> bytes:
    """The signed ``.pkpass``: pass.json, images, manifest.json (SHA-1 of each), signature (PKCS#7)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    certificate, key, wwdr = _signing_material(settings)
    files = {"pass.json": json.dumps(pass_data, ensure_ascii=False, indent=1).encode(), **_images()}
    manifest = json.dumps({name: hashlib.sha1(data).hexdigest() for name, data in files.items()},  # noqa: S324
                          indent=1).encode()  # SHA-1: what the PassKit format names
    signature = (pkcs7.PKCS7SignatureBuilder().set_data(manifest).add_signer(certificate, key, hashes.SHA256())
                 .add_certificate(wwdr).sign(serialization.Encoding.DER,
                                             [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in {**files, "manifest.json": manifest, "signature": signature}.items():
            z.writestr(name, data)
    return out.getvalue()


def web_service_url(settings: WalletSettings, public_url: str) -> str:
    return settings.web_service_url or f"{public_url.rstrip('/')}/wallet"


def issue_pass(conn: Connection, number: str, holder: str, settings: WalletSettings, issuer: IssuerSettings,
               public_url: str, token: str | None = None) -> bytes:
    """The card's pass as it is now, with a new authentication token (or ``token``, a device's own, when
    the device fetches its update); the pass's row and the token's hash are kept."""
    if not settings.pass_type_id:
        raise UserError("Apple Wallet cards are not set up: [wallet] pass_type_id, team_id, certificate, key")
    content = pass_content(conn, number, holder)
    p = wallet_passes.c
    row = conn.execute(select(p.serial).where(p.serial == number)).first()
    if row is None:
        conn.execute(insert(wallet_passes).values(serial=number, updated_at=content.as_of, shown=content.shown()))
    if token is None:
        token = secrets.token_urlsafe(24)  # PassKit wants at least 16 characters
        conn.execute(insert(wallet_tokens).values(token_hash=token_hash(token), serial=number))
    return build_pkpass(pass_json(content, settings, issuer, token, web_service_url(settings, public_url)), settings)


def refresh_passes(conn: Connection, numbers: set[str], now: int) -> int:
    """After events: the passes of these cards whose figures changed are marked updated, and a push is
    requested for every device that registered them; how many passes changed."""
    if not numbers:
        return 0
    p, r = wallet_passes.c, wallet_registrations.c
    changed = 0
    for serial, shown in conn.execute(select(p.serial, p.shown).where(p.serial.in_(sorted(numbers)))).all():
        content = pass_content(conn, serial, "")
        if dict(shown) == content.shown():
            continue
        conn.execute(update(wallet_passes).where(p.serial == serial).values(updated_at=now, shown=content.shown()))
        tokens = conn.execute(select(r.push_token).where(r.serial == serial)).scalars().all()
        if tokens:
            conn.execute(insert(wallet_pushes), [{"serial": serial, "push_token": t, "requested_at": now,
                                                  "state": "queued"} for t in tokens])
        changed += 1
    return changed


def send_pushes(conn: Connection, settings: WalletSettings, now: int) -> tuple[int, int]:
    """Send the requested pushes (an empty JSON body to ``push_url``/3/device/<token>, topic the pass type,
    APNs' request form); (sent, failed). A failed push is kept with its reason: the device still fetches
    the update the next time it asks (``passesUpdatedSince``)."""
    w = wallet_pushes.c
    queued = conn.execute(select(w.id, w.push_token).where(w.state == "queued").order_by(w.id)).all()
    if not queued or not settings.push_url:
        return 0, 0
    sent = failed = 0
    for push_id, push_token in queued:
        request = urllib.request.Request(f"{settings.push_url.rstrip('/')}/3/device/{push_token}", data=b"{}",
                                         headers={"apns-topic": settings.pass_type_id,
                                                  "Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
            values: dict[str, Any] = {"state": "sent", "sent_at": now}
            sent += 1
        except (urllib.error.URLError, OSError) as e:
            values = {"state": "failed", "reason": f"push not accepted: {e}"[:300]}
            failed += 1
        conn.execute(update(wallet_pushes).where(w.id == push_id).values(**values))
    return sent, failed


def google_save_link(content: PassContent, settings: WalletSettings, issuer: IssuerSettings) -> str:
    """The "Add to Google Wallet" link: a ``savetowallet`` JWT of the card's loyalty object, RS256."""
    import jwt
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not (settings.google_issuer_id and settings.google_service_account and settings.google_key):
        raise UserError("Google Wallet is not set up: [wallet] google_issuer_id, google_service_account, google_key")
    try:
        with open(settings.google_key, "rb") as f:
            key = load_pem_private_key(f.read(), os.environ.get(settings.google_key_passphrase_env, "").encode()
                                       or None)
    except OSError as e:
        raise UserError(f"cannot read the Google service-account key: {e.strerror}") from None
    except (ValueError, TypeError):
        raise UserError(f"the Google key does not open: set {settings.google_key_passphrase_env}") from None
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    if not isinstance(key, RSAPrivateKey):
        raise UserError("the Google service-account key must be an RSA key (RS256)")
    look = Presentation.for_issuer(issuer)
    loyalty = {
        "id": f"{settings.google_issuer_id}.{content.serial}",
        "classId": f"{settings.google_issuer_id}.{settings.google_class}",
        "state": "ACTIVE", "accountId": content.serial, "accountName": content.holder,
        "barcode": {"type": "QR_CODE", "value": content.serial, "alternateText": content.serial},
        "loyaltyPoints": {"label": "Points", "balance": {"int": content.points}},
        "secondaryLoyaltyPoints": {"label": "Balance", "balance": {"money": {
            "micros": content.balance * 10 ** (6 - look.exponent), "currencyCode": look.currency_code}}},
    }
    claims = {"iss": settings.google_service_account, "aud": "google", "typ": "savetowallet",
              "iat": int(dt.datetime.now(dt.UTC).timestamp()), "origins": [],
              "payload": {"loyaltyObjects": [loyalty]}}
    return SAVE_URL + jwt.encode(claims, key, algorithm="RS256")


def barcode_images(message: str) -> dict[str, bytes]:
    """The pass's two barcodes as PNG images, rendered by the barcode libraries (segno, python-barcode):
    what a scanner at the till reads off the phone's screen."""
    import segno
    from barcode import Code128
    from barcode.writer import ImageWriter

    qr = io.BytesIO()
    segno.make(message, error="m", micro=False).save(qr, kind="png", scale=8, border=4)
    code128 = io.BytesIO()
    Code128(message, writer=ImageWriter()).write(code128)
    return {"qr.png": qr.getvalue(), "code128.png": code128.getvalue()}
