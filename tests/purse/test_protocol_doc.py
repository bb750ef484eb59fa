"""docs/protocol.md is the source of truth: its tables and examples against the real bytes.

The document marks each machine-checked table or example with an HTML comment
(``<!-- layout: debit.command -->``, ``<!-- apdu: debit -->``, ...). This test parses them
and checks, field by field at the documented offsets, what ``PurseSession`` sends and
what the reference applet answers, with every MAC recomputed from the documented inputs.
"""

from __future__ import annotations

import re
import struct

import pytest
from support import REPO
from support.cards import NOW, PIN, Issuer, RecordingTransport

from purse import crypto
from purse.apdu import SW
from purse.batch import BatchHeader, BatchTrailer
from purse.card import layout as L
from purse.card.applet import ATR, PurseApplet
from purse.protocol import AID, DEFAULT_SYSTEM_IDENTIFIER, DEFAULT_TRANSPORT_KEY, KeyRef
from purse.records import PointsSlot, TransactionRecord
from purse.session import PurseSession
from purse.transport.virtual import VirtualTransport

DOC = REPO / "docs" / "protocol.md"
TEXT = DOC.read_text()
PROGRAM = 0x0501


def _marked(kind: str) -> dict[str, list[str]]:
    """Lines following each ``<!-- kind: name -->`` marker: a table or a fenced block."""
    out: dict[str, list[str]] = {}
    lines = TEXT.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(rf"<!-- {kind}: ([\w.-]+) -->", line.strip())
        if not m:
            continue
        body: list[str] = []
        j = i + 1
        if lines[j].startswith("```"):
            j += 1
            while not lines[j].startswith("```"):
                body.append(lines[j])
                j += 1
        else:
            while j < len(lines) and lines[j].startswith("|"):
                body.append(lines[j])
                j += 1
        out[m.group(1)] = body
    return out


def _rows(table: list[str]) -> list[list[str]]:
    return [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]


LAYOUTS = {name: [(int(r[0]), int(r[1]), r[2], r[3]) for r in _rows(t)] for name, t in _marked("layout").items()}
APDUS = {name: dict(zip(("cla", "ins", "p1", "p2", "lc", "le"), _rows(t)[0], strict=True))
         for name, t in _marked("apdu").items()}
TABLES = {name: _rows(t) for name, t in _marked("table").items()}
EXAMPLES = _marked("example")


def decode(layout: str, data: bytes) -> dict[str, object]:
    """Split ``data`` by a documented layout; integers by their documented encoding."""
    fields = LAYOUTS[layout]
    assert sum(size for _, size, _, _ in fields) == len(data), f"{layout}: {len(data)} bytes on the wire"
    out: dict[str, object] = {}
    expected_offset = 0
    for offset, size, name, encoding in fields:
        assert offset == expected_offset, f"{layout}.{name}: offsets must be contiguous"
        expected_offset += size
        raw = data[offset:offset + size]
        kind = encoding.split(",")[0].split(" ")[0].rstrip(":")
        if kind in ("u8", "u16", "u32", "u64"):
            assert int(kind[1:]) == size * 8, f"{layout}.{name}"
            out[name] = int.from_bytes(raw, "big")
        elif kind == "i32":
            out[name] = int.from_bytes(raw, "big", signed=True)
        else:
            out[name] = raw
    return out


def check_header(name: str, apdu: bytes, **symbolic: int) -> None:
    """CLA INS P1 P2 Lc Le against the command's apdu table (symbolic P1/P2 given by caller)."""
    doc = APDUS[name]
    for i, field in enumerate(("cla", "ins", "p1", "p2")):
        value = symbolic[field] if field in symbolic else int(doc[field], 16)
        assert apdu[i] == value, f"{name}: {field}"
    if doc["lc"] == "-":
        assert len(apdu) == 5 and apdu[4] == int(doc["le"], 16)
    else:
        assert apdu[4] == int(doc["lc"], 16) == len(apdu) - 6, f"{name}: Lc"
        assert apdu[-1] == int(doc["le"], 16)


def data_of(apdu: bytes) -> bytes:
    return apdu[5:-1]


class Wire:
    """A session over a recording transport, with the session keys recomputed from the doc."""

    def __init__(self, transport: VirtualTransport, issuer: Issuer, sam: object) -> None:
        self.rec = RecordingTransport(transport)
        self.session = PurseSession(self.rec, sam)  # type: ignore[arg-type]
        self.issuer = issuer
        self.sk_mac = b""
        self.seq = 0

    def last(self) -> tuple[bytes, bytes]:
        cmd, answer = self.rec.exchanges[-1]
        assert answer[-2:] == b"\x90\x00"
        return cmd, answer[:-2]

    def opened(self, key: bytes) -> dict[str, object]:
        cmd, resp = self.last()
        c = decode("open_session.command", data_of(cmd))
        r = decode("open_session.response", resp)
        material = c["terminal_random"] + r["card_random"]  # type: ignore[operator]
        self.sk_mac = crypto.cmac(key, b"\x01SPMAC" + material)
        self.sk_enc = crypto.cmac(key, b"\x02SPENC" + material)
        self.card_random = r["card_random"]
        assert r["cryptogram"] == crypto.mac8(self.sk_mac, b"K" + data_of(cmd) + resp[:48])
        self.seq = 0
        return r

    def secured(self, layout: str | None) -> tuple[dict[str, object], bytes]:
        """The last command's fields (MAC checked) and its response payload (MAC checked)."""
        cmd, resp = self.last()
        self.seq += 1
        body, mac = data_of(cmd)[:-8], data_of(cmd)[-8:]
        assert mac == crypto.mac8(self.sk_mac, b"C" + self.seq.to_bytes(2, "big") + cmd[:4] + body)
        fields = decode(layout, data_of(cmd)) if layout else {}
        payload, rmac = resp[:-8], resp[-8:]
        assert rmac == crypto.mac8(self.sk_mac, b"R" + self.seq.to_bytes(2, "big") + cmd[1:2] + payload)
        return fields, payload


@pytest.fixture
def card(purse_issuer: Issuer) -> VirtualTransport:
    return purse_issuer.card(balance=10_000, slots={0: PointsSlot(program_id=PROGRAM, points=40)})


def test_every_command_is_documented() -> None:
    assert set(APDUS) == {"select", "open_session", "debit", "credit", "undebit", "block", "cash_out", "unblock",
                          "read_log", "verify_pin", "set_pin", "put_key", "write_file", "lock"}
    from purse.protocol import Ins

    documented = {int(a["ins"], 16) for a in APDUS.values()}
    assert documented == {int(i) for i in Ins}


def test_status_words_table_is_the_enum() -> None:
    rows = {r[0]: r[1] for r in TABLES["status-words"]}
    assert rows.pop("63Cx") == "WRONG_PIN"
    assert {int(k, 16): v for k, v in rows.items()} == {int(sw): sw.name for sw in SW}


def test_key_refs_table_is_the_enum() -> None:
    assert {int(r[0], 16): r[1] for r in TABLES["key-refs"]} == {int(k): k.name for k in KeyRef}


def test_memory_map_is_the_layout() -> None:
    rows = {r[2]: (int(r[0]), int(r[1])) for r in TABLES["memory-map"]}
    assert rows == {
        "IDENT": (L.IDENT_AT, L.IDENT.size), "KEYS": (L.KEYS_AT, L.KEY_COUNT * L.KEY.size),
        "PIN": (L.PIN_AT, L.PIN.size), "PURSE": (L.PURSE_AT, L.PURSE.size),
        "POINTS": (L.POINTS_AT, 4 * 32), "UNDO": (L.UNDO_AT, L.UNDO.size),
        "LOG_HEAD": (L.LOG_HEAD_AT, L.LOG_HEAD.size), "LOG": (L.LOG_AT, 16 * 72),
    }
    assert "1536 bytes" in TEXT and L.APP_MEMORY == 1536 and "512-byte" in TEXT and L.JOURNAL == 512


def test_select_bytes(card: VirtualTransport, purse_issuer: Issuer) -> None:
    wire = Wire(card, purse_issuer, purse_issuer.pos_sam())
    info = wire.session.select()
    cmd, resp = wire.last()
    assert cmd == bytes.fromhex("".join(EXAMPLES["select.command"]))
    check_header("select", cmd)
    assert data_of(cmd) == AID
    f = decode("select.response", resp)
    assert (f["state"], f["uid"], f["card_number"].hex(), f["balance"], f["counter"]) == (  # type: ignore[union-attr]
        1, info.uid, info.number, 10_000, 1)
    assert (f["issuer_id"], f["key_version"], f["currency"], f["max_balance"], f["expiry"]) == (
        600100, 1, 643, 1_000_000, 0)
    assert ATR.hex().upper() in TEXT


def test_debit_with_points_pin_and_undebit_bytes(card: VirtualTransport, purse_issuer: Issuer) -> None:
    wire = Wire(card, purse_issuer, purse_issuer.pos_sam())
    s = wire.session
    info = s.select()
    s.open(KeyRef.DEBIT, 7, PROGRAM)
    cmd, _ = wire.last()
    check_header("open_session", cmd, p1=KeyRef.DEBIT)
    c = decode("open_session.command", data_of(cmd))
    assert (c["terminal_id"], c["program_id"]) == (7, PROGRAM)
    r = wire.opened(purse_issuer.card_key(KeyRef.DEBIT, info.uid))
    assert (r["counter"], r["balance"], PointsSlot.from_bytes(r["points_slot"]).points) == (1, 10_000, 40)  # type: ignore[arg-type]

    s.verify_pin(PIN)
    cmd, _ = wire.last()
    check_header("verify_pin", cmd)
    f, payload = wire.secured("pin.command")
    assert payload == b""
    plain = crypto.decrypt_block(wire.sk_enc, f["pin_block"])  # type: ignore[arg-type]
    assert plain == bytes.fromhex(f"24{PIN}FFFFFFFFFF") + wire.card_random  # type: ignore[operator]

    new_slot = PointsSlot(program_id=PROGRAM, points=42, tier=1, visits=1)
    s.debit(1_250, NOW, 5, earned=12, redeemed=10, prizes=0, slot=new_slot)
    cmd, _ = wire.last()
    check_header("debit", cmd)
    f, payload = wire.secured("debit.command")
    assert (f["amount"], f["time"], f["terminal_seq"], f["points_earned"], f["points_redeemed"], f["prizes"]) == (
        1_250, NOW, 5, 12, 10, 0)
    assert f["points_slot"] == new_slot.to_bytes()
    t = decode("txn.response", payload + bytes(8))
    assert (t["balance"], t["counter"]) == (8_750, 2)
    record = s.read_log(0, 1)[0]
    cmd, resp = wire.last()
    check_header("read_log", cmd, p1=0, p2=1)
    rec = decode("record", resp)
    txn = purse_issuer.card_key(KeyRef.TXN, info.uid)
    assert t["certificate"] == rec["certificate"] == crypto.mac8(txn, resp[:64])
    assert (rec["record_type"], rec["counter"], rec["amount"], rec["points_before"], rec["points_after"],
            rec["tier"]) == (2, 2, 1_250, 40, 42, 1)
    assert record.to_bytes() == resp

    s.undebit(2, NOW, 6)
    cmd, _ = wire.last()
    check_header("undebit", cmd)
    f, payload = wire.secured("undebit.command")
    assert (f["debit_counter"], f["time"], f["terminal_seq"]) == (2, NOW, 6)
    assert decode("txn.response", payload + bytes(8))["balance"] == 10_000

    s.block(NOW, 7)
    cmd, _ = wire.last()
    check_header("block", cmd)
    f, payload = wire.secured("block.command")
    assert (f["time"], f["terminal_seq"]) == (NOW, 7)
    assert decode("txn.response", payload + bytes(8))["counter"] == 4


def test_credit_bytes(card: VirtualTransport, purse_issuer: Issuer) -> None:
    wire = Wire(card, purse_issuer, purse_issuer.credit_sam())
    info = wire.session.select()
    wire.session.open(KeyRef.CREDIT, 900)
    check_header("open_session", wire.last()[0], p1=KeyRef.CREDIT)
    wire.opened(purse_issuer.card_key(KeyRef.CREDIT, info.uid))
    wire.session.credit(5_000, NOW, 3)
    cmd, _ = wire.last()
    check_header("credit", cmd)
    f, payload = wire.secured("credit.command")
    assert (f["amount"], f["time"], f["terminal_seq"]) == (5_000, NOW, 3)
    assert decode("txn.response", payload + bytes(8))["balance"] == 15_000


def test_cash_out_bytes(card: VirtualTransport, purse_issuer: Issuer) -> None:
    wire = Wire(card, purse_issuer, purse_issuer.credit_sam())
    info = wire.session.select()
    wire.session.open(KeyRef.CREDIT, 900)
    wire.opened(purse_issuer.card_key(KeyRef.CREDIT, info.uid))
    wire.session.cash_out(10_000, NOW, 4)
    cmd, _ = wire.last()
    check_header("cash_out", cmd)
    f, payload = wire.secured("cash_out.command")
    assert (f["amount"], f["time"], f["terminal_seq"]) == (10_000, NOW, 4)
    t = decode("txn.response", payload + bytes(8))
    assert (t["balance"], t["counter"]) == (0, 2)
    record = wire.session.read_log(0, 1)[0]
    assert (record.record_type, record.amount, record.balance_after) == (5, 10_000, 0)
    assert wire.session.select().state == 3


def test_unblock_and_set_pin_bytes(card: VirtualTransport, purse_issuer: Issuer) -> None:
    wire = Wire(card, purse_issuer, purse_issuer.admin_sam())
    info = wire.session.select()
    wire.session.open(KeyRef.ADMIN, 1)
    wire.opened(purse_issuer.card_key(KeyRef.ADMIN, info.uid))
    wire.session.block(NOW, 1)
    wire.secured("block.command")
    wire.session.unblock()
    check_header("unblock", wire.last()[0])
    assert wire.secured(None)[1] == b""
    wire.session.set_pin("9876")
    check_header("set_pin", wire.last()[0])
    f, _ = wire.secured("pin.command")
    assert crypto.decrypt_block(wire.sk_enc, f["pin_block"])[:8] == bytes.fromhex("249876FFFFFFFFFF")  # type: ignore[arg-type]


def test_personalization_bytes(purse_issuer: Issuer) -> None:
    card = VirtualTransport(PurseApplet.manufacture(bytes.fromhex("04112233445566")))
    wire = Wire(card, purse_issuer, purse_issuer.issuer_sam())
    info = wire.session.select()
    wire.session.open(KeyRef.TRANSPORT, 0, transport_key=DEFAULT_TRANSPORT_KEY)
    check_header("open_session", wire.last()[0], p1=KeyRef.TRANSPORT)
    wire.opened(DEFAULT_TRANSPORT_KEY)
    for ref in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN):
        key = purse_issuer.card_key(ref, info.uid)
        wire.session.put_key(ref, 1, key)
        check_header("put_key", wire.last()[0], p1=ref, p2=1)
        f, _ = wire.secured("put_key.command")
        assert crypto.decrypt_block(wire.sk_enc, f["key"]) == key  # type: ignore[arg-type]
    wire.session.write_id("6001000000000024", 600100, 0, 978, 50_000)
    check_header("write_file", wire.last()[0], p1=0x01, p2=0x00)
    f, _ = wire.secured("write_id.command")
    assert (f["card_number"].hex(), f["issuer_id"], f["currency"], f["max_balance"]) == (  # type: ignore[union-attr]
        "6001000000000024", 600100, 978, 50_000)
    wire.session.write_points(2, PointsSlot(program_id=PROGRAM, points=1))
    cmd, _ = wire.last()
    assert cmd[:4] == bytes.fromhex("80D60302") and cmd[4] == 0x28 and "Lc `28`" in TEXT
    wire.secured(None)
    wire.session.lock()
    check_header("lock", wire.last()[0])
    wire.secured(None)


def test_record_and_points_slot_layouts() -> None:
    from purse.protocol import RecordType

    record = TransactionRecord(RecordType.CANCEL, 3, bytes(range(1, 8)), "1234567890123456", 0x01020304, 0x0A0B0C0D,
                               77, 978, 0x0501, 11, 12, -13, -14, 15, 16, 0x11223344, 0x55667788, NOW, 0,
                               bytes(range(8)))
    f = decode("record", record.to_bytes())
    assert f == {
        "record_type": 3, "key_version": 3, "uid": bytes(range(1, 8)), "card_number": bytes.fromhex("1234567890123456"),
        "counter": 0x01020304, "amount": 0x0A0B0C0D, "balance_after": 77, "currency": 978, "program_id": 0x0501,
        "points_before": 11, "points_after": 12, "points_earned": -13, "points_redeemed": -14, "prizes": 15,
        "tier": 16, "terminal_id": 0x11223344, "terminal_seq": 0x55667788, "time": NOW, "flags": 0,
        "certificate": bytes(range(8)),
    }
    assert record.certified_bytes() == record.to_bytes()[:64]
    slot = PointsSlot(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    assert list(decode("points_slot", slot.to_bytes()).values()) == list(range(1, 12))


def test_batch_layouts() -> None:
    header = {"format_version": 3, "log_key_version": 2, "terminal_id": 3, "merchant_id": 4, "batch_seq": 5,
              "first_index": 6, "record_count": 7, "created": 8, "prev_chain_mac": b"ABCDEFGH", "log_id": b"LOG-1234",
              "written_count": 9}
    f = decode("batch.header", BatchHeader.build(header))
    assert f.pop("magic") == b"SPBT" and f.pop("reserved") == b"\x00\x00" and f == header
    trailer = {"record_count": 1, "purchase_count": 2, "purchase_total": 3, "cancel_count": 4, "cancel_total": 5,
               "load_count": 6, "load_total": 7, "block_count": 8, "final_chain_mac": b"12345678",
               "batch_mac": b"abcdefgh"}
    f = decode("batch.trailer", BatchTrailer.build(trailer))
    assert f.pop("magic") == b"SPTR" and f == trailer


def test_worked_example() -> None:
    values = {}
    for line in EXAMPLES["worked"]:
        name, _, value = line.partition("=")
        values[name.strip()] = bytes.fromhex(value.replace(" ", ""))
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    uid = bytes.fromhex("04782E21801D80")
    m = crypto.card_diversification_input(uid, AID, DEFAULT_SYSTEM_IDENTIFIER)
    assert m == values["M"]
    key = crypto.an10922_diversify(master, m)
    assert key == values["K_DEBIT"]
    rt, rc = values["RND_T"], values["RND_C"]
    assert crypto.session_keys(key, rt, rc) == (values["SK_MAC"], values["SK_ENC"])
    assert values["OPEN_DATA"] == struct.pack(">IH8s", 7, 0, rt)
    assert values["OPEN_RESP"] == rc + struct.pack(">II", 1, 10_000) + bytes(32)
    assert crypto.mac8(values["SK_MAC"], b"K" + values["OPEN_DATA"] + values["OPEN_RESP"]) == values["CRYPTOGRAM"]
    body = struct.pack(">IIIiiB32s", 1_250, NOW, 1, 0, 0, 0, bytes(32))
    mac = crypto.mac8(values["SK_MAC"], b"C\x00\x01" + bytes.fromhex("80540000") + body)
    assert values["DEBIT_APDU"] == bytes.fromhex("805400003D") + body + mac + b"\x00"
    pin = bytes.fromhex("241234FFFFFFFFFF") + rc
    assert crypto.encrypt_block(values["SK_ENC"], pin) == values["PIN_1234"]
    assert crypto.terminal_log_key(master, 7, DEFAULT_SYSTEM_IDENTIFIER) == values["LOG_KEY_T7"]


def test_worked_example_runs_on_the_reference_card(purse_issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's DEBIT APDU, sent to a card built from the example's keys and randoms,
    is accepted: the document describes what the card really checks."""
    values = {}
    for line in EXAMPLES["worked"]:
        name, _, value = line.partition("=")
        values[name.strip()] = bytes.fromhex(value.replace(" ", ""))
    from support.cards import make_issuer

    issuer = make_issuer()
    issuer.masters[KeyRef.DEBIT] = {1: bytes.fromhex("00112233445566778899AABBCCDDEEFF")}
    card = issuer.card(balance=10_000, uid=bytes.fromhex("04782E21801D80"))
    import purse.card.applet as applet_module

    monkeypatch.setattr(applet_module.os, "urandom", lambda n: values["RND_C"][:n])
    card.transmit(bytes.fromhex("00A4040008") + AID + b"\x00")
    answer = card.transmit(bytes.fromhex("808A03000E") + values["OPEN_DATA"] + b"\x00")
    assert answer[:-10] == values["OPEN_RESP"] and answer[-10:-2] == values["CRYPTOGRAM"]
    answer = card.transmit(values["DEBIT_APDU"])
    assert answer[-2:] == b"\x90\x00" and decode("txn.response", answer[:-2])["balance"] == 8_750


def test_the_field_tables_are_the_documented_layouts() -> None:
    """One record layout: purse.records' field tables are docs/protocol.md §7 and §8, offset by offset."""
    from purse.batch import ENTRY_LAYOUT
    from purse.records import RECORD_LAYOUT, SLOT_LAYOUT

    for name, layout in (("record", RECORD_LAYOUT), ("points_slot", SLOT_LAYOUT)):
        assert [(offset, size, field) for offset, size, field, _ in LAYOUTS[name]] == \
               [(layout.offset[f.name], f.size, f.name) for f in layout.fields], name
    assert ENTRY_LAYOUT.fields[:-1] == RECORD_LAYOUT.fields and ENTRY_LAYOUT.size == RECORD_LAYOUT.size + 8
