"""Role key files: what a terminal, the load desk or processing gets from the keystore.

Each file is sealed separately (``personalization.sealed``) and holds only its role's
keys (``personalization.roles``): a POS file has the DEBIT masters and its own terminal
log key, so a stolen POS file can debit sessions but never load value, forge a
certificate, or compute another terminal's log MACs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from personalization.keystore import Keystore, load_keystore
from personalization.roles import ROLES, RoleKeys
from personalization.sealed import SealedFileError, read_sealed, seal, write_private
from purse.errors import UserError
from purse.home import Home
from purse.protocol import KeyRef

KIND = "role-keys"
PASSPHRASE_ENV = "SMARTPURSE_PASSPHRASE"

__all__ = ["RoleKeys", "load_role_keys", "role_key_path", "get_passphrase", "load_issuer", "write_role_keys"]


def role_key_path(home: Home, role: str, terminal_id: int | None = None) -> Path:
    """Where ``keys export`` puts a role file by default, and where commands look for it."""
    if role == "pos":
        if terminal_id is None:
            raise UserError("a POS key file belongs to one terminal: give its terminal id")
        return home.path / "keys" / f"pos-{terminal_id}.key"
    if role in ("credit", "processing"):
        return home.path / "keys" / f"{role}.key"
    raise UserError(f"no key file for role {role!r} (pos, credit or processing)")


def get_passphrase(prompt: str = "Passphrase", *, confirm: bool = False, env: str = PASSPHRASE_ENV) -> str:
    """From ``env`` for scripts, else a hidden prompt (twice when ``confirm``)."""
    value = os.environ.get(env)
    if value is not None:
        if not value:
            raise UserError(f"{env} is set but empty")
        return value
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not value:
        raise UserError("the passphrase must not be empty")
    return str(value)


def load_issuer(home: Home, passphrase: str) -> Keystore:
    """The issuer's keystore (all masters and the signing key), opened with ``passphrase``."""
    path = home.keystore_path
    if not path.exists():
        raise UserError(f"no keystore at {path}: run 'smartpurse keys init' first")
    return load_keystore(path, passphrase)


def _versions_out(keys: dict[int, bytes]) -> dict[str, str]:
    return {str(v): k.hex() for v, k in keys.items()}


def _versions_in(raw: dict[str, str]) -> dict[int, bytes]:
    keys = {int(v): bytes.fromhex(k) for v, k in raw.items()}
    if any(len(k) != 16 for k in keys.values()):
        raise ValueError("a master key has 16 bytes")
    return keys


def role_payload(keys: RoleKeys) -> dict[str, Any]:
    return {
        "role": keys.role, "issuer_id": keys.issuer_id, "system_identifier": keys.system_identifier.hex(),
        "masters": {ref.name: _versions_out(vs) for ref, vs in keys.masters.items()},
        "term_masters": _versions_out(keys.term_masters),
        "terminal_id": keys.terminal_id, "merchant_id": keys.merchant_id,
        "log_key": keys.log_key.hex() if keys.log_key is not None else None,
        "log_key_version": keys.log_key_version, "issuer_public_key": keys.issuer_public_key.hex(),
    }


def write_role_keys(path: Path, keys: RoleKeys, passphrase: str) -> None:
    if keys.role == "issuer":
        raise UserError("the issuer's keys stay in the keystore; export pos, credit or processing")
    write_private(path, seal(KIND, role_payload(keys), passphrase), overwrite=True)


def load_role_keys(path: Path, passphrase: str) -> RoleKeys:
    """A role key file, checked: one ``UserError`` line on a wrong passphrase, tampering or no file."""
    payload = read_sealed(Path(path), KIND, passphrase)
    try:
        role = str(payload["role"])
        log_key = payload["log_key"]
        keys = RoleKeys(
            role, int(payload["issuer_id"]), bytes.fromhex(payload["system_identifier"]),
            {KeyRef[name]: _versions_in(vs) for name, vs in payload["masters"].items()},
            _versions_in(payload["term_masters"]),
            None if payload["terminal_id"] is None else int(payload["terminal_id"]),
            None if payload["merchant_id"] is None else int(payload["merchant_id"]),
            None if log_key is None else bytes.fromhex(log_key),
            int(payload["log_key_version"]), bytes.fromhex(payload["issuer_public_key"]),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        raise SealedFileError(f"{path}: key file content is incomplete or malformed") from None
    if role not in ROLES:
        raise SealedFileError(f"{path}: unknown role {role!r}")
    return keys
