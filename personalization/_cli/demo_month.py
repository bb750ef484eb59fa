"""``smartpurse demo``: a month of a two-merchant card scheme, every role, end to end.

It runs what each role would run, through the same library calls as the CLI: the key
ceremony, issuing virtual cards, loads at the credit desk, purchases with a loyalty
program at POS terminals (with cancellations, a debit torn mid-command and recovered,
and a cloned card spending twice), batch export, processing, settlement and reports.
Then it reads every card back and checks that money is conserved (docs/design.md invariant 1).

The simulation is deterministic for a seed: simulated time, card choice, prices and the
order of events come from one ``random.Random(seed)``, so two runs write identical
reports (keys, UIDs and certificates differ, and no report shows them).
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from personalization import lifecycle, registry
from personalization._cli.demo_holders import DEMO_LOW_BALANCE, add_holders, deliver
from personalization.issuing import card_profile, issue_to_images, issuer_sam, requests_for_count
from personalization.keyfiles import export_role_file
from personalization.keystore import Keystore, init_keystore
from processing import reportfmt, reports
from processing.card_return import return_at_desk
from processing.check import run_check
from processing.dashboard import dashboard_options, write_dashboard
from processing.db import open_database
from processing.hotlist_export import export_hotlist
from processing.importer import ImportOptions
from processing.issuer_loads import load_at_desk, record_loads
from processing.keys import load_processing_keys
from processing.presentation import Presentation
from processing.run import process_files
from processing.schema.processing import anomalies
from processing.schema.registry import card_transfers
from processing.schema.registry import cards as cards_table
from processing.settlement import settle
from purse.errors import UserError
from purse.files import PRIVATE, copy_atomic
from purse.home import Home, TerminalFiles
from purse.loyalty import ProgramPolicy, example_program_bytes, parse_program_bytes, sign_program
from purse.loyalty.program import Program
from purse.profiles import CardChip, select_card
from purse.protocol import KeyRef
from purse.rolekeys import Role
from purse.sam import SoftwareSam
from purse.session import PurseSession
from purse.terminal import CreditTerminal, Receipt, Terminal, TransactionInterrupted
from purse.terminal_log import TerminalLog
from purse.transport import Transport
from purse.transport.chips import virtual_transport
from purse.transport.virtual import VirtualTransport
from purse.transport.virtual_desfire import VirtualDesfireTransport

DEMO_PASSPHRASE = "demo"  # the demo keystore's passphrase: a demo, never a real issuer
MARKER = ".smartpurse-demo"  # only a folder holding this file may be wiped and rewritten
CREDIT_DESK = 0
MERCHANT_NAMES = ("Coffee House", "Corner Market", "Fuel Stop", "Book Nook")
START = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)
TEAR_AT_WRITE = 3  # journal written, purse region written, then the card leaves the field
DESFIRE_SHARE = 4  # one card in four is issued on the DESFire profile
DEMO_DEPOSIT = 750  # the source document's refundable card deposit, 7.50

Progress = Callable[[str, int, int], None]  # stage, done, total


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("smartpurse-demo")
    cards: int = 200
    purchases: int = 5000
    terminals: int = 4
    merchants: int = 2
    days: int = 30
    seed: int = 1
    db_url: str | None = None

    def check(self) -> None:
        if self.cards < 2:
            raise UserError("the demo needs at least 2 cards (one of them gets cloned)")
        if self.purchases < 10:
            raise UserError("the demo needs at least 10 purchases")
        if not 2 <= self.terminals <= 64:
            raise UserError("the demo runs 2 to 64 terminals (the clone spends at another terminal)")
        if not 1 <= self.merchants <= min(self.terminals, len(MERCHANT_NAMES)):
            raise UserError(f"the demo has 1 to {min(self.terminals, len(MERCHANT_NAMES))} merchants")
        if self.days < 1:
            raise UserError("the demo simulates at least one day")


@dataclass
class Tally:
    """What the simulation did, counted on the terminals' side (receipts)."""

    loads: int = 0
    loaded: int = 0
    purchases: int = 0
    spent: int = 0
    cancellations: int = 0
    cancelled: int = 0
    prizes: int = 0
    points_redeemed: int = 0
    torn: list[str] = field(default_factory=list)
    recovered: int = 0
    clone_number: str = ""
    clone_spent: int = 0
    replaced: str = ""  # a damaged card, replaced mid-month; its value reaches the new card at the desk
    replacement: str = ""
    transferred: int = 0
    returned: list[str] = field(default_factory=list)  # cards their holders gave back at the month's end
    cashed_out: int = 0  # the balance those cards paid out at the desk
    deposits_refunded: int = 0


@dataclass
class DemoWorld:
    """The issuer's installation the demo builds and then runs a month in."""

    options: DemoOptions
    home: Home
    engine: Engine
    keystore: Keystore
    program: Program
    pins: dict[str, str]
    rng: random.Random
    now: int = int(START.timestamp())
    balances: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)
    _terminal_logs: dict[int, TerminalLog] = field(default_factory=dict)
    _sams: dict[int, SoftwareSam] = field(default_factory=dict)

    @property
    def numbers(self) -> list[str]:
        """The cards in customers' hands (a replaced card is not; its replacement is)."""
        return sorted(self.pins)

    def card_path(self, number: str) -> Path:
        return self.home.cards_dir / f"{number}.card"

    def clock(self) -> float:
        return float(self.now)

    def log(self, terminal_id: int) -> TerminalLog:
        if terminal_id not in self._terminal_logs:
            if terminal_id == CREDIT_DESK:
                path, merchant_id, log_key = self.home.terminals_dir / "credit.db", 0, None
            else:
                merchant_id = merchant_of(terminal_id, self.options.merchants)
                path = TerminalFiles(self.home.terminals_dir, terminal_id).log
                log_key = self.keystore.role_keys("pos", terminal_id, merchant_id).terminal_log_keys()
            self._terminal_logs[terminal_id] = TerminalLog(path, terminal_id=terminal_id, merchant_id=merchant_id,
                                                           log_key=log_key)
        return self._terminal_logs[terminal_id]

    def sam(self, terminal_id: int) -> SoftwareSam:
        """Each terminal's SAM (the credit desk's under ``CREDIT_DESK``), kept so card keys stay cached."""
        if terminal_id not in self._sams:
            if terminal_id == CREDIT_DESK:
                keys = self.keystore.role_keys("credit")
            else:
                keys = self.keystore.role_keys("pos", terminal_id, merchant_of(terminal_id, self.options.merchants))
            self._sams[terminal_id] = keys.sam()
        return self._sams[terminal_id]

    def close(self) -> None:
        for log in self._terminal_logs.values():
            log.close()
        self._terminal_logs.clear()


def merchant_of(terminal_id: int, merchants: int) -> int:
    return (terminal_id - 1) % merchants + 1


def prepare_output(out: Path) -> None:
    """A fresh output folder; an earlier demo's folder is replaced, anything else is refused."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise UserError(f"{out} is not empty and was not made by the demo: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by smartpurse demo; the next demo run with this --out replaces it\n")
    for sub in ("batches", "reports"):
        (out / sub).mkdir()


# -- setting up the issuer ------------------------------------------------------------------

def set_up(options: DemoOptions, progress: Progress) -> DemoWorld:
    """Keys, role files, terminals, the signed program, and the issued cards."""
    options.check()
    prepare_output(options.out)
    home = Home.open(options.out / "home")
    home.create()
    engine = open_database(home.db_url(options.db_url))
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(cards_table)).scalar_one():
            raise UserError("the demo needs an empty database: this one already has cards")
    # Demo keys and UIDs come from the seed, so two runs certify identical records and write
    # identical reports. Never issue real cards with keys a seed can regenerate.
    secrets_rng = random.Random(f"smartpurse-demo-keys-{options.seed}")
    keystore = init_keystore(home, DEMO_PASSPHRASE, secrets_rng.randbytes)
    for terminal_id in range(1, options.terminals + 1):
        merchant_id = merchant_of(terminal_id, options.merchants)
        export_role_file(engine, home, keystore, Role.POS, DEMO_PASSPHRASE, terminal_id=terminal_id,
                         merchant_id=merchant_id, name=f"{MERCHANT_NAMES[merchant_id - 1]} till {terminal_id}")
    for merchant_id in range(1, options.merchants + 1):
        registry.name_merchant(engine, merchant_id, MERCHANT_NAMES[merchant_id - 1])
    for role in (Role.CREDIT, Role.PROCESSING):
        export_role_file(engine, home, keystore, role, DEMO_PASSPHRASE)
    program = install_program(home, keystore, options.terminals)
    progress("issuing cards", 0, options.cards)
    pins: dict[str, str] = {}
    desfire = options.cards // DESFIRE_SHARE  # a share of the cards is off-the-shelf DESFire (docs/desfire.md)
    done = 0
    for chip, count, batch in ((CardChip.REFERENCE, options.cards - desfire, "demo"),
                               (CardChip.DESFIRE, desfire, "demo-desfire")):
        if not count:
            continue
        def issued(n: int, at: int = done) -> None:
            progress("issuing cards", at + n, options.cards)

        report = issue_to_images(engine, issuer_sam(keystore),
                                 card_profile(home, keystore, chip=chip, deposit=DEMO_DEPOSIT),
                                 requests_for_count(count, program=program.program_id), batch, home.cards_dir,
                                 progress=issued, uid_source=secrets_rng.randbytes)
        pins.update({card.number: card.pin for card in report.issued})  # DESFire cards: "" (no PIN)
        done += count
    add_holders(engine, sorted(pins), START)
    return DemoWorld(options, home, engine, keystore, program, pins, random.Random(options.seed))


def install_program(home: Home, keystore: Keystore, terminals: int) -> Program:
    """Sign the demo program with the issuer key; install it on every terminal and for processing."""
    data = example_program_bytes()
    program = parse_program_bytes(data, "demo program")
    signed = sign_program(data, keystore.signing_key, "demo program")
    programs = home.sub("programs")
    (programs / "demo-program.signed").write_bytes(signed)
    for terminal_id in range(1, terminals + 1):
        TerminalFiles(home.terminals_dir, terminal_id).program.write_bytes(signed)
    return program


# -- a month of business ----------------------------------------------------------------------

def desk_at(world: DemoWorld, number: str) -> CreditTerminal:
    """The issuer's load desk with card ``number`` presented."""
    return CreditTerminal(virtual_transport(world.card_path(number)), world.sam(CREDIT_DESK),
                          world.log(CREDIT_DESK), terminal_id=CREDIT_DESK, clock=world.clock)


def credit_desk(world: DemoWorld, number: str, amount: int) -> Receipt:
    receipt = desk_at(world, number).load(amount)
    world.balances[number] = receipt.balance
    world.tally.loads += 1
    world.tally.loaded += amount
    return receipt


def load_all(world: DemoWorld, progress: Progress) -> None:
    """Every customer's first load at the desk, recorded in the issuer database."""
    numbers = world.numbers
    receipts = []
    for i, number in enumerate(numbers, 1):
        world.now += 7
        receipts.append(credit_desk(world, number, world.rng.randint(10, 50) * 100_00))
        progress("loading cards", i, len(numbers))
    record_loads(world.engine, receipts)


def terminal_for(world: DemoWorld, terminal_id: int, transport: Transport) -> Terminal:
    return Terminal(transport, world.sam(terminal_id), world.log(terminal_id), terminal_id=terminal_id,
                    merchant_id=merchant_of(terminal_id, world.options.merchants), clock=world.clock)


def note_purchase(world: DemoWorld, receipt: Receipt) -> None:
    world.balances[receipt.card_number] = receipt.balance
    world.points[receipt.card_number] = receipt.points_after
    world.tally.purchases += 1
    world.tally.spent += receipt.amount
    world.tally.prizes += receipt.prizes
    world.tally.points_redeemed += receipt.points_redeemed


def sell(world: DemoWorld, number: str, terminal_id: int, price: int, *, tear: bool = False,
         path: Path | None = None) -> Receipt | None:
    """One purchase; a customer short of money tops up at the desk first."""
    policy = ProgramPolicy(world.program)
    if path is None and world.balances.get(number, 0) < price:
        record_loads(world.engine, [credit_desk(world, number, world.rng.randint(10, 30) * 100_00)])
    redeem, pin = 0, None
    rule = world.program.redemption
    if rule is not None and path is None and world.rng.random() < 0.05:
        # Pay up to half the price with points: always within what is due after any tier discount.
        redeem = min(world.points.get(number, 0), price // 2 // rule.point_value)
        if redeem >= rule.min_points and world.pins[number]:  # DESFire cards hold no PIN: no redemption
            pin = world.pins[number]
        else:
            redeem = 0
    transport = virtual_transport(path or world.card_path(number))
    terminal = terminal_for(world, terminal_id, transport)
    if tear:
        assert isinstance(transport, (VirtualTransport, VirtualDesfireTransport))
        transport.tear_at(TEAR_AT_WRITE)
        try:
            terminal.debit(price, points=policy, redeem_points=redeem, pin=pin)
        except TransactionInterrupted:
            world.tally.torn.append(number)
        view = terminal.read_card(policy.program_id)  # the card is presented again: recovery
        world.tally.recovered += len(view.recovered)
        for receipt in view.recovered:
            note_purchase(world, receipt)
        return view.recovered[0] if view.recovered else None
    receipt = terminal.debit(price, points=policy, redeem_points=redeem, pin=pin)
    if path is None:
        note_purchase(world, receipt)
    return receipt


def cancel(world: DemoWorld, number: str, terminal_id: int) -> None:
    terminal = terminal_for(world, terminal_id, virtual_transport(world.card_path(number)))
    receipt = terminal.cancel_last()
    world.balances[number] = receipt.balance
    world.points[number] = receipt.points_after
    world.tally.cancellations += 1
    world.tally.cancelled += receipt.amount


def clone_and_spend(world: DemoWorld, number: str, price: int) -> None:
    """Copy a card's memory (a clone) and spend with both: same counter, two records."""
    if world.balances.get(number, 0) < price:  # the copy must hold the price too: top up before copying
        record_loads(world.engine, [credit_desk(world, number, world.rng.randint(10, 30) * 100_00)])
    clones = world.home.sub("clones")
    clone = clones / f"{number}.card"
    copy_atomic(world.card_path(number), clone, mode=PRIVATE)  # a card image holds that card's keys
    sell(world, number, 1, price)
    receipt = sell(world, number, world.options.terminals, price, path=clone)
    world.tally.clone_number = number
    world.tally.clone_spent = receipt.amount if receipt else 0


def replace_card(world: DemoWorld, number: str) -> None:
    """The holder's card is damaged: the issuer blocks it and issues its replacement (``cards replace``)."""
    result, report = lifecycle.replace(world.engine, world.home, world.keystore,
                                       card_profile(world.home, world.keystore), number, "damaged",
                                       uid_source=random.Random(f"smartpurse-demo-replace-{world.options.seed}")
                                       .randbytes, at=dt.datetime.fromtimestamp(world.now, dt.UTC))
    (new,) = report.issued
    world.pins.pop(number)
    world.pins[new.number] = new.pin
    world.tally.replaced, world.tally.replacement = number, str(result["new"])


def run_month(world: DemoWorld, progress: Progress) -> None:
    """The purchases, spread over the simulated days, across all terminals."""
    opts, rng = world.options, world.rng
    numbers = world.numbers
    span = opts.days * 86_400 - 4 * 3600
    tear_index, clone_index, replace_index = opts.purchases // 3, opts.purchases // 2, opts.purchases * 2 // 3
    for i in range(opts.purchases):
        world.now = int(START.timestamp()) + 86_400 + i * span // opts.purchases
        number = rng.choice(numbers)
        terminal_id = rng.randint(1, opts.terminals)
        price = rng.randint(100, 4000) * 10
        if i == replace_index and number not in (world.tally.clone_number, *world.tally.torn):
            replace_card(world, number)  # the new card is empty until the desk pays the old one's value
            numbers = world.numbers
            number = rng.choice([n for n in numbers if n != world.tally.replacement])
        if i == clone_index:
            clone_and_spend(world, number, price)
        elif i == tear_index:
            sell(world, number, terminal_id, price, tear=True)
        else:
            sell(world, number, terminal_id, price)
            if rng.random() < 0.02:
                world.now += 30
                cancel(world, number, terminal_id)
        progress("selling", i + 1, opts.purchases)


def return_cards(world: DemoWorld) -> None:
    """At the month's end two holders give their cards back (one of each profile): the desk pays each
    card's balance out through the card and refunds its deposit (``smartpurse cash-out``)."""
    t = world.tally
    busy = {t.clone_number, *t.torn, t.replaced, t.replacement}
    candidates = [n for n in world.numbers if n not in busy and world.balances.get(n, 0) > 0]
    for desfire in (False, True):
        number = next((n for n in candidates if (not world.pins[n]) == desfire), None)
        if number is None:
            continue
        world.now += 60
        done = return_at_desk(world.engine, desk_at(world, number), number)
        world.balances[number] = 0
        t.returned.append(number)
        t.cashed_out += done.receipt.amount
        t.deposits_refunded += done.deposit


def export_batches(world: DemoWorld) -> list[Path]:
    """Each terminal closes its batch into the output folder, as it would at day end."""
    out = world.options.out / "batches"
    paths = []
    for terminal_id in range(1, world.options.terminals + 1):
        transport = virtual_transport(world.card_path(world.numbers[0]))
        summary = terminal_for(world, terminal_id, transport).export_batch(out / f"terminal-{terminal_id}.spb")
        paths.append(summary.path)
    return paths


def card_balances(world: DemoWorld) -> dict[str, int]:
    """Balances read back from every issued card, not from the simulation's notes: SELECT on a reference
    card, the value file under the desk's key on a DESFire card (which tells its balance only to a key)."""
    balances = {}
    for number in world.numbers:
        transport = virtual_transport(world.card_path(number))
        transport.connect()
        session, info = select_card(transport, world.sam(CREDIT_DESK))
        balances[number] = info.balance if isinstance(session, PurseSession) else \
            session.open(KeyRef.CREDIT, CREDIT_DESK).balance
    return balances




# -- the back office ----------------------------------------------------------------------------

REPORT_KINDS = ("settlement", "float", "points", "anomalies", "statement", "journal", "trial-balance")
FLOAT_RATE_PCT = Decimal("16")  # the annual rate the float report prices the prepaid money at


def back_office(world: DemoWorld, batch_files: list[Path]) -> dict[str, Any]:
    """Process the batches, settle, write every report and the dashboard, sign the hotlist."""
    end = dt.datetime.fromtimestamp(world.now, dt.UTC)
    keys = load_processing_keys(world.home, DEMO_PASSPHRASE)
    options = ImportOptions(quarantine_dir=world.home.path / "quarantine", programs={world.program.program_id:
                            world.program}, now=world.clock, low_balance=DEMO_LOW_BALANCE)
    summary = process_files(world.engine, batch_files, keys, options)
    if _transferred(world.engine, world.tally.replacement):  # processing moved the replaced card's value
        paid = load_at_desk(world.engine, desk_at(world, world.tally.replacement), world.tally.replacement, None)
        world.tally.transferred = paid.receipt.amount
        process_files(world.engine, [], keys, options)  # posts the desk's load against the payable
    statements = settle(world.engine, end.date() + dt.timedelta(days=1))
    reports_dir = world.options.out / "reports"
    look = Presentation.for_issuer(world.home.issuer)
    with world.engine.connect() as conn:
        for kind in REPORT_KINDS:
            rep = reports.build(conn, kind, card=world.tally.clone_number, rate=FLOAT_RATE_PCT)
            for fmt in reportfmt.FORMATS:
                reportfmt.write(rep, fmt, reports_dir / f"{kind}.{fmt}", look)
    write_dashboard(world.engine, reports_dir / "dashboard.html", generated=end,
                    **dashboard_options(world.home))
    with world.engine.begin() as conn:
        hotlist = export_hotlist(conn, world.keystore.signing_key, world.keystore.issuer_id,
                                 reports_dir / "hotlist.signed", now=world.now)
    with world.engine.connect() as conn:
        check = run_check(conn)
        found = conn.execute(select(anomalies.c.kind, anomalies.c.card_number)).all()
    # The next morning the holders hear what processing learned (their digests are due by then).
    messages = deliver(world.engine, world.home.issuer, world.now + 2 * 86_400, world.options.out / "messages")
    return {"import": summary.as_dict(), "statements": [s.as_dict() for s in statements], "check": check,
            "anomalies": found, "hotlist": sorted(hotlist.cards), "messages": messages}


def _transferred(engine: Engine, new_card: str) -> int:
    """What processing moved off the replaced card for ``new_card`` (0: none, or nothing was left)."""
    with engine.connect() as conn:
        return int(conn.execute(select(card_transfers.c.amount).where(card_transfers.c.to_number == new_card))
                   .scalar() or 0)


def run_demo(options: DemoOptions, progress: Progress) -> dict[str, Any]:
    """The whole demo; returns the summary the command prints (and ``--json`` shows)."""
    world = set_up(options, progress)
    try:
        load_all(world, progress)
        run_month(world, progress)
        return_cards(world)
        batch_files = export_batches(world)
        progress("processing", 0, 1)
        office = back_office(world, batch_files)
        progress("processing", 1, 1)
        on_cards = card_balances(world)
    finally:
        world.close()
    t = world.tally
    check = office["check"]
    expected = t.loaded - t.spent + t.cancelled - t.cashed_out
    conservation = {"expected": expected, "cards": sum(on_cards.values()),
                    "ledger_float": check.figures.get("card_float"), "shadow": check.figures.get("shadow_balances")}
    conservation["holds"] = check.ok and len({expected, conservation["cards"], conservation["ledger_float"],
                                              conservation["shadow"]}) == 1
    kinds: dict[str, int] = {}
    for kind, _ in office["anomalies"]:
        kinds[kind] = kinds.get(kind, 0) + 1
    caught = any(kind == "clone" and number == t.clone_number for kind, number in office["anomalies"])
    return {
        "out": str(options.out),
        "seed": options.seed,
        "currency": world.home.issuer.currency,
        "currency_exponent": world.home.issuer.currency_exponent,
        "cards": {"issued": len(world.pins), "desfire": sum(1 for pin in world.pins.values() if not pin)},
        "money": {"loads": t.loads, "loaded": t.loaded, "purchases": t.purchases, "spent": t.spent,
                  "cancellations": t.cancellations, "cancelled": t.cancelled,
                  "left_on_cards": sum(on_cards.values())},
        "loyalty": {"prizes": t.prizes, "points_redeemed": t.points_redeemed},
        "tear": {"card": t.torn[0] if t.torn else None, "recovered": t.recovered},
        "clone": {"card": t.clone_number, "spent_by_clone": t.clone_spent, "caught": caught,
                  "hotlisted": t.clone_number in office["hotlist"]},
        "replacement": {"old": t.replaced or None, "new": t.replacement or None, "transferred": t.transferred},
        "returned": {"cards": t.returned, "paid_out": t.cashed_out, "deposits_refunded": t.deposits_refunded,
                     "deposits_taken": DEMO_DEPOSIT * len(world.pins)},
        "anomalies": kinds,
        "processing": {k: office["import"][k] for k in ("accepted", "duplicates", "rejected", "anomalies")},
        "settlement": office["statements"],
        "conservation": conservation,
        "messages": office["messages"],
        "check_failures": check.failures,
    }
