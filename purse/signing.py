"""Issuer-signed documents (loyalty programs, hotlists): Ed25519 over the exact bytes.

The file is JSON: ``{"format": "smartpurse-signed/1", "kind": ..., "payload": base64,
"signature": hex, "signer": hex}``. The signature covers ``kind`` and the payload bytes
exactly as written (not a re-serialization), so changing any byte of the payload is
detected; the verifier trusts only the issuer public key it was given, never ``signer``.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from purse.errors import ExitCode, SmartpurseError

FORMAT = "smartpurse-signed/1"


class SignatureError(SmartpurseError):
    """A signed document is malformed, of the wrong kind, or not signed by the issuer."""

    exit_code = ExitCode.BAD_INPUT


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _message(kind: str, payload: bytes) -> bytes:
    return FORMAT.encode() + b"\x00" + kind.encode() + b"\x00" + payload


def sign_document(kind: str, payload: bytes, key: Ed25519PrivateKey) -> bytes:
    envelope = {
        "format": FORMAT,
        "kind": kind,
        "payload": base64.b64encode(payload).decode(),
        "signature": key.sign(_message(kind, payload)).hex(),
        "signer": public_bytes(key.public_key()).hex(),
    }
    return (json.dumps(envelope, indent=2) + "\n").encode()


def verify_document(data: bytes, kind: str, issuer_key: Ed25519PublicKey | bytes, *, source: str = "document") -> bytes:
    """The payload bytes, if ``data`` is a ``kind`` document signed by ``issuer_key``."""
    if isinstance(issuer_key, bytes):
        issuer_key = Ed25519PublicKey.from_public_bytes(issuer_key)
    try:
        envelope = json.loads(data)
        if envelope.get("format") != FORMAT:
            raise SignatureError(f"{source}: not a smartpurse signed document")
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = bytes.fromhex(envelope["signature"])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError):
        raise SignatureError(f"{source}: malformed signed document") from None
    if envelope.get("kind") != kind:
        raise SignatureError(f"{source}: is a {envelope.get('kind')!r} document, expected {kind!r}")
    try:
        issuer_key.verify(signature, _message(kind, payload))
    except InvalidSignature:
        raise SignatureError(f"{source}: signature is not the issuer's (altered or forged)") from None
    return payload


def read_signed(path: Path, kind: str, issuer_key: Ed25519PublicKey | bytes) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SignatureError(f"cannot read {path}: {e.strerror}") from None
    return verify_document(data, kind, issuer_key, source=str(path))
