"""One APDU through pcscd + vsmartcard-vpcd + pyscard, round trip (the PC/SC transport's cost).

The vpcd bridge sets TCP_NODELAY and re-arms TCP_QUICKACK after every read: vpcd writes
the length and the body separately, and without both every answer waited ~40 ms for a
delayed ACK. Run (needs pcscd, vsmartcard-vpcd and the pcsc extra):

    /work/venv/bin/python -m pytest benchmarks/bench_pcsc.py --benchmark-enable -q
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import pcsc_env  # noqa: E402

from purse.protocol import AID  # noqa: E402

SELECT = bytes((0x00, 0xA4, 0x04, 0x00, len(AID))) + AID + b"\x00"


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pcsc_env.running(tmp_path_factory.mktemp("pcsc")) as env:
        yield env.reader


def test_select_round_trip(benchmark, reader: str) -> None:  # type: ignore[no-untyped-def]
    from purse.transport.pcsc import PcscTransport

    transport = PcscTransport(reader)
    transport.connect()
    answer = benchmark(transport.transmit, SELECT)
    transport.disconnect()
    assert answer[-2:] == b"\x90\x00"
