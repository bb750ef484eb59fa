"""A debit on a virtual card in process: APDUs per debit and host CPU per debit, card included.

Targets (issue 2): at most 3 APDUs after SELECT (we need 2: OPEN SESSION + DEBIT) and at
most 100 microseconds of CPU per debit (>= 10,000 debits/s on one core). Run:

    /work/venv/bin/python -m pytest benchmarks/bench_debit.py --benchmark-enable -q

(a) ``PurseSession.open`` + ``debit`` against the applet over MemoryStorage: the protocol
and crypto cost on both sides; (b) the whole ``Terminal.debit`` (SELECT, recovery check,
OPEN SESSION, DEBIT, write-ahead and completion in the SQLite log), with the log in memory
(CPU only) and in a file (synchronous=FULL: two fsyncs per debit, the real price of
durability on this disk).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from purse import crypto
from purse.card.applet import PurseApplet
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, DEFAULT_TRANSPORT_KEY, KeyRef
from purse.sam import SoftwareSam
from purse.session import PurseSession
from purse.terminal import Terminal
from purse.terminal_log import TerminalLog
from purse.transport.virtual import VirtualTransport

MASTERS = {ref: {1: crypto.cmac(bytes(16), ref.name.encode())}
           for ref in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)}
NOW = 1_700_000_000


class CountingTransport:
    """Counts the APDUs a debit needs."""

    def __init__(self, inner: VirtualTransport) -> None:
        self.inner = inner
        self.sent: list[int] = []

    def connect(self) -> bytes:
        return self.inner.connect()

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu[1])
        return self.inner.transmit(apdu)

    def disconnect(self) -> None:
        self.inner.disconnect()


def loaded_card() -> VirtualTransport:
    """A personalized card holding 40,000,000.00: enough for every round of the benchmark."""
    transport = VirtualTransport(PurseApplet.manufacture())
    transport.connect()
    session = PurseSession(transport, SoftwareSam(MASTERS))
    info = session.select()
    session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
    for ref, versions in MASTERS.items():
        session.put_key(ref, 1, SoftwareSam(MASTERS).card_key(ref, 1, info.uid))
        assert versions
    session.write_id("6001000000000016", 1, 0, 643, 0xFFFFFFFF)
    session.lock()
    session.select()
    session.open(KeyRef.CREDIT, 900)
    session.credit(4_000_000_000, NOW, 1)
    transport.connect()
    return transport


def pos_sam() -> SoftwareSam:
    log_key = crypto.terminal_log_key(crypto.cmac(bytes(16), b"TERM"), 7, DEFAULT_SYSTEM_IDENTIFIER)
    return SoftwareSam({KeyRef.DEBIT: MASTERS[KeyRef.DEBIT]}, log_key=log_key)


def cpu_per_call(fn: object, rounds: int = 5_000) -> float:
    """Process CPU seconds per call, measured over ``rounds`` calls (both sides in process)."""
    start = time.process_time()
    for _ in range(rounds):
        fn()  # type: ignore[operator]
    return (time.process_time() - start) / rounds


def test_apdus_per_debit() -> None:
    wire = CountingTransport(loaded_card())
    terminal = Terminal(wire, pos_sam(), TerminalLog(":memory:", terminal_id=7, merchant_id=1,  # type: ignore[arg-type]
                        log_key=pos_sam().log_key), terminal_id=7, merchant_id=1, clock=lambda: NOW)
    terminal.debit(1_250)
    assert wire.sent == [0xA4, 0x8A, 0x54], [hex(i) for i in wire.sent]
    after_select = len(wire.sent) - 1
    assert after_select <= 3
    print(f"\nAPDUs per debit: {len(wire.sent)} (SELECT + {after_select}: OPEN SESSION, DEBIT)")


def test_session_open_and_debit(benchmark: pytest.FixtureRequest) -> None:
    card = loaded_card()
    session = PurseSession(card, pos_sam())
    session.select()
    seq = iter(range(1, 10**9))

    def debit() -> None:
        session.open(KeyRef.DEBIT, 7)
        session.debit(1, NOW, next(seq))

    benchmark.extra_info["cpu_us_per_debit"] = round(cpu_per_call(debit) * 1e6, 1)
    benchmark(debit)


def test_terminal_debit_log_in_memory(benchmark: pytest.FixtureRequest) -> None:
    sam = pos_sam()
    terminal = Terminal(loaded_card(), sam, TerminalLog(":memory:", terminal_id=7, merchant_id=1,
                        log_key=sam.log_key), terminal_id=7, merchant_id=1, clock=lambda: NOW)
    benchmark.extra_info["cpu_us_per_debit"] = round(cpu_per_call(lambda: terminal.debit(1)) * 1e6, 1)
    benchmark(terminal.debit, 1)


def test_terminal_debit_log_on_disk(benchmark: pytest.FixtureRequest, tmp_path: Path) -> None:
    sam = pos_sam()
    terminal = Terminal(loaded_card(), sam, TerminalLog(tmp_path / "t.db", terminal_id=7, merchant_id=1,
                        log_key=sam.log_key), terminal_id=7, merchant_id=1, clock=lambda: NOW)
    benchmark.extra_info["cpu_us_per_debit"] = round(cpu_per_call(lambda: terminal.debit(1), 500) * 1e6, 1)
    benchmark(terminal.debit, 1)
