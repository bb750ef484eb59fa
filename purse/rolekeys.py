"""Role key files: what a terminal, the load desk or processing holds, and how it is opened.

Each file holds only its role's keys (docs/design.md, "Key hierarchy"): a POS file has the
DEBIT masters and its own terminal log key, so a stolen POS file can debit sessions but
never load value, forge a certificate, or compute another terminal's log MACs.

Opening a role file is here, beside the SAM it feeds, so a terminal vendor or the back
office reads its keys without the issuer station; the station writes the files
(``personalization.keyfiles``) from the payload this module defines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from purse.errors import UserError
from purse.home import Home
from purse.protocol import KeyRef
from purse.sam import SoftwareSam
from purse.sealed import SealedFileError, read_sealed
from purse.terminal_log import LogKeys

__all__ = [
    "RoleKeys",
    "Role",
    "load_role_keys",
    "open_role_keys",
    "role_key_path",
    "role_payload",
    "EXPORTED_ROLES",
    "ROLE_CARD_KEYS",
    "ROLES_WITH_TERM_MASTER",
    "KIND",
]

KIND = "role-keys"


class Role(StrEnum):
    """Who holds a set of keys; ``issuer`` never leaves the keystore as a file."""

    POS = "pos"
    CREDIT = "credit"
    PROCESSING = "processing"
    ISSUER = "issuer"


EXPORTED_ROLES = (Role.POS, Role.CREDIT, Role.PROCESSING)
# The card master keys each role holds; TERM (terminal log keys) is separate below.
ROLE_CARD_KEYS: dict[Role, tuple[KeyRef, ...]] = {
    Role.POS: (KeyRef.DEBIT,),
    Role.CREDIT: (KeyRef.CREDIT,),
    Role.PROCESSING: (KeyRef.TXN,),
    Role.ISSUER: (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN),
}
ROLES_WITH_TERM_MASTER = (Role.PROCESSING, Role.ISSUER)


@dataclass(frozen=True)
class RoleKeys:
    """The in-memory form of a role key file: terminals, the desk and processing build their SAMs from it."""

    role: Role
    issuer_id: int
    system_identifier: bytes
    masters: dict[KeyRef, dict[int, bytes]]  # only what the role holds, every version
    term_masters: dict[int, bytes]  # processing and issuer only: MK_TERM by version
    terminal_id: int | None  # pos (and a credit desk exported with --terminal)
    merchant_id: int | None  # pos only
    log_keys: dict[int, bytes]  # that terminal's own log key by version (MK_TERM never leaves processing/issuer)
    log_key_version: int  # the current version: what a new batch is chained under
    issuer_public_key: bytes  # raw Ed25519: verifies loyalty programs and hotlists

    @property
    def log_key(self) -> bytes | None:
        """The terminal's current log key; None for a role without a terminal."""
        return self.log_keys.get(self.log_key_version)

    def terminal_log_keys(self) -> LogKeys | None:
        """Every version of the log key, for the terminal log: a batch opened before a rotation
        is closed under the version it was chained with, so rotation strands no record."""
        return LogKeys(self.log_key_version, self.log_keys) if self.log_keys else None

    def sam(self) -> SoftwareSam:
        return SoftwareSam(self.masters, log_key=self.log_key, log_key_version=self.log_key_version,
                           system_identifier=self.system_identifier)

    def versions(self, ref: KeyRef) -> list[int]:
        return sorted(self.masters.get(ref, {}))


def role_key_path(home: Home, role: Role | str, terminal_id: int | None = None) -> Path:
    """Where ``keys export`` puts a role file by default, and where commands look for it."""
    if role == Role.POS:
        if terminal_id is None:
            raise UserError("a POS key file belongs to one terminal: give its terminal id")
        return home.path / "keys" / f"pos-{terminal_id}.key"
    if role in (Role.CREDIT, Role.PROCESSING):
        return home.path / "keys" / f"{role}.key"
    raise UserError(f"no key file for role {role!r} (pos, credit or processing)")


def _versions_out(keys: dict[int, bytes]) -> dict[str, str]:
    return {str(v): k.hex() for v, k in keys.items()}


def _versions_in(raw: dict[str, str]) -> dict[int, bytes]:
    keys = {int(v): bytes.fromhex(k) for v, k in raw.items()}
    if any(len(k) != 16 for k in keys.values()):
        raise ValueError("a master key has 16 bytes")
    return keys


def role_payload(keys: RoleKeys) -> dict[str, Any]:
    """What a role key file seals: the one definition both the writer and ``load_role_keys`` follow."""
    return {
        "role": str(keys.role), "issuer_id": keys.issuer_id, "system_identifier": keys.system_identifier.hex(),
        "masters": {ref.name: _versions_out(vs) for ref, vs in keys.masters.items()},
        "term_masters": _versions_out(keys.term_masters),
        "terminal_id": keys.terminal_id, "merchant_id": keys.merchant_id,
        "log_keys": _versions_out(keys.log_keys),
        "log_key_version": keys.log_key_version, "issuer_public_key": keys.issuer_public_key.hex(),
    }


def load_role_keys(path: Path, passphrase: str) -> RoleKeys:
    """A role key file, checked: one ``SealedFileError`` line on a wrong passphrase, tampering or no file."""
    payload = read_sealed(Path(path), KIND, passphrase)
    try:
        role = Role(str(payload["role"]))
    except (KeyError, ValueError):
        raise SealedFileError(f"{path}: unknown role {payload.get('role')!r}") from None
    try:
        # Files exported before every version was kept hold one "log_key" of the current version.
        log_keys = (_versions_in(payload["log_keys"]) if "log_keys" in payload else
                    {} if payload.get("log_key") is None else
                    {int(payload["log_key_version"]): bytes.fromhex(payload["log_key"])})
        return RoleKeys(
            role, int(payload["issuer_id"]), bytes.fromhex(payload["system_identifier"]),
            {KeyRef[name]: _versions_in(vs) for name, vs in payload["masters"].items()},
            _versions_in(payload["term_masters"]),
            None if payload["terminal_id"] is None else int(payload["terminal_id"]),
            None if payload["merchant_id"] is None else int(payload["merchant_id"]),
            log_keys,
            int(payload["log_key_version"]), bytes.fromhex(payload["issuer_public_key"]),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        raise SealedFileError(f"{path}: key file content is incomplete or malformed") from None


def open_role_keys(home: Home, role: Role, passphrase: str, terminal_id: int | None = None) -> RoleKeys:
    """The home's key file of ``role`` (of terminal ``terminal_id`` for POS), checked to be that role's.

    Raises ``UserError`` naming the export command when the file is missing, and when the
    file holds another role's keys (a POS file of another terminal, a credit file where
    processing's is expected), so no command runs with keys it was not meant to have.
    """
    path = role_key_path(home, role, terminal_id)
    if not path.is_file():
        hint = f" --terminal {terminal_id}" if terminal_id is not None else ""
        raise UserError(f"no {role} key file {path}: export it with `smartpurse keys export --role {role}{hint}`")
    keys = load_role_keys(path, passphrase)
    if role == Role.POS:
        if keys.role != Role.POS or keys.terminal_id != terminal_id or keys.merchant_id is None \
                or keys.log_key is None:
            raise UserError(f"the key file of terminal {terminal_id} is not a POS key file for it "
                            f"(role {keys.role}, terminal {keys.terminal_id})")
    elif role == Role.PROCESSING:
        if not keys.masters.get(KeyRef.TXN) or not keys.term_masters:
            raise UserError(f"{path} is a {keys.role} key file without the TXN and TERM masters processing needs")
    elif keys.role != role:
        raise UserError(f"{path} is a {keys.role} key file, not a {role} key file")
    return keys
