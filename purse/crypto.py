"""AES-128 CMAC, NXP AN10922 key diversification, session keys and MAC checks.

Everything cryptographic the card, the SAMs and processing share lives here, so that
the published vectors in ``shared/vectors`` pin it down (docs/protocol.md, "Crypto").
"""

from __future__ import annotations

import functools
import hmac
import os
import threading
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

KEY_SIZE = 16
BLOCK = 16
MAC_SIZE = 8  # every MAC of the protocol, the log chain and the batch: CMAC truncated to 8 bytes
_RB = 0x87

# Diversification constants of AN10922 section 2.2 (AES-128): the input starts with 0x01.
AN10922_AES128_DIV_CONSTANT = 0x01
# Our own labels for session key derivation (docs/protocol.md, "Session keys").
SESSION_MAC_LABEL = b"\x01SPMAC"
SESSION_ENC_LABEL = b"\x02SPENC"


def cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (RFC 4493) of ``data`` under ``key``."""
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def mac8(key: bytes, data: bytes) -> bytes:
    """CMAC truncated to the 8 leftmost bytes, the size of every MAC on the wire."""
    return cmac(key, data)[:MAC_SIZE]


class PrekeyedMac:
    """A CMAC context keyed once and copied per message.

    Keying AES costs more than MACing a 70-byte record; the hot paths (card commands,
    batch verification) key once per key and ``copy()`` the context for each message.
    """

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx = CMAC(algorithms.AES(key))

    def mac(self, data: bytes) -> bytes:
        c = self._ctx.copy()
        c.update(data)
        return c.finalize()[:MAC_SIZE]

    def full(self, data: bytes) -> bytes:
        c = self._ctx.copy()
        c.update(data)
        return c.finalize()


def macs_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison: a MAC check must not leak how many bytes matched."""
    return hmac.compare_digest(a, b)


def _aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def _aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def _shift_left(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    return (value & ((1 << 128) - 1)).to_bytes(BLOCK, "big")


def cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    """K1, K2 of RFC 4493 section 2.3; AN10922 needs them to pad to 32 bytes."""
    return _subkeys(_aes_ecb_encrypt(key, bytes(BLOCK)))


def _subkeys(l_block: bytes) -> tuple[bytes, bytes]:
    """K1, K2 from L = AES(key, 0^128)."""
    k1 = _shift_left(l_block)
    if l_block[0] & 0x80:
        k1 = k1[:-1] + bytes([k1[-1] ^ _RB])
    k2 = _shift_left(k1)
    if k1[0] & 0x80:
        k2 = k2[:-1] + bytes([k2[-1] ^ _RB])
    return k1, k2


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError("xor of blocks of different lengths")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class An10922:
    """AES-128 key diversification of NXP AN10922 section 2.2, keyed once per master.

    D = 0x01 || M, padded with 80 00.. to 32 bytes (K2 when padded, K1 when M is exactly
    31 bytes), CBC-MAC with zero IV; the diversified key is the last block. This differs
    from plain CMAC for short M (CMAC pads to 16, AN10922 always to 32), which is why it
    is written out here rather than delegated to ``cmac``. The two CBC blocks are run
    through one ECB context that is never finalized: keying AES and computing K1/K2 cost
    more than the derivation itself, and processing derives a key per card it sees. The
    context is shared, so a lock keeps two threads from interleaving their blocks.
    """

    __slots__ = ("_ecb", "_k1", "_k2", "_lock")

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_SIZE:
            raise ValueError("AN10922 AES-128 needs a 16-byte master key")
        self._ecb = Cipher(algorithms.AES(master), modes.ECB()).encryptor()
        self._k1, self._k2 = _subkeys(self._ecb.update(bytes(BLOCK)))
        self._lock = threading.Lock()

    def derive(self, diversification_input: bytes) -> bytes:
        data, last_key = self._padded(diversification_input)
        with self._lock:
            first = self._ecb.update(data[:16])
            return self._ecb.update(_xor(_xor(data[16:], last_key), first))

    def derive_many(self, inputs: Sequence[bytes]) -> list[bytes]:
        """``derive`` of each input, in two AES calls for all of them.

        Processing meets tens of thousands of cards for the first time in a day's batches; one by one,
        the Python around each card's two block encryptions cost more than the encryptions. Here the
        first blocks go through AES together, the second blocks are XORed with the subkeys and with those
        outputs as three big integers, and go through together (3.3 -> 1.2 us a card)."""
        firsts, seconds, subkeys = [], [], []
        for m in inputs:
            data, last_key = self._padded(m)
            firsts.append(data[:16])
            seconds.append(data[16:])
            subkeys.append(last_key)
        size = BLOCK * len(firsts)
        if not size:
            return []
        mixed = int.from_bytes(b"".join(seconds), "big") ^ int.from_bytes(b"".join(subkeys), "big")
        with self._lock:
            chained = mixed ^ int.from_bytes(self._ecb.update(b"".join(firsts)), "big")
            keys = self._ecb.update(chained.to_bytes(size, "big"))
        return [keys[i : i + BLOCK] for i in range(0, size, BLOCK)]

    def _padded(self, diversification_input: bytes) -> tuple[bytes, bytes]:
        """D, padded to its two blocks, and the subkey its last block takes."""
        if not 1 <= len(diversification_input) <= 31:
            raise ValueError("AN10922 diversification input must be 1..31 bytes")
        data = bytes([AN10922_AES128_DIV_CONSTANT]) + diversification_input
        if len(data) == 32:
            return data, self._k1
        return data + b"\x80" + bytes(31 - len(data)), self._k2


@functools.lru_cache(maxsize=16)
def _diversifier(master: bytes) -> An10922:
    return An10922(master)


def an10922_diversify(master: bytes, diversification_input: bytes) -> bytes:
    """The AN10922 key of ``diversification_input`` under ``master`` (see ``An10922``)."""
    if len(master) != KEY_SIZE:
        raise ValueError("AN10922 AES-128 needs a 16-byte master key")
    return _diversifier(bytes(master)).derive(diversification_input)


def an10922_diversify_many(master: bytes, inputs: Sequence[bytes]) -> list[bytes]:
    """``an10922_diversify`` of each of ``inputs``, in one pass (``An10922.derive_many``)."""
    if len(master) != KEY_SIZE:
        raise ValueError("AN10922 AES-128 needs a 16-byte master key")
    return _diversifier(bytes(master)).derive_many(inputs)


def card_diversification_input(uid: bytes, aid: bytes, system_identifier: bytes) -> bytes:
    """M = UID || AID || system identifier, as in the AN10922 worked example."""
    return uid + aid + system_identifier


def session_keys(card_key: bytes, terminal_random: bytes, card_random: bytes) -> tuple[bytes, bytes]:
    """(MAC key, encryption key) of one session, from the card key and both randoms.

    Fresh randoms on both sides make every session's keys different, so an APDU recorded
    in one session is worthless in the next (replay protection).
    """
    material = terminal_random + card_random
    return cmac(card_key, SESSION_MAC_LABEL + material), cmac(card_key, SESSION_ENC_LABEL + material)


def session_mac_key(card_key: PrekeyedMac, terminal_random: bytes, card_random: bytes) -> bytes:
    """The MAC half of ``session_keys`` from a card key keyed once (the hot path of a debit)."""
    return card_key.full(SESSION_MAC_LABEL + terminal_random + card_random)


def session_enc_key(card_key: PrekeyedMac, terminal_random: bytes, card_random: bytes) -> bytes:
    """The encryption half of ``session_keys``; derived only when a PIN or key travels."""
    return card_key.full(SESSION_ENC_LABEL + terminal_random + card_random)


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES block under a session encryption key (PIN blocks, keys in PUT KEY)."""
    if len(block) % BLOCK:
        raise ValueError("data must be whole AES blocks")
    return _aes_ecb_encrypt(key, block)


def decrypt_block(key: bytes, block: bytes) -> bytes:
    if len(block) % BLOCK:
        raise ValueError("data must be whole AES blocks")
    return _aes_ecb_decrypt(key, block)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def terminal_log_key(term_master: bytes, terminal_id: int, system_identifier: bytes) -> bytes:
    """A terminal's log key: MK_TERM diversified (AN10922) by "TERM" || terminal id || system id.

    Processing holds MK_TERM and derives every terminal's key; a terminal holds only its own.
    """
    return an10922_diversify(term_master, b"TERM" + terminal_id.to_bytes(4, "big") + system_identifier[:16])
