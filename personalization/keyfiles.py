"""Writing role key files, and opening the issuer's keystore: the issuer station's side of the keys.

A role file is sealed separately (``personalization.sealed``) with the payload
``purse.rolekeys`` defines and opens; only the station, which holds every master, writes one.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from personalization import registry
from personalization.keystore import Keystore, load_keystore
from personalization.sealed import seal
from purse.errors import UserError
from purse.files import PRIVATE, write_atomic
from purse.home import Home
from purse.rolekeys import KIND, Role, RoleKeys, role_key_path, role_payload


def load_issuer(home: Home, passphrase: str) -> Keystore:
    """The issuer's keystore (all masters and the signing key), opened with ``passphrase``."""
    path = home.keystore_path
    if not path.exists():
        raise UserError(f"no keystore at {path}: run 'smartpurse keys init' first")
    return load_keystore(path, passphrase)


def write_role_keys(path: Path, keys: RoleKeys, passphrase: str) -> None:
    """Seal ``keys`` into ``path`` (0600, replaced atomically); the issuer's own keys are never exported."""
    if keys.role == Role.ISSUER:
        raise UserError("the issuer's keys stay in the keystore; export pos, credit or processing")
    write_atomic(path, seal(KIND, role_payload(keys), passphrase), mode=PRIVATE)


def export_role_file(engine: Engine, home: Home, store: Keystore, role: Role | str, passphrase: str, *,
                     terminal_id: int | None = None, merchant_id: int = 1, name: str | None = None,
                     path: Path | None = None) -> tuple[Path, RoleKeys]:
    """Write the key file of ``role`` (default path in ``home``) and register a POS terminal with its merchant.

    The registration is what lets processing verify that terminal's batches (its merchant,
    its log key version), so it happens with every POS export, also after a key rotation.
    Raises ``UserError`` for a processing file with a terminal id or an id out of range.
    """
    role = Role(role)
    if role == Role.PROCESSING and terminal_id is not None:
        raise UserError("processing holds MK_TERM and derives every terminal's log key: no --terminal")
    if not 0 < merchant_id < 2**32:
        raise UserError(f"merchant id must be 1..{2**32 - 1}, not {merchant_id}")
    keys = store.role_keys(role, terminal_id, merchant_id if role == Role.POS else None)
    path = path or role_key_path(home, role, terminal_id)
    write_role_keys(path, keys, passphrase)
    if role == Role.POS:
        assert terminal_id is not None  # role_keys refused a POS file without one
        registry.register_terminal(engine, terminal_id, merchant_id, keys.log_key_version,
                                   fee_bps=home.settings.merchants.default_fee_bps, name=name)
    return path, keys
