"""Issuing cards: personalize blank chips and record them, in batches that survive failures.

A card is personalized with the session verbs (OPEN SESSION under the transport key,
PUT KEY x4 with AN10922-diversified keys, WRITE FILE ID and POINTS, SET PIN, LOCK),
the same whether the chip is a virtual card in memory or a card in a PC/SC reader.

A batch has a name; each position in it gets a number *reserved* in the database
before anything is written to a card, and the card is *registered* only once it is
written. Running a batch again skips the positions already issued and reuses the
reserved numbers, so no number is lost or issued twice (docs/personalization.md).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from personalization import registry
from personalization.holders_csv import HolderRow
from personalization.imagefiles import make_durable, write_image
from personalization.keystore import Keystore
from personalization.numbering import check_iin
from purse.apdu import ApduError
from purse.desfire.commands import DesfireCard
from purse.desfire.ev2 import SecureMessagingError
from purse.desfire.personalization import personalize_desfire
from purse.desfire.profile import AID as DESFIRE_AID
from purse.desfire.status import ApplicationNotFound
from purse.errors import SmartpurseError, UserError
from purse.home import Home
from purse.profiles import CardChip
from purse.protocol import DEFAULT_TRANSPORT_KEY, CardState, KeyRef
from purse.records import PointsSlot
from purse.sam import SoftwareSam
from purse.session import CardInfo, PurseSession
from purse.transport import Transport
from purse.transport.virtual import VirtualTransport
from purse.transport.virtual_desfire import VirtualDesfireTransport

if TYPE_CHECKING:  # the pool machinery is imported only by a batch that uses it
    from concurrent.futures import ProcessPoolExecutor

CARD_KEYS = (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)
DEFAULT_CHUNK = 1000
# Below this many cards a pool costs more (two forks, pickling) than it saves.
POOL_MIN_CARDS = 500


class IssueFailed(SmartpurseError):
    """A batch stopped part-way; what was issued is registered and the batch can resume."""


class NotBlank(UserError):
    """The card offered for issuing is already personalized."""


@dataclass(frozen=True)
class CardProfile:
    """What every card of a batch gets in its ID file, and the key version it is keyed with."""

    issuer_id: int
    iin: str
    currency: int
    max_balance: int
    expiry: int  # unix seconds; the card refuses purchases and loads after it
    key_version: int
    pin_length: int = 4
    chip: CardChip = CardChip.REFERENCE  # the reference card, or DESFire EV2/EV3 (no PIN: docs/desfire.md)
    deposit: int = 0  # minor units the holder pays for the card, refunded when it is returned (docs/books.md)


def end_of_month(year: int, month: int) -> int:
    """The last second (UTC) of ``month`` of ``year``: cards expire at the end of a month, as printed MM/YY."""
    first_of_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(first_of_next.timestamp()) - 1


def end_of_month_after(years: int, start: datetime | None = None) -> int:
    """The expiry of a card issued at ``start`` (default now) and valid ``years``."""
    start = start or datetime.now(UTC)
    return end_of_month(start.year + years, start.month)


def expiry_month(text: str) -> int:
    """The expiry a person gives as a month, ``2031-12``, as the end of that month."""
    try:
        month = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise UserError(f"--expiry is a month like 2031-12, not {text!r}") from None
    return end_of_month(month.year, month.month)


def card_profile(home: Home, keystore: Keystore, *, max_balance: int | None = None, currency: int | None = None,
                 expiry: int | None = None, chip: CardChip = CardChip.REFERENCE,
                 deposit: int | None = None) -> CardProfile:
    issuer = home.issuer
    profile = CardProfile(
        issuer_id=keystore.issuer_id, iin=check_iin(issuer.iin),
        currency=int(currency if currency is not None else issuer.currency),
        max_balance=int(max_balance if max_balance is not None else issuer.max_balance),
        expiry=expiry if expiry is not None else end_of_month_after(issuer.card_validity_years),
        key_version=keystore.current_version, pin_length=issuer.pin_length, chip=chip,
        deposit=int(deposit if deposit is not None else issuer.card_deposit))
    if not 0 <= profile.deposit < 2**31:
        raise UserError(f"a card deposit is 0 or more minor units, not {profile.deposit}")
    if not 0 < profile.currency < 1000:
        raise UserError(f"currency must be an ISO 4217 numeric code, not {profile.currency}")
    most = 2**31 - 1 if chip is CardChip.DESFIRE else 2**32 - 1  # a DESFire value file is a signed 32-bit value
    if not 0 < profile.max_balance <= most:
        raise UserError(f"maximum balance must be 1..{most} minor units on a {chip} card, not {profile.max_balance}")
    if not time.time() < profile.expiry < 2**32:
        raise UserError("the expiry date must be in the future")
    return profile


def issuer_sam(keystore: Keystore) -> SoftwareSam:
    return SoftwareSam(keystore.card_masters(), system_identifier=keystore.system_identifier)


def generate_pin(length: int = 4) -> str:
    """A random PIN, never a guessable one (all one digit, or a run like 1234 / 4321)."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
        if steps not in ({0}, {1}, {9}):
            return pin


@dataclass(frozen=True)
class CardRequest:
    """One position of a batch: who the card is for and what it carries."""

    index: int
    holder: HolderRow | None = None
    pin: str | None = None
    program: int | None = None
    tier: int | None = None

    def describe(self) -> str:
        if self.holder is not None:
            return f"row {self.holder.row} ({self.holder.name})"
        return f"card {self.index + 1}"


@dataclass(frozen=True)
class IssuedCard:
    index: int
    number: str
    uid: bytes
    pin: str
    holder: str | None
    where: str  # image path or reader name


@dataclass
class IssueReport:
    batch: str
    requested: int
    key_version: int
    issued: list[IssuedCard] = field(default_factory=list)
    already_issued: int = 0  # positions done by an earlier run of this batch
    skipped_holders: dict[str, str] = field(default_factory=dict)  # e-mail -> card they already hold
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.issued) / self.seconds if self.seconds > 0 else 0.0


# -- one card ----------------------------------------------------------------------------
def write_card(session: PurseSession, sam: SoftwareSam, number: str, profile: CardProfile, pin: str,
               program: int | None = None, tier: int | None = None) -> CardInfo:
    """Everything but LOCK: keys, ID, points slot, PIN. The card stays BLANK (re-writable)."""
    info = session.select()
    if info.state != CardState.BLANK:
        raise NotBlank(f"the card {info.uid.hex()} is not blank (it holds card number {info.number})")
    session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
    for ref in CARD_KEYS:
        session.put_key(ref, profile.key_version, sam.card_key(ref, profile.key_version, info.uid))
    session.write_id(number, profile.issuer_id, profile.expiry, profile.currency, profile.max_balance)
    if program:
        session.write_points(0, PointsSlot(program_id=program, tier=tier or 0))
    session.set_pin(pin)
    return info


def personalize(transport: Transport, sam: SoftwareSam, number: str, profile: CardProfile, pin: str,
                program: int | None = None, tier: int | None = None) -> CardInfo:
    """Personalize and lock the blank card behind ``transport``; returns its SELECT before locking."""
    transport.connect()
    session = PurseSession(transport, sam)
    info = write_card(session, sam, number, profile, pin, program, tier)
    session.lock()
    return info


# -- batches into virtual card images -----------------------------------------------------------
def _plan(engine: Engine, batch: str, requests: Sequence[CardRequest], source: str | None,
          report: IssueReport) -> list[CardRequest]:
    done = registry.open_batch(engine, batch, len(requests), source)
    report.already_issued = len(done)
    todo = [r for r in requests if r.index not in done]
    emails = [r.holder.email for r in todo if r.holder is not None]
    if emails:
        report.skipped_holders = registry.holders_with_cards(engine, emails)
        todo = [r for r in todo if r.holder is None or r.holder.email not in report.skipped_holders]
    return todo


def issue_to_images(engine: Engine, sam: SoftwareSam, profile: CardProfile, requests: Sequence[CardRequest],
                    batch: str, folder: Path, *, source: str | None = None, chunk: int = DEFAULT_CHUNK,
                    progress: Callable[[int], None] | None = None,
                    uid_source: Callable[[int], bytes] = os.urandom, workers: int | None = None,
                    on_issued: Callable[[list[IssuedCard]], None] | None = None) -> IssueReport:
    """Issue ``requests`` as card images ``folder/<number>.card``, registering them chunk by chunk.

    Per chunk: one transaction reserves the numbers (with every UID, from ``uid_source``),
    the cards are personalized in memory and their images written, one ``syncfs`` makes
    them durable, one transaction registers them. On a failure the cards finished so far
    are registered before the error propagates, so a re-run of the batch picks up exactly
    where this one stopped.

    Large batches are personalized by worker processes (personalization is pure Python
    and CPU-bound), one chunk ahead: while the workers write chunk k+1, this process makes
    chunk k durable and registers it. Chunk k+1's numbers are already reserved then,
    which is what a resumed batch expects (docs/personalization.md, "Batches and resuming").
    ``workers``: None = one per core for a large batch, 0 = all in this process.
    ``on_issued`` gets each chunk's cards after their images are durable and before they are
    registered (the PINs file: a resumed batch never issues them again, so their PINs must be safe).
    """
    started = time.perf_counter()
    report = IssueReport(batch, len(requests), profile.key_version)
    todo = _plan(engine, batch, requests, source, report)
    folder.mkdir(parents=True, exist_ok=True)
    reserved = registry.reservations(engine, batch)
    if progress is not None and len(requests) - len(todo):
        progress(len(requests) - len(todo))
    workers = _worker_count(len(todo)) if workers is None else max(workers, 0)
    pool = _start_pool(sam, profile, workers) if workers else None
    pending: _Chunk | None = None
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            fresh = registry.reserve(engine, profile.iin, batch,
                                     [(r.index, r.holder, uid_source(7)) for r in part if r.index not in reserved])
            reserved.update({res.batch_index: res for res in fresh})
            jobs = [_job(profile, request, reserved[request.index]) for request in part]
            holder_ids = [reserved[request.index].holder_id for request in part]
            if pool is None:
                here = _Chunk(part, holder_ids, jobs, [_ready(_run(sam, profile, jobs))])
                _finish(engine, profile, batch, folder, report, here, progress, on_issued)
                continue
            step = -(-len(jobs) // workers)
            runs = [pool.submit(_run_in_worker, jobs[i : i + step]) for i in range(0, len(jobs), step)]
            ahead = _Chunk(part, holder_ids, jobs, [run.result for run in runs])
            if pending is not None:
                _finish(engine, profile, batch, folder, report, pending, progress, on_issued)
            pending = ahead
        if pending is not None:
            _finish(engine, profile, batch, folder, report, pending, progress, on_issued)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.perf_counter() - started
    return report


# One card for a worker: (number, uid, pin, program, tier). Plain tuples pickle cheaply.
_Job = tuple[str, bytes, str, int | None, int | None]
# What a run of jobs made: the card images, in order, and the error that stopped it.
_Outcome = tuple[list[bytes], BaseException | None]


@dataclass
class _Chunk:
    """One chunk in flight: its requests, their jobs and the runs writing them (in order; each
    call waits for its run's outcome)."""

    part: list[CardRequest]
    holder_ids: list[int | None]
    jobs: list[_Job]
    runs: list[Callable[[], _Outcome]]


def _ready(outcome: _Outcome) -> Callable[[], _Outcome]:
    return lambda: outcome


def _job(profile: CardProfile, request: CardRequest, res: registry.Reservation) -> _Job:
    pin = "" if profile.chip is CardChip.DESFIRE else request.pin or generate_pin(profile.pin_length)
    return (res.number, res.uid or os.urandom(7), pin, request.program, request.tier)


def _run(sam: SoftwareSam, profile: CardProfile, jobs: Sequence[_Job]) -> _Outcome:
    """Personalize ``jobs`` in memory; stop at the first failure.

    The error is returned, not raised, so the caller still gets the images made
    before it and can write and register exactly those.
    """
    images: list[bytes] = []
    for number, uid, pin, program, tier in jobs:
        try:
            if profile.chip is CardChip.DESFIRE:
                chip = VirtualDesfireTransport.blank(uid)
                personalize_desfire(chip, sam, number=number, issuer_id=profile.issuer_id, expiry=profile.expiry,
                                    currency=profile.currency, max_balance=profile.max_balance,
                                    key_version=profile.key_version, program=program, tier=tier)
                images.append(chip.image_bytes())
                continue
            card = VirtualTransport.blank(uid)
            personalize(card, sam, number, profile, pin, program, tier)
        except Exception as e:  # handed back to the caller, which decides how to report it
            return images, e
        images.append(card.image_bytes())
    return images, None


def _finish(engine: Engine, profile: CardProfile, batch: str, folder: Path, report: IssueReport, chunk: _Chunk,
            progress: Callable[[int], None] | None,
            on_issued: Callable[[list[IssuedCard]], None] | None = None) -> None:
    """Write the chunk's images in order, then make them durable and register them.

    Images are written here, in order, not in the workers: a failed write stops the
    chunk exactly at that card, and the writes never race this process's ``syncfs``.
    """
    rows: list[registry.IssuedRow] = []
    position = 0
    for run in chunk.runs:
        images, error = run()
        for image in images:
            try:
                write_image(folder / f"{chunk.jobs[position][0]}.card", image)
            except OSError as e:
                error = e
                break
            rows.append(_issued(profile, batch, folder, report, chunk.part[position], chunk.holder_ids[position],
                                chunk.jobs[position]))
            position += 1
        if error is not None:
            _register_images(engine, folder, rows, report, on_issued)
            if isinstance(error, (SmartpurseError, OSError)):
                raise IssueFailed(_failure(report, chunk.part[position], error)) from error
            raise error
    _register_images(engine, folder, rows, report, on_issued)
    if progress is not None:
        progress(len(chunk.part))


def _issued(profile: CardProfile, batch: str, folder: Path, report: IssueReport, request: CardRequest,
            holder_id: int | None, job: _Job) -> registry.IssuedRow:
    number, uid, pin, program, tier = job
    path = folder / f"{number}.card"
    report.issued.append(IssuedCard(request.index, number, uid, pin,
                                    request.holder.name if request.holder else None, str(path)))
    return registry.IssuedRow(number, uid, holder_id, profile.key_version, program, tier,
                              profile.currency, profile.max_balance, profile.expiry, batch, image=str(path),
                              deposit=profile.deposit)


# -- worker processes --------------------------------------------------------------------------
_worker: tuple[SoftwareSam, CardProfile] | None = None  # set once in each worker process


def _worker_count(cards: int) -> int:
    """Workers for a batch of ``cards``: none for a small batch, else one per core but one.

    This process keeps one core busy too (it writes the images, syncs and registers);
    more workers than cores slowed a 2-core machine down (benchmarks/bench_issue.py).
    """
    if cards < POOL_MIN_CARDS:
        return 0
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores - 1 if cores > 1 else 0


def _start_pool(sam: SoftwareSam, profile: CardProfile, workers: int) -> ProcessPoolExecutor:
    """Forked workers inherit the SAM (its masters never travel through a pipe or a file)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker,
                               initargs=(sam, profile, os.getpid()))


def _init_worker(sam: SoftwareSam, profile: CardProfile, parent: int) -> None:
    """Die with the issuing process (a SIGKILLed issuer must not leave workers writing images)
    and leave Ctrl-C to it: it reports the batch and shuts the pool down."""
    global _worker
    import ctypes
    import ctypes.util
    import signal

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = getattr(libc, "prctl", None)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = (sam, profile)


def _run_in_worker(jobs: Sequence[_Job]) -> _Outcome:
    assert _worker is not None, "_init_worker runs first in every worker"
    sam, profile = _worker
    return _run(sam, profile, jobs)


def _register_images(engine: Engine, folder: Path, rows: list[registry.IssuedRow], report: IssueReport,
                     on_issued: Callable[[list[IssuedCard]], None] | None) -> None:
    if rows:
        make_durable(folder)  # images on disk before the registry says the cards exist
        if on_issued is not None:  # and their PINs too: a resumed batch will not issue them again
            on_issued(report.issued[-len(rows):])
        registry.register(engine, rows)


def _failure(report: IssueReport, request: CardRequest, error: BaseException) -> str:
    return (f"{request.describe()} failed: {error}; {len(report.issued)} card(s) issued and registered "
            f"before it; run the same command again with --batch {report.batch} to resume")


# -- batches into cards in a PC/SC reader ---------------------------------------------------------
CardPresenter = Callable[[CardRequest], tuple[Transport, CardInfo]]


def issue_to_reader(engine: Engine, sam: SoftwareSam, profile: CardProfile, requests: Sequence[CardRequest],
                    batch: str, reader: str, present: CardPresenter, *, source: str | None = None,
                    progress: Callable[[int], None] | None = None,
                    on_issued: Callable[[list[IssuedCard]], None] | None = None) -> IssueReport:
    """Issue one card at a time into the reader; ``present`` waits for the next blank card.

    The reservation records the chip's UID before anything is written. A card pulled
    before LOCK stays blank (the transport key still opens it), so its number goes back
    to the batch; a card lost *during* LOCK may carry the number, so the number is
    voided, never reused.
    """
    started = time.perf_counter()
    report = IssueReport(batch, len(requests), profile.key_version)
    todo = _plan(engine, batch, requests, source, report)
    for request in todo:
        transport, info = present(request)
        res, attempt = registry.reservation_for(engine, batch, request.index)
        if res is not None and res.uid not in (None, info.uid):
            registry.void_number(engine, res.number, f"process stopped while writing card {res.uid.hex()}")
            res = None
        if res is None:
            (res,) = registry.reserve(engine, profile.iin, batch, [(request.index, request.holder, info.uid)],
                                      attempt)
        else:
            registry.set_reservation_uid(engine, res.number, info.uid)
        pin = "" if profile.chip is CardChip.DESFIRE else request.pin or generate_pin(profile.pin_length)
        if profile.chip is CardChip.DESFIRE:
            try:  # one pass from a format: a card pulled half-way may hold the number, which is never reused
                personalize_desfire(transport, sam, number=res.number, issuer_id=profile.issuer_id,
                                    expiry=profile.expiry, currency=profile.currency,
                                    max_balance=profile.max_balance, key_version=profile.key_version,
                                    program=request.program, tier=request.tier)
            except SmartpurseError as e:
                registry.void_number(engine, res.number, f"DESFire card {info.uid.hex()} pulled while issued")
                transport.disconnect()
                raise IssueFailed(_failure(report, request, e)) from e
        else:
            _write_and_lock(engine, transport, sam, res.number, profile, pin, request, report, info)
        transport.disconnect()
        card = IssuedCard(request.index, res.number, info.uid, pin, request.holder.name if request.holder else None,
                          reader)
        if on_issued is not None:  # the PIN is safe before the card counts as issued
            on_issued([card])
        registry.register(engine, [registry.IssuedRow(
            res.number, info.uid, res.holder_id, profile.key_version, request.program, request.tier,
            profile.currency, profile.max_balance, profile.expiry, batch, reader=reader, deposit=profile.deposit)])
        report.issued.append(card)
        if progress is not None:
            progress(1)
    report.seconds = time.perf_counter() - started
    return report


def _write_and_lock(engine: Engine, transport: Transport, sam: SoftwareSam, number: str, profile: CardProfile,
                    pin: str, request: CardRequest, report: IssueReport, info: CardInfo) -> None:
    """A reference card: everything but LOCK (a failure leaves it blank: the number goes back), then LOCK
    (a card lost during it may carry the number: voided)."""
    session = PurseSession(transport, sam)
    try:
        write_card(session, sam, number, profile, pin, request.program, request.tier)
    except SmartpurseError as e:
        registry.set_reservation_uid(engine, number, None)
        transport.disconnect()
        raise IssueFailed(_failure(report, request, e)) from e
    try:
        session.lock()
    except SmartpurseError as e:
        registry.void_number(engine, number, f"card {info.uid.hex()} lost during LOCK")
        transport.disconnect()
        raise IssueFailed(_failure(report, request, e)) from e


def requests_for_count(count: int, *, program: int | None = None, tier: int | None = None) -> list[CardRequest]:
    if count <= 0:
        raise UserError(f"--count must be at least 1, not {count}")
    return [CardRequest(i, program=program, tier=tier) for i in range(count)]


def requests_for_holders(rows: Sequence[HolderRow], *, program: int | None = None,
                         tier: int | None = None) -> list[CardRequest]:
    return [CardRequest(i, h, h.pin, h.program or program, h.tier if h.tier is not None else tier)
            for i, h in enumerate(rows)]


def _blank_desfire(transport: Transport) -> CardInfo:
    """A DESFire card's UID as a blank card's ``CardInfo``; PERSONALIZED when it carries the purse already."""
    card = DesfireCard(transport)
    uid = card.get_version().uid
    try:
        card.select_application(DESFIRE_AID)
        state = CardState.PERSONALIZED
    except ApplicationNotFound:
        state = CardState.BLANK
    return CardInfo(state, uid, "an issued DESFire card", 0, 0, 0, 0, 0, 0, 0)


def pcsc_presenter(sam: SoftwareSam, reader: str | None, say: Callable[[str], None], *,
                   timeout: float = 120.0, chip: CardChip = CardChip.REFERENCE) -> CardPresenter:
    """Ask for each card, then wait until a *blank* card of ``chip`` is in ``reader`` (PC/SC): a reference
    card not yet locked, or a DESFire card without the purse application."""
    from purse.transport import TransportError
    from purse.transport.pcsc import NoCard, PcscTransport, wait_for_card

    def present(request: CardRequest) -> tuple[Transport, CardInfo]:
        say(f"insert a blank card for {request.describe()} into {reader or 'the reader'}")
        deadline = time.monotonic() + timeout
        warned: set[bytes] = set()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoCard(f"no blank card for {request.describe()} in {reader or 'any reader'} "
                             f"within {timeout:g} s")
            wait_for_card(reader, left)
            transport = PcscTransport(reader)
            try:
                transport.connect()
                info = _blank_desfire(transport) if chip is CardChip.DESFIRE else PurseSession(transport, sam).select()
            except (TransportError, ApduError, SecureMessagingError):
                transport.disconnect()
                continue
            if info.state == CardState.BLANK:
                say(f"writing card {info.uid.hex()} for {request.describe()}")
                return transport, info
            transport.disconnect()
            if info.uid not in warned:
                warned.add(info.uid)
                say(f"the card in the reader is not blank (card {info.number}): take it out")
            time.sleep(0.3)

    return present
