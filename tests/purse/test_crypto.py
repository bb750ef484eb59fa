"""Crypto against the published vectors (RFC 4493 CMAC, NXP AN10922): the ground truth, docs/design.md.

The vectors are published in ../shared/vectors beside the checkout; ``tests/vectors`` holds a copy
of each file the project implements, so a clone anywhere runs them, and
``test_the_copied_vectors_are_the_published_ones`` fails the moment a copy and its published file
differ. A published file is copied in (with its SHA-256 below) by the change that implements it,
so ../shared may hold vectors of work not done yet (DESFire EV2, AN12196). Every vector of every
copied file becomes one test, read from the file itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support import REPO, VECTORS

from purse import crypto
from purse.protocol import AID, DEFAULT_SYSTEM_IDENTIFIER

SHARED = REPO.parent / "shared" / "vectors"
COPY = VECTORS


VECTORS = COPY


# Files whose vectors another test module reads, every section of them (that module checks it).
READ_ELSEWHERE = {
    "desfire_ev2_an12196": Path(__file__).with_name("test_desfire_ev2.py"),
    "desfire_tmac": Path(__file__).with_name("test_desfire_card.py"),
}


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def _cases() -> list[pytest.param]:
    """One (kind, vector) per vector in every file, by the file's own shape."""
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        if path.stem in READ_ELSEWHERE:
            continue
        doc = json.loads(path.read_text())
        if "cases" in doc:
            key = doc["key"]
            if "subkeys" in doc:
                out.append(pytest.param("cmac_subkeys", {"key": key, **doc["subkeys"]}, id=f"{path.stem}-subkeys"))
            for i, case in enumerate(doc["cases"]):
                out.append(pytest.param("cmac", {"key": key, **case}, id=f"{path.stem}-{i}"))
        elif "diversified_key" in doc:
            out.append(pytest.param("an10922", doc, id=path.stem))
        else:
            raise AssertionError(f"{path.name}: a vector file of unknown shape, teach this test to read it")
    return out


CASES = _cases()


# SHA-256 of the published files as they were copied; ../shared is compared too when it is there.
PUBLISHED = {
    "aes_cmac_rfc4493.json": "7414ad0c64dd02a72c281a0de44887febfd5fc3befcc39d92169f7b8ff116565",
    "an10922_aes128.json": "8c2483f994b5d20ebad9e4cd471307fb4406e32c028b7486aa01a17616dff9fc",
    "desfire_ev2_an12196.json": "53ed1ca24138085212432b95b1db1b95b33770b471e24efaf7baca47fa39aec6",
}


# Vector files of this project's own, each naming where its values come from (not in ../shared).
OWN = {
    "desfire_tmac.json": "5ea6bf1f0914f52cf5bd5836afcc9df801f277448285feca625134c597e3a3b8",
}


def test_the_copied_vectors_are_the_published_ones() -> None:
    copied = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in COPY.glob("*.json")}
    assert copied == PUBLISHED | OWN
    if SHARED.is_dir():
        published = {name: hashlib.sha256((SHARED / name).read_bytes()).hexdigest() for name in PUBLISHED}
        assert published == PUBLISHED


def test_every_vector_file_is_read() -> None:
    files = sorted(p.stem for p in VECTORS.glob("*.json"))
    covered = {str(c.id).split("-")[0] for c in CASES}
    for stem, module in READ_ELSEWHERE.items():
        assert f"{stem}.json" in module.read_text(), module
        covered.add(stem)
    assert files and set(files) == covered


@pytest.mark.parametrize(("kind", "vector"), CASES)
def test_vector(kind: str, vector: dict) -> None:
    if kind == "cmac_subkeys":
        k1, k2 = crypto.cmac_subkeys(bytes.fromhex(vector["key"]))
        assert (k1.hex(), k2.hex()) == (vector["K1"].lower(), vector["K2"].lower())
    elif kind == "cmac":
        key, message = bytes.fromhex(vector["key"]), bytes.fromhex(vector["message"])
        assert crypto.cmac(key, message).hex() == vector["mac"].lower()
        assert crypto.PrekeyedMac(key).full(message).hex() == vector["mac"].lower()
        assert crypto.mac8(key, message) == bytes.fromhex(vector["mac"])[:8]
        assert crypto.PrekeyedMac(key).mac(message) == bytes.fromhex(vector["mac"])[:8]
    else:
        m = crypto.card_diversification_input(
            bytes.fromhex(vector["uid"]), bytes.fromhex(vector["aid"]), bytes.fromhex(vector["system_identifier"])
        )
        assert m.hex() == vector["M"].lower()
        assert crypto.an10922_diversify(bytes.fromhex(vector["master_key"]), m).hex() == vector["diversified_key"]


def test_an10922_full_block_input_uses_k1() -> None:
    """M of 31 bytes fills two blocks exactly: no padding and K1, unlike the vector's K2 path.

    Checked against an independent CBC-MAC with K1 XORed into the last block.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    master = bytes(range(16))
    m = bytes(range(100, 131))
    k1, _ = crypto.cmac_subkeys(master)
    data = b"\x01" + m
    data = data[:16] + bytes(a ^ b for a, b in zip(data[16:], k1, strict=True))
    enc = Cipher(algorithms.AES(master), modes.CBC(bytes(16))).encryptor()
    assert crypto.an10922_diversify(master, m) == (enc.update(data) + enc.finalize())[-16:]


def test_an10922_many_derives_what_one_by_one_derives() -> None:
    """``an10922_diversify_many`` (processing keys a day's new cards together) against the published vector,
    and against ``an10922_diversify`` over every input length, both paddings (K1 at 31 bytes, K2 below)."""
    vector = _load("an10922_aes128.json")
    master = bytes.fromhex(vector["master_key"])
    m = bytes.fromhex(vector["M"])
    inputs = [bytes((n * 7 + i) % 256 for i in range(n)) for n in range(1, 32)] * 3 + [m]
    assert crypto.an10922_diversify_many(master, inputs) == [crypto.an10922_diversify(master, x) for x in inputs]
    assert crypto.an10922_diversify_many(master, [m])[0].hex() == vector["diversified_key"]
    assert crypto.an10922_diversify_many(master, []) == []
    with pytest.raises(ValueError):
        crypto.an10922_diversify_many(master, [b"x", bytes(32)])


def test_an10922_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        crypto.an10922_diversify(bytes(15), b"x")
    with pytest.raises(ValueError):
        crypto.an10922_diversify(bytes(16), b"")
    with pytest.raises(ValueError):
        crypto.an10922_diversify(bytes(16), bytes(32))


def test_card_diversification_input_fits_an10922() -> None:
    """UID (7) + our AID + the default system identifier stays within AN10922's 31 bytes."""
    m = crypto.card_diversification_input(bytes(7), AID, DEFAULT_SYSTEM_IDENTIFIER)
    assert len(m) <= 31
    assert m == bytes(7) + AID + DEFAULT_SYSTEM_IDENTIFIER


def test_session_keys_depend_on_both_randoms_and_the_card_key() -> None:
    key = bytes(range(16))
    base = crypto.session_keys(key, b"T" * 8, b"C" * 8)
    assert base[0] != base[1]
    assert crypto.session_keys(key, b"U" * 8, b"C" * 8) != base
    assert crypto.session_keys(key, b"T" * 8, b"D" * 8) != base
    assert crypto.session_keys(bytes(16), b"T" * 8, b"C" * 8) != base
    # the documented derivation (docs/protocol.md, "Session keys")
    assert base == (crypto.cmac(key, b"\x01SPMAC" + b"T" * 8 + b"C" * 8),
                    crypto.cmac(key, b"\x02SPENC" + b"T" * 8 + b"C" * 8))


def test_terminal_log_key_is_an10922_of_terminal_id() -> None:
    master = bytes(range(16))
    key = crypto.terminal_log_key(master, 7, DEFAULT_SYSTEM_IDENTIFIER)
    assert key == crypto.an10922_diversify(master, b"TERM" + (7).to_bytes(4, "big") + DEFAULT_SYSTEM_IDENTIFIER)
    assert key != crypto.terminal_log_key(master, 8, DEFAULT_SYSTEM_IDENTIFIER)


def test_encrypt_block_round_trip_and_whole_blocks_only() -> None:
    key = bytes(range(16))
    block = bytes(range(32))
    assert crypto.decrypt_block(key, crypto.encrypt_block(key, block)) == block
    with pytest.raises(ValueError):
        crypto.encrypt_block(key, bytes(15))
    with pytest.raises(ValueError):
        crypto.decrypt_block(key, bytes(17))


def test_macs_equal_is_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The constant-time primitive, not ``==``: a MAC check must not leak matching bytes."""
    import hmac
    import types

    assert crypto.macs_equal(b"12345678", b"12345678")
    assert not crypto.macs_equal(b"12345678", b"12345679")
    assert not crypto.macs_equal(b"1234567", b"12345678")
    calls = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(crypto, "hmac", types.SimpleNamespace(compare_digest=spy))
    assert crypto.macs_equal(b"abc", b"abc")
    assert calls == [(b"abc", b"abc")]


def test_every_mac_check_in_the_card_and_host_is_constant_time() -> None:
    """No ``==`` between MACs: each module that checks one calls ``macs_equal``."""
    import inspect
    import re

    from purse import session, terminal_log
    from purse.card import applet

    for module in (applet, session, terminal_log):
        source = inspect.getsource(module)
        assert "macs_equal" in source, module.__name__
        assert not re.search(r"(mac|cryptogram|certificate)\w*\s*[!=]=\s*\w*(mac|cryptogram|received)", source,
                             re.IGNORECASE), module.__name__
