"""AES EV2 secure messaging of MIFARE DESFire EV2/EV3 (and NTAG 424 DNA): AuthenticateEV2First,
the session keys, and commands wrapped in CommMode.MAC and CommMode.FULL.

Written from NXP's public documents (AN12196, AN12343) and held to AN12196's worked examples
(tests/vectors/desfire_ev2_an12196.json). The shapes, as the card expects them:

* **Session keys** from the two randoms: ``SesAuthENCKey = CMAC(K, SV1)``, ``SesAuthMACKey =
  CMAC(K, SV2)``, ``SV1 = A5 5A 00 01 00 80 || RndA[0:2] || (RndA[2:8] xor RndB[0:6]) || RndB[6:16]
  || RndA[8:16]`` and SV2 the same after ``5A A5``.
* **MAC**: CMAC under the MAC key, truncated to its odd-numbered bytes (8 of 16), over
  ``Cmd || CmdCtr (2 bytes, little end first) || TI || header || data``; an answer's MAC covers
  ``status || CmdCtr+1 || TI || data``.
* **FULL**: the data after the header is padded (80 00 ...) and AES-CBC encrypted under the ENC
  key with ``IV = E(ENC, A5 5A || TI || CmdCtr || 0*8)`` (``5A A5`` and CmdCtr+1 for an answer),
  then MACed as above.

The command counter moves on after every answered command, so a replayed or reordered frame
fails its MAC. MACs are compared in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from purse import crypto
from purse.errors import ExitCode, SmartpurseError

BLOCK = 16
ZERO_IV = bytes(BLOCK)


class CommMode(Enum):
    """How a command's data travels: in the clear, MACed, or encrypted and MACed."""

    PLAIN = "plain"
    MAC = "mac"
    FULL = "full"


class SecureMessagingError(SmartpurseError):
    """An answer whose MAC does not verify, or whose padding is wrong: the frame was altered or replayed."""

    exit_code = ExitCode.CARD_REFUSED


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    worker = cipher.encryptor() if encrypt else cipher.decryptor()
    return worker.update(data) + worker.finalize()


def _rotate_left(data: bytes) -> bytes:
    return data[1:] + data[:1]


def _pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2: 80 then zeros to a whole block (always at least one byte added)."""
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK)


def _unpad(data: bytes) -> bytes:
    end = data.rstrip(b"\x00")
    if not end or end[-1] != 0x80:
        raise SecureMessagingError("the decrypted answer is not padded as EV2 pads it")
    return end[:-1]


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey) of an AuthenticateEV2First with ``rnd_a`` (ours) and ``rnd_b`` (the card's)."""
    if len(rnd_a) != BLOCK or len(rnd_b) != BLOCK:
        raise ValueError("RndA and RndB have 16 bytes")
    tail = rnd_a[0:2] + bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True)) + rnd_b[6:16] + rnd_a[8:16]
    return crypto.cmac(key, b"\xa5\x5a\x00\x01\x00\x80" + tail), crypto.cmac(key, b"\x5a\xa5\x00\x01\x00\x80" + tail)


def truncated_mac(key: bytes, data: bytes) -> bytes:
    """EV2's MACt: the odd-numbered bytes of the CMAC (S1, S3, ..., S15)."""
    return crypto.cmac(key, data)[1::2]


@dataclass
class Authentication:
    """The host's half of AuthenticateEV2First, between the card's two answers."""

    key: bytes
    rnd_a: bytes

    def answer(self, enc_rnd_b: bytes) -> tuple[bytes, bytes]:
        """From the card's first answer (``E(K, RndB)``): the second command's data and RndB."""
        rnd_b = _cbc(self.key, ZERO_IV, enc_rnd_b, encrypt=False)
        return _cbc(self.key, ZERO_IV, self.rnd_a + _rotate_left(rnd_b), encrypt=True), rnd_b

    def finish(self, rnd_b: bytes, enc_answer: bytes) -> Session:
        """From the card's second answer: the session, once the card proved it holds K (RndA' matches)."""
        plain = _cbc(self.key, ZERO_IV, enc_answer, encrypt=False)
        ti, rnd_a_rotated = plain[0:4], plain[4:20]
        if not crypto.macs_equal(rnd_a_rotated, _rotate_left(self.rnd_a)):
            raise SecureMessagingError("the card did not prove it holds the key (RndA' differs)")
        enc_key, mac_key = session_keys(self.key, self.rnd_a, rnd_b)
        return Session(enc_key, mac_key, ti, pd_cap2=plain[20:26], pcd_cap2=plain[26:32])


@dataclass
class Session:
    """An authenticated EV2 session: wraps commands, checks and opens answers, counts commands."""

    enc_key: bytes
    mac_key: bytes
    ti: bytes  # transaction identifier, chosen by the card
    cmd_ctr: int = 0
    pd_cap2: bytes = bytes(6)
    pcd_cap2: bytes = bytes(6)

    def _iv(self, prefix: bytes, counter: int) -> bytes:
        return crypto.encrypt_block(self.enc_key, prefix + self.ti + counter.to_bytes(2, "little") + bytes(8))

    def protect(self, ins: int, data: bytes, mode: CommMode, header_length: int = 0) -> bytes:
        """A native command's data as ``mode`` sends it: MAC appended, and under FULL the data after
        ``header_length`` clear bytes (a file number, an offset) padded and encrypted."""
        if mode is CommMode.PLAIN:
            return data
        header, body = data[:header_length], data[header_length:]
        if mode is CommMode.FULL and body:
            body = _cbc(self.enc_key, self._iv(b"\xa5\x5a", self.cmd_ctr), _pad(body), encrypt=True)
        mac = truncated_mac(self.mac_key, bytes([ins]) + self.cmd_ctr.to_bytes(2, "little") + self.ti + header
                            + body)
        return header + body + mac

    def open(self, status: int, data: bytes, mode: CommMode) -> bytes:
        """The card's answer to the last protected command: its MAC checked (and decrypted under FULL);
        the counter moves on. ``SecureMessagingError`` for a MAC that does not verify."""
        self.cmd_ctr += 1
        if mode is CommMode.PLAIN:
            return data
        if len(data) < 8:
            raise SecureMessagingError("the answer carries no MAC")
        data, mac = data[:-8], data[-8:]
        expected = truncated_mac(self.mac_key, bytes([status]) + self.cmd_ctr.to_bytes(2, "little") + self.ti + data)
        if not crypto.macs_equal(expected, mac):
            raise SecureMessagingError("the answer's MAC does not verify (altered, replayed or out of order)")
        if mode is CommMode.FULL and data:
            return _unpad(_cbc(self.enc_key, self._iv(b"\x5a\xa5", self.cmd_ctr), data, encrypt=False))
        return data

    def wrap(self, apdu: bytes, mode: CommMode, header_length: int = 0) -> bytes:
        """An ISO-wrapped native command (``90 INS 00 00 Lc data 00``) as ``mode`` sends it, in one frame."""
        if len(apdu) < 5 or apdu[0] != 0x90:
            raise ValueError("a wrapped native command starts 90 INS P1 P2")
        if mode is CommMode.PLAIN:
            return apdu
        payload = self.protect(apdu[1], apdu[5:-1] if len(apdu) > 5 else b"", mode, header_length)
        return bytes([0x90, apdu[1], apdu[2], apdu[3], len(payload)]) + payload + b"\x00"

    def unwrap(self, response: bytes, mode: CommMode) -> bytes:
        """The data of a one-frame answer (data, then ``91 status``) to the last wrapped command."""
        if len(response) < 2:
            raise SecureMessagingError("an answer has at least a status word")
        return self.open(response[-1], response[:-2], mode)
