"""What each role may hold (DESIGN.md, "Key hierarchy") and the keys a role file carries.

``RoleKeys`` is the in-memory form of an exported role key file: terminals, the load
desk and processing build their SAMs from it and never see a key they do not need.
"""

from __future__ import annotations

from dataclasses import dataclass

from purse.protocol import KeyRef
from purse.sam import SoftwareSam

ROLES = ("pos", "credit", "processing", "issuer")
# The card master keys each role holds; TERM (terminal log keys) is separate below.
ROLE_CARD_KEYS: dict[str, tuple[KeyRef, ...]] = {
    "pos": (KeyRef.DEBIT,),
    "credit": (KeyRef.CREDIT,),
    "processing": (KeyRef.TXN,),
    "issuer": (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN),
}
ROLES_WITH_TERM_MASTER = ("processing", "issuer")


@dataclass(frozen=True)
class RoleKeys:
    role: str  # "pos" | "credit" | "processing" | "issuer"
    issuer_id: int
    system_identifier: bytes
    masters: dict[KeyRef, dict[int, bytes]]  # only what the role holds, every version
    term_masters: dict[int, bytes]  # processing and issuer only: MK_TERM by version
    terminal_id: int | None  # pos (and a credit desk exported with --terminal)
    merchant_id: int | None  # pos only
    log_key: bytes | None  # that terminal's own log key (MK_TERM never leaves processing/issuer)
    log_key_version: int
    issuer_public_key: bytes  # raw Ed25519: verifies loyalty programs and hotlists

    def sam(self) -> SoftwareSam:
        return SoftwareSam(self.masters, log_key=self.log_key, log_key_version=self.log_key_version,
                           system_identifier=self.system_identifier)

    def versions(self, ref: KeyRef) -> list[int]:
        return sorted(self.masters.get(ref, {}))
