"""The hotlist: cards terminals must block, signed by the issuer (docs/design.md, "Hotlist")."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from purse.signing import SignatureError, read_signed, sign_document

__all__ = [
    "Hotlist",
    "load_hotlist",
    "KIND",
]

KIND = "hotlist"


@dataclass(frozen=True)
class Hotlist:
    issuer_id: int
    created: int  # unix seconds
    sequence: int  # newer lists have higher numbers; a terminal never goes back
    cards: dict[str, int] = field(default_factory=dict)  # card number -> blocked at (unix seconds)

    def __contains__(self, number: object) -> bool:
        return number in self.cards

    def to_payload(self) -> bytes:
        return json.dumps({"issuer_id": self.issuer_id, "created": self.created, "sequence": self.sequence,
                           "cards": [{"number": n, "blocked_at": t} for n, t in sorted(self.cards.items())]},
                          indent=1).encode()

    @classmethod
    def from_payload(cls, payload: bytes, source: str = "hotlist") -> Hotlist:
        try:
            obj = json.loads(payload)
            cards = {str(c["number"]): int(c["blocked_at"]) for c in obj["cards"]}
            return cls(int(obj["issuer_id"]), int(obj["created"]), int(obj["sequence"]), cards)
        except (ValueError, KeyError, TypeError):
            raise SignatureError(f"{source}: signed, but not a valid hotlist") from None

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return sign_document(KIND, self.to_payload(), key)


def load_hotlist(path: Path, issuer_key: Ed25519PublicKey | bytes) -> Hotlist:
    """The hotlist file at ``path``, its issuer signature verified; ``SignatureError`` otherwise."""
    return Hotlist.from_payload(read_signed(path, KIND, issuer_key), str(path))
