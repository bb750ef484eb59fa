"""Campaigns: a segment chosen from processing's figures, a dry run with reach and cost per channel, a
launch that reaches each consenting holder once on each channel, however often it is launched."""

from __future__ import annotations

from support.backoffice import DAY, NOW, World
from support.holders import SmtpServer, add_holder

from processing.holders.campaigns import Campaign, Segment, estimate, launch, segment_holders
from processing.holders.delivery import Deliverer
from processing.holders.localgateway import LocalSmsGateway
from processing.schema.holders import Channel
from purse.settings import IssuerSettings

SALE = Campaign("autumn-sale", {"en": "Autumn sale", "ru": "Осенняя распродажа"},
                {"en": "Double points on every coffee this week.", "ru": "Двойные баллы за кофе всю неделю."})


def _scheme(w: World) -> dict[str, str]:
    """Four holders: two buy at merchant 42 under program 5 (one with many points), one at merchant 43
    long ago, one never; consent varies."""
    w.merchant(42)
    w.merchant(43)
    t42, t43 = w.terminal(7, 42), w.terminal(8, 43)
    cards = {name: w.card(i, load=20_000) for i, name in enumerate(("anna", "boris", "vera", "gleb"), 1)}
    for i, (name, card) in enumerate(cards.items()):
        w.register_card(card)
        add_holder(w.engine, card.number, name=name.title(), email=f"{name}@example.org",
                   phone=f"+7912345678{i}", language="ru" if name in ("boris", "vera") else "en",
                   consent=(Channel.EMAIL, Channel.SMS) if name != "boris" else (Channel.EMAIL,))
    t42.purchase(cards["anna"], 500, w.now - DAY, program_id=5, earned=300)
    t42.purchase(cards["boris"], 500, w.now - DAY, program_id=5, earned=20)
    t43.purchase(cards["vera"], 500, NOW + DAY)
    w.process(t42.close(w.tmp / "t42.spb"))
    w.process(t43.close(w.tmp / "t43.spb"))
    return {name: card.number for name, card in cards.items()}


def test_segments_reach_and_cost_then_a_launch_told_once(processing_db: World,
                                                         servers: tuple[SmtpServer, LocalSmsGateway]) -> None:
    w = processing_db
    smtp, gateway = servers
    numbers = _scheme(w)
    with w.engine.connect() as conn:
        by = {name: set(segment_holders(conn, seg, w.now).values()) for name, seg in {
            "program": Segment(program=5), "points": Segment(program=5, min_points=100),
            "merchant 43": Segment(merchant=43), "idle": Segment(idle_days=20), "active": Segment(active_days=7),
            "all": Segment()}.items()}
        dry = estimate(conn, SALE, Segment(program=5), w.now, sms_part_price=350, default_language="en")
    assert by["program"] == {numbers["anna"], numbers["boris"]} and by["points"] == {numbers["anna"]}
    assert by["merchant 43"] == {numbers["vera"]} and by["idle"] == {numbers["vera"], numbers["gleb"]}
    assert by["active"] == {numbers["anna"], numbers["boris"]} and len(by["all"]) == 4
    rows = {r["channel"]: r for r in dry["channels"]}
    assert (dry["holders"], rows["email"]["reached"], rows["sms"]["reached"], rows["sms"]["no_consent"]) == (2, 2, 1, 1)
    assert rows["sms"]["sms_parts"] == 1 and rows["sms"]["cost"] == 350  # Anna's English SMS: one GSM-7 part
    with w.engine.begin() as conn:
        assert launch(conn, SALE, Segment(program=5), w.now) == 2
        assert launch(conn, SALE, Segment(program=5), w.now) == 0  # launched again: nobody twice
    settings = smtp.settings(gateway)
    done = Deliverer(w.engine, settings, IssuerSettings(name="Coffee House"), clock=lambda: w.now + 60).run()
    assert done.failed == 0 and done.sent >= 3
    campaign_mails = [m for m in smtp.received if m["Subject"] in ("Autumn sale", "Осенняя распродажа")]
    assert sorted(m["To"] for m in campaign_mails) == ["anna@example.org", "boris@example.org"]
    assert [s.text for s in gateway.received if "Double points" in s.text] == [
        "Coffee House: Double points on every coffee this week."]
