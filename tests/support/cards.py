"""The purse test world: an issuer with fixed master keys, real virtual cards, real terminals.

Cards are personalized exactly as a personalization station does it (OPEN SESSION under
the transport key, PUT KEY x4, WRITE FILE, SET PIN, LOCK), so every test drives the real
applet through the real host session. The fixtures in conftest.py wrap ``make_issuer``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path

from purse import crypto
from purse.card.applet import PurseApplet
from purse.card.storage import FileStorage, Storage, write_image_file
from purse.protocol import AID, DEFAULT_SYSTEM_IDENTIFIER, DEFAULT_TRANSPORT_KEY, KeyRef
from purse.records import PointsSlot
from purse.sam import SoftwareSam
from purse.session import PurseSession
from purse.terminal import CreditTerminal, Terminal
from purse.terminal_log import TerminalLog
from purse.transport import Transport
from purse.transport.virtual import VirtualTransport
from purse.transport.virtual_desfire import VirtualDesfireTransport

CARD_NUMBER = "6001000000000016"
PIN = "1234"
NOW = 1_700_000_000
MERCHANT = 42
CARD_KEYS = (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)


@dataclass
class Issuer:
    """Master keys and the SAMs each role gets from them (docs/design.md, "Key hierarchy")."""

    masters: dict[KeyRef, dict[int, bytes]]
    term_master: bytes

    def issuer_sam(self) -> SoftwareSam:
        return SoftwareSam(self.masters)

    def log_key(self, terminal_id: int) -> bytes:
        return crypto.terminal_log_key(self.term_master, terminal_id, DEFAULT_SYSTEM_IDENTIFIER)

    def pos_sam(self, terminal_id: int = 7) -> SoftwareSam:
        return SoftwareSam({KeyRef.DEBIT: self.masters[KeyRef.DEBIT]}, log_key=self.log_key(terminal_id))

    def credit_sam(self, terminal_id: int = 900) -> SoftwareSam:
        return SoftwareSam({KeyRef.CREDIT: self.masters[KeyRef.CREDIT]}, log_key=self.log_key(terminal_id))

    def admin_sam(self) -> SoftwareSam:
        return SoftwareSam({KeyRef.ADMIN: self.masters[KeyRef.ADMIN]})

    def card_key(self, ref: KeyRef, uid: bytes, version: int = 1) -> bytes:
        return self.issuer_sam().card_key(ref, version, uid)

    # -- cards ------------------------------------------------------------------------
    def personalize(self, storage: Storage, *, number: str = CARD_NUMBER, expiry: int = 0,
                    max_balance: int = 1_000_000, pin: str | None = PIN,
                    slots: dict[int, PointsSlot] | None = None) -> None:
        transport = VirtualTransport(storage)
        transport.connect()
        session = PurseSession(transport, self.issuer_sam())
        info = session.select()
        session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
        for ref in CARD_KEYS:
            session.put_key(ref, 1, self.card_key(ref, info.uid))
        session.write_id(number, 600100, expiry, 643, max_balance)
        for index, slot in (slots or {}).items():
            session.write_points(index, slot)
        if pin is not None:
            session.set_pin(pin)
        session.lock()
        storage.writes = 0

    def card(self, *, balance: int = 0, uid: bytes | None = None, **kwargs: object) -> VirtualTransport:
        """A personalized card in memory, loaded with ``balance`` minor units, powered up."""
        storage = PurseApplet.manufacture(uid)
        self.personalize(storage, **kwargs)  # type: ignore[arg-type]
        return self._ready(VirtualTransport(storage), balance)

    def file_card(self, path: Path, *, balance: int = 0, uid: bytes | None = None,
                  **kwargs: object) -> VirtualTransport:
        """The same card with its memory in a card-image file (pwrite + fsync per write)."""
        memory = PurseApplet.manufacture(uid)
        self.personalize(memory, **kwargs)  # type: ignore[arg-type]
        write_image_file(path, memory.image_bytes())
        return self._ready(VirtualTransport(FileStorage(path, memory.size, memory.journal_size)), balance)

    def desfire_card(self, *, balance: int = 0, uid: bytes | None = None, number: str = CARD_NUMBER,
                     expiry: int = 0, max_balance: int = 1_000_000) -> VirtualDesfireTransport:
        """A blank emulated DESFire EV2 card issued with the purse profile, loaded, powered up."""
        from purse.desfire.personalization import personalize_desfire

        transport = VirtualDesfireTransport.blank(uid)
        personalize_desfire(transport, self.issuer_sam(), number=number, issuer_id=600100, expiry=expiry,
                            currency=643, max_balance=max_balance, key_version=1)
        if balance:
            self.load(transport, balance)
        transport.connect()
        transport.storage.writes = 0
        return transport

    def _ready(self, transport: VirtualTransport, balance: int) -> VirtualTransport:
        if balance:
            self.load(transport, balance)
        transport.connect()
        transport.storage.writes = 0
        return transport

    def load(self, transport: Transport, amount: int, when: int = NOW) -> None:
        """Credit ``amount`` as the desk would, on a card of either profile (no desk log)."""
        from purse.profiles import select_card

        transport.connect()
        session, _ = select_card(transport, self.credit_sam())
        session.open(KeyRef.CREDIT, 900)
        session.credit(amount, when, 1)

    # -- terminals ------------------------------------------------------------------------
    def terminal(self, transport: Transport, *, terminal_id: int = 7, log_path: Path | str = ":memory:",
                 hotlist: Container[str] = frozenset(), clock: Callable[[], float] | None = None) -> Terminal:
        sam = self.pos_sam(terminal_id)
        log = TerminalLog(log_path, terminal_id=terminal_id, merchant_id=MERCHANT, log_key=sam.log_key)
        return Terminal(transport, sam, log, terminal_id=terminal_id, merchant_id=MERCHANT, hotlist=hotlist,
                        clock=clock or (lambda: NOW))

    def credit_terminal(self, transport: Transport, *, terminal_id: int = 900,
                        log_path: Path | str = ":memory:") -> CreditTerminal:
        sam = self.credit_sam(terminal_id)
        log = TerminalLog(log_path, terminal_id=terminal_id, merchant_id=0, log_key=sam.log_key)
        return CreditTerminal(transport, sam, log, terminal_id=terminal_id, clock=lambda: NOW)


def make_issuer(seed: bytes = b"purse-tests") -> Issuer:
    """Master keys derived from ``seed``: deterministic, so a failing example replays."""
    root = crypto.cmac(bytes(16), seed)
    masters = {ref: {1: crypto.cmac(root, ref.name.encode())} for ref in CARD_KEYS}
    return Issuer(masters, crypto.cmac(root, b"TERM"))


class RawCard:
    """Speaks bytes to a card, every field built here by hand (docs/protocol.md).

    Unlike ``PurseSession`` it never raises on a status word: tests see each one, and the
    card's MACs are computed from the documented inputs, not by the library under test.
    """

    def __init__(self, transport: VirtualTransport, issuer: Issuer) -> None:
        self.transport = transport
        self.issuer = issuer
        self.uid = b""
        self.mac_key = b""
        self.enc_key = b""
        self.card_random = b""
        self.seq = 0

    def send(self, raw: bytes) -> tuple[bytes, int]:
        answer = self.transport.transmit(raw)
        return answer[:-2], int.from_bytes(answer[-2:], "big")

    def select(self) -> tuple[bytes, int]:
        data, sw = self.send(bytes.fromhex("00A40400") + bytes([len(AID)]) + AID + b"\x00")
        if sw == 0x9000:
            self.uid = data[1:8]
        return data, sw

    def open(self, ref: int, terminal_id: int = 7, program_id: int = 0, *, key: bytes | None = None,
             terminal_random: bytes = b"TRMRANDM", verify: bool = True) -> tuple[bytes, int]:
        """OPEN SESSION; on 9000 derive the session keys and check the card's cryptogram."""
        cmd = terminal_id.to_bytes(4, "big") + program_id.to_bytes(2, "big") + terminal_random
        data, sw = self.send(bytes([0x80, 0x8A, ref, 0x00, len(cmd)]) + cmd + b"\x00")
        if sw != 0x9000:
            return data, sw
        if key is None:
            key = self.issuer.card_key(KeyRef(ref), self.uid)
        self.card_random = data[:8]
        material = terminal_random + self.card_random
        self.mac_key = crypto.cmac(key, b"\x01SPMAC" + material)
        self.enc_key = crypto.cmac(key, b"\x02SPENC" + material)
        self.seq = 0
        expected = crypto.mac8(self.mac_key, b"K" + cmd + data[:-8])
        if verify and not crypto.macs_equal(expected, data[-8:]):
            raise AssertionError("card cryptogram does not verify")
        return data, sw

    def command(self, ins: int, body: bytes, p1: int = 0, p2: int = 0, *, cla: int = 0x80,
                seq: int | None = None) -> bytes:
        """The bytes of a secured command with its MAC (seq defaults to the next one)."""
        n = self.seq + 1 if seq is None else seq
        mac = crypto.mac8(self.mac_key, b"C" + n.to_bytes(2, "big") + bytes((cla, ins, p1, p2)) + body)
        data = body + mac
        return bytes((cla, ins, p1, p2, len(data))) + data + b"\x00"

    def secured(self, ins: int, body: bytes, p1: int = 0, p2: int = 0, *, cla: int = 0x80,
                bad_mac: bool = False) -> tuple[bytes, int]:
        """Send a secured command; on 9000 check the response MAC and strip it."""
        raw = bytearray(self.command(ins, body, p1, p2, cla=cla))
        if bad_mac:
            raw[-2] ^= 0x01
        self.seq += 1
        data, sw = self.send(bytes(raw))
        if sw != 0x9000:
            return data, sw
        payload, mac = data[:-8], data[-8:]
        expected = crypto.mac8(self.mac_key, b"R" + self.seq.to_bytes(2, "big") + bytes((ins,)) + payload)
        if not crypto.macs_equal(expected, mac):
            raise AssertionError("response MAC does not verify")
        return payload, sw

    def pin_block(self, pin: str, card_random: bytes | None = None) -> bytes:
        """ISO 9564 format 2 block || card random, AES-ECB under the session encryption key."""
        block = bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))
        return crypto.encrypt_block(self.enc_key, block + (card_random or self.card_random))


class RecordingTransport:
    """A transport that keeps every command and response: the wire as an eavesdropper sees it."""

    def __init__(self, inner: VirtualTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[bytes, bytes]] = []

    def connect(self) -> bytes:
        return self.inner.connect()

    def transmit(self, apdu: bytes) -> bytes:
        answer = self.inner.transmit(apdu)
        self.exchanges.append((apdu, answer))
        return answer

    def disconnect(self) -> None:
        self.inner.disconnect()

    def commands(self, ins: int) -> list[bytes]:
        return [c for c, _ in self.exchanges if len(c) > 1 and c[1] == ins]
