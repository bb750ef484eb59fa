"""The virtual card served to pcscd through Debian's vsmartcard-vpcd reader driver.

With this bridge running, pyscard and every PC/SC tool (``pcsc_scan``, ``scriptor``,
``opensc-tool``) see a real reader with our card in it, so the PC/SC path is tested
end to end without hardware (docs/design.md, "Transports").

vpcd listens on 127.0.0.1:35963 (slot 0, reader "Virtual PCD 00 00") and 35964 (slot 1);
the card side connects to it. Each message, both ways, is a 2-byte big-endian length
then the bytes. A one-byte message from vpcd is a control: 0 power off, 1 power on,
2 reset, 4 "send your ATR"; anything longer is a command APDU to answer. vpcd polls
presence with the ATR request, so a closed connection is a card taken out of the
reader and a new connection a card put in.
"""

from __future__ import annotations

import logging
import signal
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from purse.card.storage import CardTorn, FileStorage, Storage
from purse.transport import TRAFFIC, traced
from purse.transport.chips import Chip, open_image, power_up

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963  # vpcd's first slot, as configured by /etc/reader.conf.d/vpcd
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
CONTROL_CODES = frozenset((POWER_OFF, POWER_ON, RESET, GET_ATR))
WRONG_LENGTH = bytes.fromhex("6700")  # ISO 7816-4: what a card answers a command too short to be one
LENGTH = struct.Struct(">H")
POLL_S = 0.2  # how often a blocked read looks at the stop event
REMOVED_FOR_S = 1.0  # longer than pcscd's 400 ms presence poll, so it sees the card go


def reader_name(port: int = DEFAULT_PORT) -> str:
    """The reader name pcscd gives the vpcd slot on ``port`` (Debian's reader.conf.d/vpcd)."""
    slot = port - DEFAULT_PORT
    return f"Virtual PCD 00 {slot:02d}" if slot in (0, 1) else f"the vpcd reader listening on port {port}"


class _Removed(Exception):
    """The connection to vpcd is gone (or we dropped it): the card is out of the reader."""


class VpcdBridge:
    """One virtual card in one vpcd slot, until ``stop`` is called.

    ``run`` blocks (the ``cards serve`` command); ``start`` runs it in a daemon thread
    (tests). ``insert`` swaps the card: the current one is taken out, the new one put in.
    """

    def __init__(self, storage: Storage, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 removed_for: float = REMOVED_FOR_S, max_backoff: float = 2.0,
                 on_reach: Callable[[bool], None] | None = None) -> None:
        self.host, self.port = host, port
        # Told whenever vpcd becomes reachable or stops being so (first attempt included), so a
        # command can say "pcscd is not listening" instead of waiting in silence.
        self.on_reach = on_reach
        self._reached: bool | None = None
        self.removed_for, self.max_backoff = removed_for, max_backoff
        self.stop_event = threading.Event()
        self.presented = threading.Event()  # set while connected to vpcd
        self.insertions = 0  # connections made so far: lets a caller wait for a swap to finish
        self._storage = storage
        self._next: Storage | None = None
        self._chip: Chip | None = None
        self._atr = b""
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"vpcd-bridge-{self.port}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def insert(self, storage: Storage) -> None:
        """Take the current card out and put ``storage``'s card in (after ``removed_for``)."""
        with self._lock:
            self._next = storage
        self._drop()

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Present the card until stopped, re-presenting it after every removal or tear."""
        if stop_event is not None:
            self.stop_event = stop_event
        backoff = 0.1
        while not self.stop_event.is_set():
            self._swap_card()
            sock = self._connect()
            if sock is None:
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 0.1
            try:
                self._serve(sock)
            except _Removed:
                pass
            finally:
                self._close(sock)
            self.stop_event.wait(self.removed_for)

    # -- the connection ------------------------------------------------------------------
    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError as e:
            log.debug("vpcd at %s:%d not listening yet: %s", self.host, self.port, e)
            self._reach(False)
            return None
        self._reach(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(POLL_S)
        self._sock = sock
        self.insertions += 1
        self.presented.set()
        log.info("card presented to vpcd at %s:%d", self.host, self.port)
        return sock

    def _reach(self, reached: bool) -> None:
        if reached != self._reached:
            self._reached = reached
            if self.on_reach is not None:
                self.on_reach(reached)

    def _close(self, sock: socket.socket) -> None:
        self.presented.clear()
        self._sock = None
        self._chip = None
        try:
            sock.close()
        except OSError:
            pass

    def _drop(self) -> None:
        """Pull the card: shut the socket down so the serving loop sees the removal."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _swap_card(self) -> None:
        with self._lock:
            if self._next is not None:
                self._storage, self._next = self._next, None
                self._atr = b""  # the next card may be of the other kind

    def _read(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if self.stop_event.is_set():
                raise _Removed()
            try:
                chunk = sock.recv(n - len(buf))
                _quick_ack(sock)
            except TimeoutError:
                continue
            except OSError as e:
                raise _Removed() from e
            if not chunk:
                raise _Removed()
            buf += chunk
        return buf

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(LENGTH.pack(len(data)) + data)
        except OSError as e:
            raise _Removed() from e

    # -- the card ------------------------------------------------------------------------
    def _serve(self, sock: socket.socket) -> None:
        while True:
            (length,) = LENGTH.unpack(self._read(sock, LENGTH.size))
            message = self._read(sock, length)
            if length == 1 and message[0] in CONTROL_CODES:
                self._control(sock, message[0])
            elif length == 1:  # a one-byte APDU (vpcd frames both alike): a card answers it, it never hangs
                log.log(TRAFFIC, "vpcd > %s (too short for an APDU)", message.hex())
                self._send(sock, WRONG_LENGTH)
            elif length:
                self._send(sock, self._apdu(message))

    def _power_up(self) -> Chip:
        self._chip, self._atr = power_up(self._storage)  # journal recovery, RAM cleared
        return self._chip

    def _control(self, sock: socket.socket, code: int) -> None:
        if code in (POWER_ON, RESET):
            self._power_up()
        elif code == POWER_OFF:
            self._chip = None
        elif code == GET_ATR:
            if not self._atr:
                self._power_up()
            self._send(sock, self._atr)
        else:
            log.warning("vpcd sent unknown control byte %d", code)

    def _apdu(self, apdu: bytes) -> bytes:
        chip = self._chip or self._power_up()  # vpcd powers up first; be a card that tolerates it anyway
        log.log(TRAFFIC, "vpcd > %s", traced(apdu))
        try:
            answer = chip.process(apdu)
        except CardTorn as e:
            log.info("card torn (%s): taken out of the reader", e)
            raise _Removed() from e
        log.log(TRAFFIC, "vpcd < %s", answer.hex())
        return answer


def _quick_ack(sock: socket.socket) -> None:
    """ACK at once: vpcd writes the length and the body in two sends, so with Nagle on its
    side our delayed ACK would hold every answer back 40 ms. Linux re-arms delayed ACKs,
    so this is set after every read."""
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def serve(image_path: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          stop_event: threading.Event | None = None, on_ready: Callable[[str], None] | None = None,
          on_reach: Callable[[bool], None] | None = None) -> None:
    """Serve the card image at ``image_path`` until ``stop_event``, SIGINT or SIGTERM.

    ``on_ready`` gets the reader name once the image has opened, so a caller announces
    only a card that can really be served; ``on_reach`` hears whether pcscd's vpcd driver
    is listening, each time that changes.
    """
    storage = open_image(Path(image_path))
    if on_ready is not None:
        on_ready(reader_name(port))
    stop = stop_event or threading.Event()
    restore = _stop_on_signals()
    try:
        VpcdBridge(storage, host, port, on_reach=on_reach).run(stop)
    except _Signalled:
        pass  # the card leaves the field mid-command at worst: a tear, which its journal is made for
    finally:
        restore()
        if isinstance(storage, FileStorage):
            storage.close()


class _Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwind the serving loop from wherever it is (an interrupt, if it escapes)."""


def _stop_on_signals() -> Callable[[], None]:
    """Turn SIGINT/SIGTERM into ``_Signalled`` raised in the main thread (main thread only); return how to
    undo it. The handler raises rather than setting the stop event: ``Event.set`` takes the event's lock,
    which the interrupted main thread may hold inside ``Event.wait``, and the handler would wait for it
    forever (a ``cards serve`` that ignored SIGTERM, now and then)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Signalled()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
