"""CASH OUT at card return, on both card profiles: the desk empties the purse through the card.

The card pays exactly its balance, is RETURNED in the same commit, and refuses every later
transaction; only the desk's CREDIT key may ask for it; a card pulled in the middle is resolved at
its next presentation and never paid out twice (docs/books.md, "Deposits and cash-out").
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.cards import CARD_NUMBER, NOW, Issuer, RawCard

from purse import crypto
from purse.apdu import CardBlocked, CardExpired, CardReturned, SecurityStatusNotSatisfied
from purse.cardsession import WrongCard
from purse.desfire.tmac import card_tmac_key, record_verifies
from purse.protocol import CASH_OUT_CMD, DEFAULT_SYSTEM_IDENTIFIER, CardState, Ins, KeyRef, RecordType
from purse.records import CERTIFIED_SIZE
from purse.terminal import CompletedBefore, ReceiptKind, TransactionInterrupted
from purse.transport import Transport

CardMaker = Callable[..., Transport]


@pytest.fixture(params=["reference", "desfire"])
def make_card(request: pytest.FixtureRequest, purse_issuer: Issuer) -> CardMaker:
    return purse_issuer.card if request.param == "reference" else purse_issuer.desfire_card


def _genuine(issuer: Issuer, raw: bytes, uid: bytes) -> bool:
    if raw[-9] & 1:  # the DESFire flag: the certificate is the card's Transaction MAC
        key = card_tmac_key(issuer.masters[KeyRef.TXN][1], uid, DEFAULT_SYSTEM_IDENTIFIER)
        return record_verifies(key, raw)
    txn = issuer.card_key(KeyRef.TXN, uid)
    return crypto.macs_equal(crypto.mac8(txn, raw[:CERTIFIED_SIZE]), raw[CERTIFIED_SIZE:])


def test_cash_out_pays_the_balance_and_returns_the_card(purse_issuer: Issuer, make_card: CardMaker) -> None:
    card = make_card(balance=12_345)
    desk = purse_issuer.credit_terminal(card)
    receipt = desk.cash_out()
    assert (receipt.kind, receipt.amount, receipt.balance) == (ReceiptKind.CASH_OUT, 12_345, 0)
    assert receipt.record is not None and receipt.record.record_type == RecordType.CASH_OUT
    info, _ = desk.present()
    assert info.state == CardState.RETURNED
    assert _genuine(purse_issuer, receipt.record.to_bytes(), info.uid)
    logged = [r for _, r, _ in desk.log.records()]
    assert logged[-1].to_bytes() == receipt.record.to_bytes()


def test_a_returned_card_refuses_everything_after(purse_issuer: Issuer, make_card: CardMaker) -> None:
    card = make_card(balance=5_000)
    desk = purse_issuer.credit_terminal(card)
    paid = desk.cash_out()
    with pytest.raises(CompletedBefore) as again:  # the card says it was cashed out: never twice
        desk.cash_out()
    assert again.value.receipt.record == paid.record
    with pytest.raises(CardReturned):
        desk.load(1_000)
    pos = purse_issuer.terminal(card)
    with pytest.raises(CardReturned):
        pos.debit(100)
    with pytest.raises(CardReturned):
        pos.block()
    assert pos.read_card().balance == 0  # still readable: the log says what happened


def test_an_empty_card_is_returned_too(purse_issuer: Issuer, make_card: CardMaker) -> None:
    receipt = purse_issuer.credit_terminal(make_card()).cash_out()
    assert (receipt.amount, receipt.balance, receipt.counter) == (0, 0, receipt.counter)
    assert purse_issuer.credit_terminal(make_card()).present()[0].state == CardState.PERSONALIZED


def test_an_expired_card_is_cashed_out_a_blocked_one_is_not(purse_issuer: Issuer, make_card: CardMaker) -> None:
    expired = make_card(balance=700, expiry=NOW)
    desk = purse_issuer.credit_terminal(expired)
    desk.clock = lambda: NOW + 86_400
    with pytest.raises(CardExpired):
        desk.load(100)
    assert desk.cash_out().amount == 700
    blocked = make_card(balance=900)
    purse_issuer.terminal(blocked).block()
    with pytest.raises(CardBlocked):
        purse_issuer.credit_terminal(blocked).cash_out()


def test_a_pulled_card_is_paid_out_once(purse_issuer: Issuer, make_card: CardMaker) -> None:
    """Torn at every persistent write: the next presentation finds the cash-out done (and says so)
    or not done (and it runs then), and the desk's log holds exactly one cash-out."""
    outcomes = set()
    for tear in range(1, 12):
        card = make_card(balance=4_200)
        desk = purse_issuer.credit_terminal(card)
        card.tear_at(tear)  # type: ignore[attr-defined]
        try:
            first = desk.cash_out()
        except TransactionInterrupted:
            first = None
        card.tear_at(None)  # type: ignore[attr-defined]
        if first is None:
            try:
                again = desk.cash_out()
                outcomes.add("ran at the retry")
            except CompletedBefore as e:
                again = e.receipt
                outcomes.add("found done")
            assert (again.amount, again.balance) == (4_200, 0)
        cash_outs = [r for _, r, _ in desk.log.records() if r.record_type == RecordType.CASH_OUT]
        assert len(cash_outs) == 1 and desk.log.all_pending() == []
        assert desk.present()[0].state == CardState.RETURNED
    assert outcomes == {"ran at the retry", "found done"}


def test_only_the_credit_key_cashes_out(purse_issuer: Issuer) -> None:
    card = purse_issuer.card(balance=3_000)
    raw = RawCard(card, purse_issuer)
    raw.select()
    raw.open(KeyRef.DEBIT)
    _, sw = raw.secured(Ins.CASH_OUT, CASH_OUT_CMD.pack(3_000, NOW, 1))
    assert sw == SecurityStatusNotSatisfied.default_sw
    raw.select()
    raw.open(KeyRef.CREDIT)
    _, sw = raw.secured(Ins.CASH_OUT, CASH_OUT_CMD.pack(2_999, NOW, 1))  # not the balance: refused
    assert sw == 0x6A80
    _, sw = raw.secured(Ins.CASH_OUT, CASH_OUT_CMD.pack(3_000, NOW, 1))
    assert sw == 0x9000


def test_the_desk_loads_and_cashes_out_only_the_card_it_means(purse_issuer: Issuer, make_card: CardMaker) -> None:
    card = make_card(balance=800)
    desk = purse_issuer.credit_terminal(card)
    with pytest.raises(WrongCard, match="not 6001000000000024"):
        desk.cash_out("6001000000000024")
    with pytest.raises(WrongCard, match="not 6001000000000024"):
        desk.load(500, number="6001000000000024")
    assert desk.load(500, number=CARD_NUMBER).balance == 1_300  # nothing was sent to the card before
    assert desk.cash_out(CARD_NUMBER).amount == 1_300
