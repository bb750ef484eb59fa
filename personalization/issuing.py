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

from sqlalchemy import Engine

from personalization import registry
from personalization.holders_csv import HolderRow
from personalization.imagefiles import make_durable, write_image
from personalization.keystore import Keystore
from personalization.numbering import check_iin
from purse.card.applet import PurseApplet
from purse.errors import SmartpurseError, UserError
from purse.home import Home
from purse.protocol import DEFAULT_TRANSPORT_KEY, CardState, KeyRef
from purse.records import PointsSlot
from purse.sam import SoftwareSam
from purse.session import CardInfo, PurseSession
from purse.transport import Transport
from purse.transport.virtual import VirtualTransport

CARD_KEYS = (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)
DEFAULT_CHUNK = 1000


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


def end_of_month_after(years: int, start: datetime | None = None) -> int:
    """Cards expire at the end of a month (as printed MM/YY), ``years`` after ``start``."""
    start = start or datetime.now(UTC)
    year, month = start.year + years, start.month
    first_of_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(first_of_next.timestamp()) - 1


def card_profile(home: Home, keystore: Keystore, *, max_balance: int | None = None, currency: int | None = None,
                 expiry: int | None = None) -> CardProfile:
    issuer = home.issuer
    profile = CardProfile(
        issuer_id=keystore.issuer_id, iin=check_iin(str(issuer["iin"])),
        currency=int(currency if currency is not None else issuer["currency"]),
        max_balance=int(max_balance if max_balance is not None else issuer["max_balance"]),
        expiry=expiry if expiry is not None else end_of_month_after(int(issuer["card_validity_years"])),
        key_version=keystore.current_version, pin_length=int(issuer.get("pin_length", 4)))
    if not 0 < profile.currency < 1000:
        raise UserError(f"currency must be an ISO 4217 numeric code, not {profile.currency}")
    if not 0 < profile.max_balance < 2**32:
        raise UserError(f"maximum balance must be 1..{2**32 - 1} minor units, not {profile.max_balance}")
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
                    uid_source: Callable[[int], bytes] = os.urandom) -> IssueReport:
    """Issue ``requests`` as card images ``folder/<number>.card``, registering them chunk by chunk.

    Per chunk: one transaction reserves the numbers, the cards are personalized in
    memory and written, one ``syncfs`` makes them durable, one transaction registers
    them. On a failure the cards finished so far are registered before the error
    propagates, so a re-run of the batch picks up exactly where this one stopped.
    """
    started = time.perf_counter()
    report = IssueReport(batch, len(requests), profile.key_version)
    todo = _plan(engine, batch, requests, source, report)
    folder.mkdir(parents=True, exist_ok=True)
    reserved = registry.reservations(engine, batch)
    if progress is not None and len(requests) - len(todo):
        progress(len(requests) - len(todo))
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        fresh = registry.reserve(engine, profile.iin, batch,
                                 [(r.index, r.holder, uid_source(7)) for r in part if r.index not in reserved])
        reserved.update({res.batch_index: res for res in fresh})
        rows: list[registry.IssuedRow] = []
        try:
            for request in part:
                rows.append(_issue_image(sam, profile, request, reserved[request.index], batch, folder, report))
        except Exception as e:
            _register_images(engine, folder, rows)
            if isinstance(e, (SmartpurseError, OSError)):
                raise IssueFailed(_failure(report, request, e)) from e
            raise
        _register_images(engine, folder, rows)
        if progress is not None:
            progress(len(part))
    report.seconds = time.perf_counter() - started
    return report


def _issue_image(sam: SoftwareSam, profile: CardProfile, request: CardRequest, res: registry.Reservation,
                 batch: str, folder: Path, report: IssueReport) -> registry.IssuedRow:
    pin = request.pin or generate_pin(profile.pin_length)
    uid = res.uid or os.urandom(7)
    card = PurseApplet.manufacture(uid)
    personalize(VirtualTransport(card), sam, res.number, profile, pin, request.program, request.tier)
    path = folder / f"{res.number}.card"
    write_image(path, card.image_bytes())
    report.issued.append(IssuedCard(request.index, res.number, uid, pin,
                                    request.holder.name if request.holder else None, str(path)))
    return registry.IssuedRow(res.number, uid, res.holder_id, profile.key_version, request.program, request.tier,
                              profile.currency, profile.max_balance, profile.expiry, batch, image=str(path))


def _register_images(engine: Engine, folder: Path, rows: list[registry.IssuedRow]) -> None:
    if rows:
        make_durable(folder)  # images on disk before the registry says the cards exist
        registry.register(engine, rows)


def _failure(report: IssueReport, request: CardRequest, error: BaseException) -> str:
    return (f"{request.describe()} failed: {error}; {len(report.issued)} card(s) issued and registered "
            f"before it; run the same command again with --batch {report.batch} to resume")


# -- batches into cards in a PC/SC reader ---------------------------------------------------------
CardPresenter = Callable[[CardRequest], tuple[Transport, CardInfo]]


def issue_to_reader(engine: Engine, sam: SoftwareSam, profile: CardProfile, requests: Sequence[CardRequest],
                    batch: str, reader: str, present: CardPresenter, *, source: str | None = None,
                    progress: Callable[[int], None] | None = None) -> IssueReport:
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
        pin = request.pin or generate_pin(profile.pin_length)
        session = PurseSession(transport, sam)
        try:
            write_card(session, sam, res.number, profile, pin, request.program, request.tier)
        except SmartpurseError as e:
            registry.set_reservation_uid(engine, res.number, None)
            transport.disconnect()
            raise IssueFailed(_failure(report, request, e)) from e
        try:
            session.lock()
        except SmartpurseError as e:
            registry.void_number(engine, res.number, f"card {info.uid.hex()} lost during LOCK")
            transport.disconnect()
            raise IssueFailed(_failure(report, request, e)) from e
        transport.disconnect()
        registry.register(engine, [registry.IssuedRow(
            res.number, info.uid, res.holder_id, profile.key_version, request.program, request.tier,
            profile.currency, profile.max_balance, profile.expiry, batch, reader=reader)])
        report.issued.append(IssuedCard(request.index, res.number, info.uid, pin,
                                        request.holder.name if request.holder else None, reader))
        if progress is not None:
            progress(1)
    report.seconds = time.perf_counter() - started
    return report


def requests_for_count(count: int, *, program: int | None = None, tier: int | None = None) -> list[CardRequest]:
    if count <= 0:
        raise UserError(f"--count must be at least 1, not {count}")
    return [CardRequest(i, program=program, tier=tier) for i in range(count)]


def requests_for_holders(rows: Sequence[HolderRow], *, program: int | None = None,
                         tier: int | None = None) -> list[CardRequest]:
    return [CardRequest(i, h, h.pin, h.program or program, h.tier if h.tier is not None else tier)
            for i, h in enumerate(rows)]


def pcsc_presenter(sam: SoftwareSam, reader: str | None, say: Callable[[str], None], *,
                   timeout: float = 120.0) -> CardPresenter:
    """Ask for each card, then wait until a *blank* card is in ``reader`` (PC/SC)."""
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
                info = PurseSession(transport, sam).select()
            except TransportError:
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
