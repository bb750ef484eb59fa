"""Property: whatever happens (loads, debits, cancellations, cards pulled mid-command),
money is conserved on the card and its counter only ever goes up (docs/design.md, invariant 1).

Each example issues a fresh card and runs a random program against it through the real
terminals; a tear pulls the card at a random persistent write, and the cashier presents
it again, so the terminal recovers. At the end, what the terminals logged must explain
the card exactly: loads - debits + cancellations == balance, counters strictly
increasing, and each logged record is the card's own.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cards import Issuer

from purse.apdu import InsufficientFunds, NothingToCancel, PurseError
from purse.card.applet import PurseApplet
from purse.protocol import RecordType
from purse.session import PurseSession
from purse.terminal import TransactionInterrupted

step = st.tuples(
    st.sampled_from(["load", "debit", "debit", "cancel"]),
    st.integers(min_value=1, max_value=5_000),
    st.one_of(st.none(), st.integers(min_value=1, max_value=9)),  # tear at this write, or none
    st.sampled_from([7, 8]),  # which POS terminal
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=st.lists(step, min_size=1, max_size=25))
def test_money_is_conserved_through_tears(purse_issuer: Issuer,
                                         program: list[tuple[str, int, int | None, int]]) -> None:
    card = purse_issuer.card(max_balance=50_000)
    pos = {tid: purse_issuer.terminal(card, terminal_id=tid) for tid in (7, 8)}
    loader = purse_issuer.credit_terminal(card)
    for kind, amount, tear, tid in program:
        terminal = loader if kind == "load" else pos[tid]
        if tear is not None:
            card.tear_at(tear)
        try:
            if kind == "load":
                loader.load(amount)
            elif kind == "debit":
                pos[tid].debit(amount)
            else:
                pos[tid].cancel_last()
        except TransactionInterrupted:
            terminal.present()  # the cashier presents the card again: recovery
        except (InsufficientFunds, NothingToCancel, PurseError):
            pass
        card.storage.tear_at = None
        card.connect()

    records = sorted((r for t in (*pos.values(), loader) for _, r, _ in t.log.records()), key=lambda r: r.counter)
    for t in (*pos.values(), loader):
        assert t.log.all_pending() == []
        assert t.log.verify_chain() == len(list(t.log.records()))
    applet = PurseApplet(card.storage)
    loads = sum(r.amount for r in records if r.record_type == RecordType.LOAD)
    debits = sum(r.amount for r in records if r.record_type == RecordType.PURCHASE)
    cancels = sum(r.amount for r in records if r.record_type == RecordType.CANCEL)
    assert loads - debits + cancels == applet.balance
    counters = [r.counter for r in records]
    assert counters == list(range(1, applet.counter + 1)), "every counter logged exactly once, in order"
    session = PurseSession(card, purse_issuer.pos_sam())
    session.select()
    on_card = session.read_whole_log()
    assert [r.counter for r in on_card] == sorted((r.counter for r in on_card), reverse=True)
    by_counter = {r.counter: r.to_bytes() for r in records}
    assert all(by_counter[r.counter] == r.to_bytes() for r in on_card)
    balance = 0
    for r in records:  # the balance chain: each record starts where the previous one ended
        assert r.balance_before == balance
        balance = r.balance_after
    assert balance == applet.balance


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=0, max_size=80), cla=st.sampled_from([0x00, 0x80, 0xA0]),
       ins=st.sampled_from([0xA4, 0x8A, 0x54, 0x52, 0x56, 0x1E, 0x1F, 0xB2, 0x20, 0x24, 0xD8, 0xD6, 0xEE, 0x00]))
def test_junk_apdus_never_crash_the_card(purse_issuer: Issuer, raw: bytes, cla: int, ins: int) -> None:
    """Any bytes get a status word back, never an exception, and never move money."""
    card = _junk_card(purse_issuer)
    before = card.storage.image_bytes()
    for apdu in (raw, bytes([cla, ins]) + raw):
        answer = card.transmit(apdu)
        assert len(answer) >= 2
    applet = PurseApplet(card.storage)
    assert (applet.balance, applet.counter) == (1_000, 1)
    assert card.storage.image_bytes() == before  # junk never writes: no MAC, no commit


_CARDS: dict[int, object] = {}


def _junk_card(issuer: Issuer):  # type: ignore[no-untyped-def]
    """One loaded card per issuer, reset to its pristine image for each example."""
    from purse.transport.virtual import VirtualTransport

    if id(issuer) not in _CARDS:
        _CARDS[id(issuer)] = issuer.card(balance=1_000).storage.image_bytes()
    card = VirtualTransport(PurseApplet.from_image_bytes(_CARDS[id(issuer)]).storage)  # type: ignore[arg-type]
    card.connect()
    card.transmit(bytes.fromhex("00A4040008F05350555253450100"))
    return card
