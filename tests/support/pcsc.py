"""The PC/SC test environment: real pcscd, real vsmartcard-vpcd, real pyscard.

A ``VpcdBridge`` thread puts a virtual card in vpcd's reader, so tests drive it through
pcscd exactly as a terminal drives a card in a USB reader. The fixtures in conftest.py
are thin wrappers over ``running``; tests that need another card in the reader (blank,
personalized, their own image) call ``PcscEnv.serve*``.

pcscd is started here rather than by .ci/run, so ``pytest`` alone works the same on a
developer machine and in CI. Missing parts skip the tests, except under CI, where a
skipped hardware path would hide a broken one: there they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from purse.card.applet import PurseApplet
from purse.card.storage import MemoryStorage, Storage
from purse.protocol import DEFAULT_TRANSPORT_KEY, KeyRef
from purse.sam import SoftwareSam
from purse.session import CardInfo, PurseSession
from purse.transport import Transport
from purse.transport.chips import open_image
from purse.transport.pcsc import wait_for_card
from purse.transport.virtual import VirtualTransport
from purse.transport.vpcd import DEFAULT_PORT, VpcdBridge, reader_name

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_CONFIG = Path("/etc/reader.conf.d/vpcd")  # pcscd reads /etc/reader.conf.d by default
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
CARD_NUMBER = "6277000000000011"
READY_TIMEOUT = 15.0
KEY_REFS = (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)


def missing_parts() -> str | None:
    """Why the PC/SC path cannot run here, or None when everything is installed."""
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_DRIVER.exists() or not VPCD_CONFIG.exists():
        return "the vpcd reader driver is not installed (apt-get install vsmartcard-vpcd)"
    try:
        import smartcard  # noqa: F401
    except ImportError:
        return "pyscard is not installed (pip install -e '.[pcsc]')"
    return None


def require_pcsc() -> None:
    """Skip when a part is absent; under CI fail instead, so CI really runs these tests."""
    reason = missing_parts()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PC/SC tests, but {reason}", pytrace=False)
    pytest.skip(reason)


def make_sam() -> SoftwareSam:
    """A SAM with fresh random masters: every test session issues its own cards."""
    return SoftwareSam({ref: {1: os.urandom(16)} for ref in KEY_REFS})


def personalize(transport: Transport, sam: SoftwareSam, number: str = CARD_NUMBER, pin: str = "1234",
                max_balance: int = 100_000) -> CardInfo:
    """Issue the blank card behind ``transport`` with the personalization verbs, then lock it."""
    transport.connect()
    session = PurseSession(transport, sam)
    info = session.select()
    session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
    for ref in KEY_REFS:
        session.put_key(ref, 1, sam.card_key(ref, 1, info.uid))
    session.write_id(number, 1, 0, 643, max_balance)
    session.set_pin(pin)
    session.lock()
    return session.select()


def personalized_card(sam: SoftwareSam, number: str = CARD_NUMBER) -> MemoryStorage:
    """A card issued in memory (fast); for tests about using cards, not issuing them."""
    card = PurseApplet.manufacture()
    personalize(VirtualTransport(card), sam, number)
    return card


def pcscd_running() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
    return True


@contextmanager
def pcscd(log_file: Path) -> Iterator[None]:
    """pcscd in the foreground for the session, unless one already runs (then it is reused)."""
    if pcscd_running():
        yield
        return
    with log_file.open("wb") as log:
        process = subprocess.Popen(["pcscd", "--foreground"], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not pcscd_running():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pcscd did not start: {log_file.read_text(errors='replace')[-2000:]}", pytrace=False)
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class PcscEnv:
    """The reader pcscd shows for vpcd, the bridge putting cards in it, and the issuer's SAM."""

    reader: str
    bridge: VpcdBridge
    sam: SoftwareSam = field(default_factory=make_sam)

    def serve(self, card: Storage | Path) -> Storage:
        """Take the card out of the reader and put ``card`` (memory or image file) in; wait for pcscd to see it."""
        storage = card if isinstance(card, Storage) else open_image(card, durable=False)
        seen = self.bridge.insertions
        self.bridge.insert(storage)
        self.wait_until(lambda: self.bridge.insertions > seen, "the bridge to re-present the card")
        self.wait_for_card()
        return storage

    def serve_blank(self) -> MemoryStorage:
        card = PurseApplet.manufacture()
        self.serve(card)
        return card

    def serve_personalized(self, number: str = CARD_NUMBER) -> MemoryStorage:
        card = personalized_card(self.sam, number)
        self.serve(card)
        return card

    def wait_for_card(self) -> None:
        wait_for_card(self.reader, READY_TIMEOUT)

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}", pytrace=False)
            time.sleep(0.05)


@contextmanager
def running(workdir: Path, port: int = DEFAULT_PORT) -> Iterator[PcscEnv]:
    """pcscd up, a personalized card in the vpcd reader on ``port``; everything stopped after."""
    require_pcsc()
    with pcscd(workdir / "pcscd.log"):
        sam = make_sam()
        bridge = VpcdBridge(personalized_card(sam), port=port)
        bridge.start()
        env = PcscEnv(reader_name(port), bridge, sam)
        try:
            env.wait_until(bridge.presented.is_set, f"vpcd to accept on port {port} (is pcscd running with vpcd?)")
            env.wait_for_card()
            yield env
        finally:
            bridge.stop()
