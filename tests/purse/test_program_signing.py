"""Terminals load only programs the issuer signed: any changed byte is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import REPO

from purse.loyalty import ProgramError, load_signed_program, sign_program, verify_program
from purse.signing import SignatureError, public_bytes

DEMO = (REPO / "purse/loyalty/demo-program.toml").read_bytes()
ISSUER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ISSUER_PUBLIC = public_bytes(ISSUER.public_key())


def test_a_signed_program_verifies_and_keeps_the_issuers_text() -> None:
    signed = sign_program(DEMO, ISSUER)
    program = verify_program(signed, ISSUER_PUBLIC)
    assert program.program_id == 17 and program.name == "Coffee Club"
    assert base64.b64decode(json.loads(signed)["payload"]) == DEMO  # comments and all


def _payload_byte_changed(signed: bytes, index: int) -> bytes:
    envelope = json.loads(signed)
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[index] ^= 0x01
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("index", [0, DEMO.index(b"threshold = 100") + 13, len(DEMO) - 2])
def test_one_changed_payload_byte_is_refused(index: int) -> None:
    signed = sign_program(DEMO, ISSUER)
    with pytest.raises(SignatureError, match="altered or forged"):
        verify_program(_payload_byte_changed(signed, index), ISSUER_PUBLIC)


def test_every_single_byte_flip_of_the_file_is_refused() -> None:
    signed = sign_program(DEMO, ISSUER)
    refused = 0
    for i in range(0, len(signed), 7):
        tampered = bytearray(signed)
        tampered[i] ^= 0x01
        try:
            verify_program(bytes(tampered), ISSUER_PUBLIC)
        except SignatureError:
            refused += 1
        else:  # only whitespace or the untrusted "signer" field can change harmlessly
            assert chr(signed[i]) in " \n" or i in _signer_span(signed)
    assert refused > len(signed) // 7 // 2


def _signer_span(signed: bytes) -> range:
    start = signed.index(b'"signer"')
    return range(start, signed.index(b"\n", start))


def test_another_issuers_signature_is_refused() -> None:
    signed = sign_program(DEMO, Ed25519PrivateKey.generate())
    with pytest.raises(SignatureError, match="not the issuer's"):
        verify_program(signed, ISSUER_PUBLIC)


def test_a_hotlist_is_not_a_program() -> None:
    from purse.hotlist import Hotlist

    with pytest.raises(SignatureError, match="expected 'loyalty-program'"):
        verify_program(Hotlist(1, 0, 1).sign(ISSUER), ISSUER_PUBLIC)


def test_the_issuer_never_signs_a_broken_program() -> None:
    with pytest.raises(ProgramError, match="program.id"):
        sign_program(b'[program]\nid = 70000\nname = "x"\n', ISSUER)


def test_signed_program_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.signed"
    path.write_bytes(sign_program(DEMO, ISSUER))
    text, program = load_signed_program(path, ISSUER_PUBLIC)
    assert text == DEMO and program.program_id == 17
    with pytest.raises(SignatureError, match="cannot read"):
        load_signed_program(tmp_path / "missing.signed", ISSUER_PUBLIC)
