"""Signed programs: the issuer signs the program file's exact bytes (Ed25519).

The payload is the file as the issuer wrote it (TOML or JSON, comments included), so
``program show`` prints what was signed and one changed byte breaks the signature
(``purse.signing``). A program is checked before it is signed: the issuer never signs
a file a terminal would refuse.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from purse.loyalty.program import Program, ProgramError, parse_program_bytes
from purse.signing import read_signed, sign_document, verify_document

KIND = "loyalty-program"


def read_program_file(path: Path) -> tuple[bytes, Program]:
    """An unsigned program file's bytes and its validated program."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ProgramError(f"cannot read {path}: {e.strerror}") from None
    return data, parse_program_bytes(data, str(path))


def sign_program(data: bytes, key: Ed25519PrivateKey, source: str = "program") -> bytes:
    """The signed document for program text ``data``, after checking it parses."""
    parse_program_bytes(data, source)
    return sign_document(KIND, data, key)


def verify_program(signed: bytes, issuer_key: Ed25519PublicKey | bytes, source: str = "program") -> Program:
    """The program in a signed document, if the issuer signed it; else ``SignatureError``."""
    return parse_program_bytes(verify_document(signed, KIND, issuer_key, source=source), source)


def load_signed_program(path: Path, issuer_key: Ed25519PublicKey | bytes) -> tuple[bytes, Program]:
    """The program text and the program from a signed file on disk."""
    payload = read_signed(Path(path), KIND, issuer_key)
    return payload, parse_program_bytes(payload, str(path))
