"""Passphrase-sealed files, the reading side: scrypt derives an AES-256-GCM key, GCM authenticates all.

The keystore and every role key file use this one format, so a key never touches the
disk in plaintext and any altered byte (header or ciphertext) fails authentication:
the header is GCM's associated data, the payload its ciphertext. A wrong passphrase
and an altered file are indistinguishable by design; both are one clear error.

Opening lives here, in the card-side library, because terminals and processing open
their role key files without the issuer station; sealing a file is the station's job
(``personalization.sealed``), with the same format constants from this module.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from purse.errors import UserError

FORMAT = "smartpurse-sealed/1"
# scrypt cost: about 0.1 s and 32 MiB per unlock on the reference machine; stored in
# the header so stronger settings can be used later without breaking old files.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_SCRYPT_N = 2**20  # refuse headers that would make an unlock take minutes or all memory


class SealedFileError(UserError):
    """A sealed file is missing, damaged, or the passphrase is wrong."""


def derive_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The AES-256 key a passphrase opens, with the header's scrypt parameters."""
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def header_bytes(header: dict[str, Any]) -> bytes:
    """The header as GCM's associated data: canonical JSON, so any edit of it fails the tag."""
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def unseal(data: bytes, kind: str, passphrase: str, source: str) -> dict[str, Any]:
    """The payload of a sealed ``kind`` file, or one ``SealedFileError`` line saying why not."""
    damaged = SealedFileError(f"{source}: damaged or not a smartpurse {kind} file")
    try:
        outer = json.loads(data)
        header = outer["header"]
        kdf = header["kdf"]
        salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(header["nonce"])
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        ciphertext = base64.b64decode(outer["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise damaged from None
    if header.get("format") != FORMAT or kdf.get("name") != "scrypt" or len(nonce) != 12:
        raise damaged
    if header.get("kind") != kind:
        raise SealedFileError(f"{source}: is a {header.get('kind')!r} file, not a {kind} file")
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and salt):
        raise damaged
    try:
        plaintext = AESGCM(derive_key(passphrase, salt, n, r, p)).decrypt(nonce, ciphertext, header_bytes(header))
    except InvalidTag:
        raise SealedFileError(f"{source}: wrong passphrase, or the file was altered") from None
    try:
        payload = json.loads(plaintext)
    except ValueError:
        raise damaged from None
    if not isinstance(payload, dict):
        raise damaged
    return payload


def read_sealed(path: Path, kind: str, passphrase: str) -> dict[str, Any]:
    """The payload of the sealed ``kind`` file at ``path``; a missing or unreadable file is one line too."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SealedFileError(f"no {kind} file at {path}") from None
    except OSError as e:
        raise SealedFileError(f"cannot read {path}: {e.strerror}") from None
    return unseal(data, kind, passphrase, str(path))
