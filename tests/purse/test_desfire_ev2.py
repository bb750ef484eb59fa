"""EV2 secure messaging against NXP AN12196's worked examples (tests/vectors/desfire_ev2_an12196.json).

Every section of the file is used: the authentications (both sides' frames and the session
keys), the MAC-mode command and answer, the FULL-mode commands and the FULL-mode answer.
A byte changed anywhere in an answer makes it fail.
"""

from __future__ import annotations

import json

import pytest
from support import VECTORS

from purse.desfire.ev2 import Authentication, CommMode, SecureMessagingError, Session, session_keys

DATA = json.loads((VECTORS / "desfire_ev2_an12196.json").read_text())
h = bytes.fromhex


def test_every_section_of_the_vectors_is_used() -> None:
    assert set(DATA) == {"source", "checked", "authenticate_ev2_first", "mac_mode", "full_mode"}


@pytest.mark.parametrize("v", DATA["authenticate_ev2_first"], ids=lambda v: v["where"])
def test_authenticate_ev2_first(v: dict[str, str]) -> None:
    auth = Authentication(h(v["key"]), h(v["rnd_a"]))
    command_2, rnd_b = auth.answer(h(v["response_1_enc_rnd_b"]))
    assert command_2 == h(v["command_2_data_enc_rnd_a_rnd_b_rot"])
    session = auth.finish(rnd_b, h(v["response_2_enc"]))
    assert (session.ti, session.enc_key, session.mac_key) == (h(v["ti"]), h(v["ses_auth_enc_key"]),
                                                               h(v["ses_auth_mac_key"]))
    assert session_keys(h(v["key"]), h(v["rnd_a"]), rnd_b) == (h(v["ses_auth_enc_key"]), h(v["ses_auth_mac_key"]))
    forged = bytearray(h(v["response_2_enc"]))
    forged[5] ^= 1
    with pytest.raises(SecureMessagingError, match="RndA"):
        auth.finish(rnd_b, bytes(forged))


def _session(v: dict[str, object]) -> Session:
    return Session(h(str(v.get("ses_auth_enc_key", "00" * 16))), h(str(v["ses_auth_mac_key"])), h(str(v["ti"])),
                   int(v["cmd_ctr"]))  # type: ignore[call-overload]


@pytest.mark.parametrize("v", DATA["mac_mode"], ids=lambda v: v["where"])
def test_mac_mode(v: dict[str, object]) -> None:
    session = _session(v)
    assert session.wrap(h(str(v["plain_apdu"])), CommMode.MAC, header_length=1) == h(str(v["wrapped_apdu"]))
    assert session.unwrap(h(str(v["response"])), CommMode.MAC) == h(str(v["response_data"]))
    assert session.cmd_ctr == 1


@pytest.mark.parametrize("v", DATA["full_mode"], ids=lambda v: v["where"])
def test_full_mode(v: dict[str, object]) -> None:
    session = _session(v)
    wrapped = session.wrap(h(str(v["plain_apdu"])), CommMode.FULL, header_length=int(v["header_length"]))  # type: ignore[call-overload]
    assert wrapped == h(str(v["wrapped_apdu"]))
    assert session.unwrap(h(str(v["response"])), CommMode.FULL) == h(str(v["response_data"]))


@pytest.mark.parametrize("v", DATA["mac_mode"] + DATA["full_mode"], ids=lambda v: v["where"])
def test_an_altered_or_replayed_answer_is_refused(v: dict[str, object]) -> None:
    mode = CommMode.FULL if "header_length" in v else CommMode.MAC
    altered = bytearray(h(str(v["response"])))
    altered[0] ^= 0x01
    with pytest.raises(SecureMessagingError, match="MAC"):
        _session(v).unwrap(bytes(altered), mode)
    session = _session(v)
    session.unwrap(h(str(v["response"])), mode)
    with pytest.raises(SecureMessagingError, match="MAC"):  # the same answer again: the counter moved on
        session.unwrap(h(str(v["response"])), mode)
