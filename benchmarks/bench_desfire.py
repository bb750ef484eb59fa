"""A purchase on an emulated DESFire EV2 card in process, next to the reference card's (bench_debit.py):
APDUs per purchase and host CPU per purchase, card included. Run:

    .venv/bin/python -m pytest benchmarks/bench_desfire.py --benchmark-enable -q

(a) ``DesfireSession.open`` + ``debit`` against the emulator over MemoryStorage: AuthenticateEV2First,
EV2 secure messaging and the Transaction MAC on both sides; (b) the whole ``Terminal.debit`` (profile
recognition, the identity and TMAC files, recovery check, authentication, Debit, WriteRecord, Commit,
write-ahead and completion in the SQLite log, log in memory), without and with a loyalty program.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from bench_debit import CountingTransport, pos_sam

from purse import crypto
from purse.desfire.personalization import personalize_desfire
from purse.desfire.session import DesfireSession
from purse.points import PointsUpdate
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, KeyRef
from purse.records import PointsSlot
from purse.sam import SoftwareSam
from purse.terminal import Terminal
from purse.terminal_log import TerminalLog
from purse.transport.virtual_desfire import VirtualDesfireTransport

MASTERS = {ref: {1: crypto.cmac(bytes(16), ref.name.encode())}
           for ref in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)}
NOW = 1_700_000_000
PROGRAM = 0x0501


class OnePointPerUnit:
    program_id = PROGRAM

    def apply(self, slot: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
        base = slot if slot.program_id else PointsSlot(program_id=PROGRAM)
        return PointsUpdate(slot=replace(base, points=base.points + price, visits=base.visits + 1), amount_due=price,
                            earned=price)


def loaded_desfire() -> VirtualDesfireTransport:
    """An issued DESFire card holding 20,000,000.00: enough for every round of the benchmark."""
    transport = VirtualDesfireTransport.blank()
    sam = SoftwareSam(MASTERS, system_identifier=DEFAULT_SYSTEM_IDENTIFIER)
    personalize_desfire(transport, sam, number="6001000000000016", issuer_id=1, expiry=0, currency=643,
                        max_balance=2**31 - 1, key_version=1)
    desk = DesfireSession(transport, SoftwareSam({KeyRef.CREDIT: MASTERS[KeyRef.CREDIT]}))
    desk.select()
    desk.open(KeyRef.CREDIT, 900)
    desk.credit(2_000_000_000, NOW, 1)
    transport.connect()
    return transport


def _terminal(card: object) -> Terminal:
    sam = pos_sam()
    return Terminal(card, sam, TerminalLog(":memory:", terminal_id=7, merchant_id=1, log_key=sam.log_key),  # type: ignore[arg-type]
                    terminal_id=7, merchant_id=1, clock=lambda: NOW)


def cpu_per_call(fn: object, rounds: int = 1_000) -> float:
    start = time.process_time()
    for _ in range(rounds):
        fn()  # type: ignore[operator]
    return (time.process_time() - start) / rounds


# What the wire carries: SelectApplication, ReadData (identity), ReadData (TMAC file), AuthenticateEV2First
# and its second frame, GetValue, [ReadData of the program's points entry: two frames], AbortTransaction (the
# reads out of the TMI), Debit, [WriteData of the points: two frames], WriteRecord in two frames, Commit.
WITHOUT_PROGRAM = [0x5A, 0xBD, 0xBD, 0x71, 0xAF, 0x6C, 0xA7, 0xDC, 0x3B, 0xAF, 0xC7]
WITH_PROGRAM = [0x5A, 0xBD, 0xBD, 0x71, 0xAF, 0x6C, 0xBD, 0xAF, 0xA7, 0xDC, 0x3D, 0xAF, 0x3B, 0xAF, 0xC7]


@pytest.mark.parametrize(("points", "expected"), [(None, WITHOUT_PROGRAM), (OnePointPerUnit(), WITH_PROGRAM)],
                         ids=["no program", "with a program"])
def test_apdus_per_desfire_purchase(points: OnePointPerUnit | None, expected: list[int]) -> None:
    wire = CountingTransport(loaded_desfire())  # type: ignore[arg-type]
    terminal = _terminal(wire)
    terminal.debit(1_250, points=points)  # the first presentation also tries the reference card's SELECT
    wire.sent.clear()
    terminal.debit(1_250, points=points)
    assert wire.sent == expected, " ".join(f"{i:02X}" for i in wire.sent)
    print(f"\nAPDUs per DESFire purchase ({'with' if points else 'without'} a program): {len(wire.sent)}")


def test_desfire_session_open_and_debit(benchmark: pytest.FixtureRequest) -> None:
    card = loaded_desfire()
    session = DesfireSession(card, pos_sam())
    seq = iter(range(1, 10**9))

    def debit() -> None:
        session.select()
        session.open(KeyRef.DEBIT, 7)
        session.debit(1, NOW, next(seq))

    benchmark.extra_info["cpu_us_per_debit"] = round(cpu_per_call(debit) * 1e6, 1)
    benchmark(debit)


@pytest.mark.parametrize("points", [None, OnePointPerUnit()], ids=["no program", "with a program"])
def test_terminal_desfire_purchase_log_in_memory(benchmark: pytest.FixtureRequest,
                                                 points: OnePointPerUnit | None) -> None:
    terminal = _terminal(loaded_desfire())
    benchmark.extra_info["cpu_us_per_debit"] = round(cpu_per_call(lambda: terminal.debit(1, points=points)) * 1e6, 1)
    benchmark(terminal.debit, 1, points=points)
