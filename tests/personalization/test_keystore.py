"""Keystore and role key files: sealed, 0600, only a role's keys, one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from support.issuer import PASSPHRASE

from personalization.keyfiles import load_issuer, write_role_keys
from personalization.keystore import MASTER_NAMES, init_keystore, load_keystore, rotate_keystore
from purse import crypto
from purse._cli.util import passphrase as get_passphrase
from purse.errors import UserError
from purse.home import Home
from purse.protocol import KeyRef
from purse.rolekeys import load_role_keys, role_key_path
from purse.sealed import SealedFileError


def test_round_trip_file_is_private_and_holds_no_plaintext_key(personalization_home: Path) -> None:
    home = Home.open(personalization_home)
    store = load_issuer(home, PASSPHRASE)
    again = load_keystore(home.keystore_path, PASSPHRASE)
    assert again.masters == store.masters and set(store.masters) == set(MASTER_NAMES)
    assert again.public_key_bytes == store.public_key_bytes
    assert all(len(k) == 16 for vs in store.masters.values() for k in vs.values())
    assert stat.S_IMODE(home.keystore_path.stat().st_mode) == 0o600
    raw = home.keystore_path.read_bytes()
    for versions in store.masters.values():
        for key in versions.values():
            assert key.hex().encode() not in raw and key not in raw


def test_init_refuses_to_overwrite(personalization_home: Path) -> None:
    with pytest.raises(UserError, match="already exists"):
        init_keystore(Home.open(personalization_home), PASSPHRASE)


def test_wrong_passphrase_is_one_line(personalization_home: Path) -> None:
    with pytest.raises(SealedFileError, match="wrong passphrase") as e:
        load_issuer(Home.open(personalization_home), "not it")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("where", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_a_flipped_byte_is_detected(personalization_home: Path, where: float) -> None:
    path = Home.open(personalization_home).keystore_path
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SealedFileError) as e:
        load_keystore(path, PASSPHRASE)
    assert "\n" not in str(e.value)


def test_header_tampering_fails_authentication(personalization_home: Path) -> None:
    """Lowering the scrypt cost (a downgrade) is caught: the header is GCM associated data."""
    path = Home.open(personalization_home).keystore_path
    outer = json.loads(path.read_bytes())
    outer["header"]["kdf"]["n"] = 2**14
    path.write_text(json.dumps(outer))
    with pytest.raises(SealedFileError, match="wrong passphrase, or the file was altered"):
        load_keystore(path, PASSPHRASE)


def test_missing_keystore(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="keys init"):
        load_issuer(Home.open(tmp_path / "nowhere"), PASSPHRASE)


@pytest.mark.parametrize(("role", "refs", "term"), [
    ("pos", {KeyRef.DEBIT}, False), ("credit", {KeyRef.CREDIT}, False), ("processing", {KeyRef.TXN}, True)])
def test_role_files_hold_only_their_keys(personalization_home: Path, role: str, refs: set[KeyRef],
                                         term: bool) -> None:
    home = Home.open(personalization_home)
    store = load_issuer(home, PASSPHRASE)
    terminal = 7 if role == "pos" else None
    path = role_key_path(home, role, terminal)
    write_role_keys(path, store.role_keys(role, terminal, 3), "file passphrase")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = load_role_keys(path, "file passphrase")
    assert set(keys.masters) == refs and keys.role == role
    assert keys.term_masters == (store.masters["TERM"] if term else {})
    assert keys.issuer_public_key == store.public_key_bytes
    raw = path.read_bytes()
    for name in MASTER_NAMES:
        assert store.masters[name][1].hex().encode() not in raw
    if role == "pos":
        assert keys.terminal_id == 7 and keys.merchant_id == 3
        assert keys.log_key == crypto.terminal_log_key(store.masters["TERM"][1], 7, store.system_identifier)
        assert keys.sam().log_key == keys.log_key
    else:
        assert keys.log_key is None and keys.merchant_id is None
    with pytest.raises(SealedFileError, match="wrong passphrase"):
        load_role_keys(path, PASSPHRASE)


def test_a_keystore_is_not_a_role_file(personalization_home: Path) -> None:
    with pytest.raises(SealedFileError, match="not a role-keys file"):
        load_role_keys(Home.open(personalization_home).keystore_path, PASSPHRASE)


def test_rotation_adds_a_version_and_keeps_the_old(personalization_home: Path) -> None:
    home = Home.open(personalization_home)
    before = load_issuer(home, PASSPHRASE)
    after = rotate_keystore(home, PASSPHRASE)
    assert after.current_version == 2
    for name in MASTER_NAMES:
        assert after.masters[name][1] == before.masters[name][1]
        assert after.masters[name][2] != before.masters[name][1]
    pos = after.role_keys("pos", 9, 1)
    assert pos.versions(KeyRef.DEBIT) == [1, 2] and pos.log_key_version == 2
    assert load_issuer(home, PASSPHRASE).current_version == 2


def test_passphrase_from_environment_and_empty_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "s3cret")
    assert get_passphrase() == "s3cret"
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "")
    with pytest.raises(UserError, match="empty"):
        get_passphrase()
