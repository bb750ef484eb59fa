"""Software SAM: holds master keys, derives card keys, computes session MACs.

A terminal never sees a master key: it asks its SAM for a session. A POS SAM holds the
DEBIT masters and its terminal log key, a credit SAM the CREDIT masters, a processing
SAM the TXN and TERM masters (docs/design.md, "Key hierarchy"). A hardware SAM implementing
AN10922 can stand in for this class.
"""

from __future__ import annotations

from collections.abc import Mapping

from purse import crypto
from purse.errors import ExitCode, SmartpurseError
from purse.protocol import AID, DEFAULT_SYSTEM_IDENTIFIER, KeyRef


class MissingKey(SmartpurseError):
    """The SAM does not hold the key a command needs (e.g. a POS SAM asked to load)."""

    exit_code = ExitCode.BAD_INPUT


class SessionCrypto:
    """The keys of one open card session, on the terminal side.

    The encryption key is needed only when a PIN block or a key travels, so a session
    built by ``derive`` computes it on first use: a plain debit never pays for it.
    """

    __slots__ = ("mac", "_enc_key", "_card_key", "_material")

    def __init__(self, sk_mac: bytes, sk_enc: bytes) -> None:
        self.mac = crypto.PrekeyedMac(sk_mac)
        self._enc_key: bytes | None = sk_enc
        self._card_key: crypto.PrekeyedMac | None = None
        self._material = (b"", b"")

    @classmethod
    def derive(cls, card_key: crypto.PrekeyedMac, terminal_random: bytes, card_random: bytes) -> SessionCrypto:
        """The session keys of docs/protocol.md ("Session keys") from a pre-keyed card key."""
        self = cls.__new__(cls)
        self.mac = crypto.PrekeyedMac(crypto.session_mac_key(card_key, terminal_random, card_random))
        self._enc_key = None
        self._card_key = card_key
        self._material = (terminal_random, card_random)
        return self

    @property
    def enc_key(self) -> bytes:
        if self._enc_key is None:
            assert self._card_key is not None
            self._enc_key = crypto.session_enc_key(self._card_key, *self._material)
        return self._enc_key


class SoftwareSam:
    """A SAM in software: holds master keys by version, hands out only what a command needs.

    A card key is derived on demand (AN10922, from the card's UID and the system identifier)
    and used inside session objects; no method returns a master. A terminal's SAM holds its
    role's masters (``purse.rolekeys.RoleKeys.sam``); asking for a key it does not hold raises
    ``MissingKey``. A hardware SAM implementing AN10922 derives the same keys, so it can
    replace this class behind the same methods.
    """
    def __init__(
        self,
        masters: Mapping[KeyRef, Mapping[int, bytes]],
        *,
        log_key: bytes | None = None,
        log_key_version: int = 1,
        system_identifier: bytes = DEFAULT_SYSTEM_IDENTIFIER,
    ) -> None:
        self._masters = {KeyRef(ref): dict(versions) for ref, versions in masters.items()}
        self._log_key = log_key
        self.log_key_version = log_key_version
        self.system_identifier = system_identifier
        self._card_keys: dict[tuple[int, int, bytes], bytes] = {}
        self._card_macs: dict[tuple[int, int, bytes], crypto.PrekeyedMac] = {}

    def holds(self, ref: KeyRef) -> bool:
        return bool(self._masters.get(ref))

    def versions(self, ref: KeyRef) -> list[int]:
        return sorted(self._masters.get(ref, {}))

    def card_key(self, ref: KeyRef, version: int, uid: bytes) -> bytes:
        """The card's key ``ref`` of ``version``: the master diversified by AN10922."""
        cache_key = (ref, version, uid)
        key = self._card_keys.get(cache_key)
        if key is None:
            master = self._masters.get(ref, {}).get(version)
            if master is None:
                raise MissingKey(f"this SAM holds no {ref.name} key of version {version}")
            key = crypto.an10922_diversify(
                master, crypto.card_diversification_input(uid, AID, self.system_identifier)
            )
            if len(self._card_keys) > 4096:
                self._card_keys.clear()
            self._card_keys[cache_key] = key
        return key

    def diversified_key(self, ref: KeyRef, version: int, diversification_input: bytes) -> bytes:
        """Master ``ref`` of ``version`` diversified by AN10922 with an input a card profile defines
        (a DESFire card's keys: ``purse.desfire.profile.diversification_input``)."""
        master = self._masters.get(ref, {}).get(version)
        if master is None:
            raise MissingKey(f"this SAM holds no {ref.name} key of version {version}")
        return crypto.an10922_diversify(master, diversification_input)

    def open_session(self, ref: KeyRef, version: int, uid: bytes,
                     terminal_random: bytes, card_random: bytes) -> SessionCrypto:
        cache_key = (ref, version, uid)
        card_mac = self._card_macs.get(cache_key)
        if card_mac is None:
            card_mac = crypto.PrekeyedMac(self.card_key(ref, version, uid))
            if len(self._card_macs) > 4096:
                self._card_macs.clear()
            self._card_macs[cache_key] = card_mac
        return SessionCrypto.derive(card_mac, terminal_random, card_random)

    def transport_session(self, transport_key: bytes, terminal_random: bytes, card_random: bytes) -> SessionCrypto:
        """A session under a blank card's transport key (personalization only)."""
        return SessionCrypto(*crypto.session_keys(transport_key, terminal_random, card_random))

    @property
    def log_key(self) -> bytes:
        if self._log_key is None:
            raise MissingKey("this SAM holds no terminal log key")
        return self._log_key
