"""The issuer's keystore: every master key, by version, and the issuer's signing key.

Masters ADMIN, CREDIT, DEBIT, TXN (diversified into each card) and TERM (diversified
into each terminal's log key), 16 random bytes each, plus an Ed25519 key that signs
loyalty programs and hotlists. The file is sealed (``personalization.sealed``): only
the personalization station opens it, and role files carry subsets of it
(docs/personalization.md, "Keys").
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from personalization.sealed import seal
from purse import crypto
from purse.errors import UserError
from purse.files import PRIVATE, write_atomic
from purse.home import Home
from purse.protocol import KeyRef
from purse.rolekeys import ROLE_CARD_KEYS, ROLES_WITH_TERM_MASTER, Role, RoleKeys
from purse.sealed import SealedFileError, read_sealed
from purse.signing import public_bytes

KIND = "keystore"
MASTER_NAMES = ("ADMIN", "CREDIT", "DEBIT", "TXN", "TERM")


def fingerprint(key: bytes) -> str:
    """A short public name for a key: lets people compare keys without seeing them."""
    return hashlib.sha256(b"smartpurse key fingerprint\x00" + key).hexdigest()[:16]


@dataclass
class Keystore:
    issuer_id: int
    system_identifier: bytes
    masters: dict[str, dict[int, bytes]]  # name -> version -> 16 bytes
    signing_key: Ed25519PrivateKey
    created: int
    rotated: list[int] = field(default_factory=list)  # unix times of each rotation

    @classmethod
    def generate(cls, issuer_id: int, system_identifier: bytes,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> Keystore:
        """Fresh masters and signing key; ``random_bytes`` is replaced only by the seeded demo."""
        masters = {name: {1: random_bytes(crypto.KEY_SIZE)} for name in MASTER_NAMES}
        signing_key = Ed25519PrivateKey.from_private_bytes(random_bytes(32))
        return cls(issuer_id, system_identifier, masters, signing_key, int(time.time()))

    @property
    def current_version(self) -> int:
        """The version new cards get: every master has it (rotation moves them together)."""
        return max(self.masters["ADMIN"])

    @property
    def public_key_bytes(self) -> bytes:
        return public_bytes(self.signing_key.public_key())

    def card_masters(self, refs: tuple[KeyRef, ...] = ROLE_CARD_KEYS[Role.ISSUER]) -> dict[KeyRef, dict[int, bytes]]:
        return {ref: dict(self.masters[ref.name]) for ref in refs}

    def rotate(self) -> int:
        """A new version of every master; older versions stay so older cards keep working."""
        version = self.current_version + 1
        for name in MASTER_NAMES:
            self.masters[name][version] = os.urandom(crypto.KEY_SIZE)
        self.rotated.append(int(time.time()))
        return version

    def role_keys(self, role: Role | str, terminal_id: int | None = None,
                  merchant_id: int | None = None) -> RoleKeys:
        """Exactly what ``role`` may hold (docs/design.md key table), every version of it."""
        try:
            role = Role(role)
        except ValueError:
            raise UserError(f"unknown role {role!r} (one of {', '.join(Role)})") from None
        if role == Role.POS and terminal_id is None:
            raise UserError("a POS key file is for one terminal: give --terminal")
        log_keys: dict[int, bytes] = {}
        log_version = self.current_version
        if terminal_id is not None:
            if not 0 < terminal_id < 2**32:
                raise UserError(f"terminal id must be 1..{2**32 - 1}, not {terminal_id}")
            # Every version, not only the current: the terminal's open batch keeps the version it
            # was chained with until it is exported, so a rotation never strands its records.
            log_keys = {version: crypto.terminal_log_key(master, terminal_id, self.system_identifier)
                        for version, master in self.masters["TERM"].items()}
        term = dict(self.masters["TERM"]) if role in ROLES_WITH_TERM_MASTER else {}
        return RoleKeys(role, self.issuer_id, self.system_identifier, self.card_masters(ROLE_CARD_KEYS[role]), term,
                        terminal_id, merchant_id if role == Role.POS else None, log_keys, log_version,
                        self.public_key_bytes)

    def summary(self) -> dict[str, Any]:
        """Versions and fingerprints only: safe to print, never a key byte."""
        return {
            "issuer_id": self.issuer_id,
            "system_identifier": self.system_identifier.decode(errors="replace"),
            "current_version": self.current_version,
            "created": self.created,
            "rotations": len(self.rotated),
            "masters": {name: {str(v): fingerprint(k) for v, k in sorted(vs.items())}
                        for name, vs in self.masters.items()},
            "issuer_public_key": self.public_key_bytes.hex(),
        }

    # -- the sealed file ---------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        raw = self.signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {"issuer_id": self.issuer_id, "system_identifier": self.system_identifier.hex(),
                "masters": {n: {str(v): k.hex() for v, k in vs.items()} for n, vs in self.masters.items()},
                "signing_key": raw.hex(), "created": self.created, "rotated": self.rotated}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str) -> Keystore:
        try:
            masters = {n: {int(v): bytes.fromhex(k) for v, k in payload["masters"][n].items()}
                       for n in MASTER_NAMES}
            signing = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(payload["signing_key"]))
            store = cls(int(payload["issuer_id"]), bytes.fromhex(payload["system_identifier"]), masters, signing,
                        int(payload["created"]), [int(t) for t in payload.get("rotated", [])])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise SealedFileError(f"{source}: keystore content is incomplete or malformed") from None
        if any(len(k) != crypto.KEY_SIZE for vs in masters.values() for k in vs.values()) or \
                len({frozenset(vs) for vs in masters.values()}) != 1:
            raise SealedFileError(f"{source}: keystore content is inconsistent")
        return store


def load_keystore(path: Path, passphrase: str) -> Keystore:
    return Keystore.from_payload(read_sealed(path, KIND, passphrase), str(path))


def save_keystore(path: Path, store: Keystore, passphrase: str, *, overwrite: bool) -> None:
    write_atomic(path, seal(KIND, store.to_payload(), passphrase), mode=PRIVATE, overwrite=overwrite)


def init_keystore(home: Home, passphrase: str, random_bytes: Callable[[int], bytes] = os.urandom) -> Keystore:
    """The key ceremony: fresh masters and signing key, sealed at ``home.keystore_path``."""
    path = home.keystore_path
    if path.exists():
        raise UserError(f"a keystore already exists at {path}; use 'keys rotate' for new key versions")
    home.create()
    store = Keystore.generate(home.issuer.issuer_id, home.system_identifier, random_bytes)
    save_keystore(path, store, passphrase, overwrite=False)
    return store


def rotate_keystore(home: Home, passphrase: str) -> Keystore:
    store = load_keystore(home.keystore_path, passphrase)
    store.rotate()
    save_keystore(home.keystore_path, store, passphrase, overwrite=True)
    return store
