"""Passphrase-sealed files, the writing side: only the issuer station seals a key file.

The format and the opening side are ``purse.sealed`` (terminals and processing open
their role files without this package); this module adds sealing; the file is written owner-only and
atomically by ``purse.files.write_atomic``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from purse.errors import UserError
from purse.sealed import FORMAT, SCRYPT_N, SCRYPT_P, SCRYPT_R, derive_key, header_bytes


def seal(kind: str, payload: dict[str, Any], passphrase: str) -> bytes:
    """The file bytes holding ``payload`` (JSON-able) sealed under ``passphrase``."""
    if not passphrase:
        raise UserError("the passphrase must not be empty")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": FORMAT, "kind": kind,
              "kdf": {"name": "scrypt", "salt": salt.hex(), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
              "nonce": nonce.hex()}
    key = derive_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    plaintext = json.dumps(payload, sort_keys=True).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, header_bytes(header))
    return (json.dumps({"header": header, "ciphertext": base64.b64encode(ciphertext).decode()}, indent=1)
            + "\n").encode()
