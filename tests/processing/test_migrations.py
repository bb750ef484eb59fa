"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from support.backoffice import DAY, NOW, World, database, two_merchants_sales, world

from processing import ledger
from processing.check import run_check
from processing.db import DatabaseError, alembic_config, head_revision, migrating, open_database
from processing.schema import CardNumber, RegistryCardNumber, load_all_tables
from processing.schema.processing import sales
from processing.settlement import settle


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrated_schema_equals_metadata(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as url:
        engine = open_database(url)
        try:
            with engine.connect() as conn:
                ctx = MigrationContext.configure(conn, opts={"compare_type": True})
                assert ctx.get_current_revision() == head_revision()
                diff = compare_metadata(ctx, load_all_tables())
                assert diff == [], diff
                tables = set(inspect(conn).get_table_names())
            assert set(load_all_tables().tables) <= tables
            open_database(url).dispose()  # at head already: a no-op
        finally:
            engine.dispose()


def test_a_database_made_without_migrations_is_refused(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    legacy = create_engine(url)
    load_all_tables().create_all(legacy)
    legacy.dispose()
    with pytest.raises(DatabaseError, match="not a smartpurse database"):
        open_database(url)


def test_another_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A terminal's log (or any SQLite file with tables) given as --db: refused, no table added to it."""
    import sqlite3

    path = tmp_path / "terminal.log"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, entry BLOB)")
    with pytest.raises(DatabaseError, match="not a smartpurse database"):
        open_database(f"sqlite:///{path}")
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["log"]


# -- 0002: sales aggregates replace records.settlement_id; card numbers collate "C" on PostgreSQL ------------

def _migrate(engine: Engine, revision: str, down: bool = False) -> None:
    with engine.connect() as conn, migrating(conn):
        (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)


def _sales_rows(engine: Engine) -> list[tuple[int, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(sales).order_by(sales.c.batch_id, sales.c.day))]


def _settled_world(w: World) -> None:
    """Two merchants, sales on three days, the first day settled."""
    _, b = two_merchants_sales(w)
    t7 = w.terminals[7]
    t7.purchase(b, 300, NOW + 3 * DAY)
    assert w.process(t7.close(w.tmp / "t7b.spb")).accepted == 1
    assert {s.merchant_id for s in settle(w.engine, dt.date(2023, 11, 15))} == {42, 43}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0001_data_upgrades_to_sales_and_back(kind: str, tmp_path: Path) -> None:
    with world(kind, tmp_path) as w:
        _settled_world(w)
        before = _sales_rows(w.engine)
        assert len(before) == 4 and sum(r[-1] is not None for r in before) == 2  # (batch, day): 2 settled

        _migrate(w.engine, "0001", down=True)
        with w.engine.connect() as conn:
            assert "sales" not in inspect(conn).get_table_names()
            assert "ix_records_merchant_day" in {i["name"] for i in inspect(conn).get_indexes("records")}
            stamped = dict(conn.execute(text("SELECT settlement_id, COUNT(*) FROM records "
                                             "WHERE record_type IN (2, 3) GROUP BY settlement_id")).all())
        settled = sum(r[4] + r[6] for r in before if r[-1] is not None)
        assert sum(n for sid, n in stamped.items() if sid is not None) == settled == 4
        assert stamped[None] == 2  # the later days' purchases, still unsettled

        _migrate(w.engine, "head")
        assert _sales_rows(w.engine) == before
        with w.engine.connect() as conn:
            assert "settlement_id" not in {c["name"] for c in inspect(conn).get_columns("records")}
            assert "ix_records_merchant_day" not in {i["name"] for i in inspect(conn).get_indexes("records")}
            rep = run_check(conn)
            assert rep.ok, rep.failures
        assert settle(w.engine, dt.date(2023, 11, 15)) == []  # nothing paid twice after the round trip
        later = {s.merchant_id: (s.purchase_count, s.gross) for s in settle(w.engine, dt.date(2023, 11, 18))}
        assert later == {42: (2, 2_300)}
        with w.engine.connect() as conn:
            assert run_check(conn).ok
            assert ledger.balance(conn, ledger.merchant_payable(42)) == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_refuses_a_day_settled_only_in_part(kind: str, tmp_path: Path) -> None:
    """A (batch, day) whose records name two settlements cannot become one sales row: stop, change nothing."""
    with world(kind, tmp_path) as w:
        _settled_world(w)
        _migrate(w.engine, "0001", down=True)
        with w.engine.begin() as conn:
            victim, sid = conn.execute(text("SELECT id, settlement_id FROM records WHERE id = "
                                            "(SELECT MIN(id) FROM records WHERE settlement_id IS NOT NULL)")).one()
            conn.execute(text("UPDATE records SET settlement_id = NULL WHERE id = :i"), {"i": victim})
        with pytest.raises(DatabaseError, match=r"not uniform: batch \d+ day \d+: 3 records, 1 merchants, "
                                                r"1 terminals, 1 settlements, 2 settled"):
            open_database(w.url).dispose()
        with w.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0001"
            assert "sales" not in inspect(conn).get_table_names()
        with w.engine.begin() as conn:
            conn.execute(text("UPDATE records SET settlement_id = :s WHERE id = :i"), {"s": sid, "i": victim})
        open_database(w.url).dispose()  # repaired: the upgrade goes through
        with w.engine.connect() as conn:
            assert run_check(conn).ok


def _collated_c(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(t, c) for t, c, coll in conn.execute(text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()")) if coll == "C"}


@pytest.mark.postgres
def test_card_number_columns_collate_c_on_postgresql(tmp_path: Path) -> None:
    """Every card-number column, and only those, collates "C"; joins between them work."""
    declared = {(t.name, c.name) for t in load_all_tables().tables.values() for c in t.columns
                if c.type in (CardNumber, RegistryCardNumber)}
    assert len(declared) == 24
    with database("postgresql", tmp_path) as url:
        engine = open_database(url)
        try:
            assert _collated_c(engine) == declared
            with engine.connect() as conn:
                conn.execute(text("SELECT COUNT(*) FROM records r JOIN cards c ON c.number = r.card_number "
                                  "JOIN loads l ON l.card_number = c.number")).scalar_one()
            _migrate(engine, "0001", down=True)
            assert _collated_c(engine) == set()
        finally:
            engine.dispose()


def test_card_number_type_renders_collate_only_for_postgresql() -> None:
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateTable

    from processing.schema.processing import records

    assert 'card_number VARCHAR(16) COLLATE "C" NOT NULL' in str(CreateTable(records).compile(
        dialect=postgresql.dialect()))
    lite = str(CreateTable(records).compile(dialect=sqlite.dialect()))
    assert "card_number VARCHAR(16) NOT NULL" in lite and "COLLATE" not in lite


# -- 0004: records keyed by (card, counter); batches name their terminal log ------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0003_data_upgrades_to_card_counter_keys_and_first_logs(kind: str, tmp_path: Path) -> None:
    with world(kind, tmp_path) as w:
        _settled_world(w)
        _migrate(w.engine, "0003", down=True)
        with w.engine.connect() as conn:
            keys = inspect(conn).get_pk_constraint("records")["constrained_columns"]
            assert keys == ["terminal_id", "terminal_seq"] and "log_id" not in \
                {c["name"] for c in inspect(conn).get_columns("batches")}
            before = conn.execute(text("SELECT card_number, counter, raw FROM records ORDER BY 1, 2")).all()
        _migrate(w.engine, "head")
        with w.engine.connect() as conn:
            assert inspect(conn).get_pk_constraint("records")["constrained_columns"] == ["card_number", "counter"]
            assert conn.execute(text("SELECT card_number, counter, raw FROM records ORDER BY 1, 2")).all() == before
            assert {bytes(r[0]) for r in conn.execute(text("SELECT log_id FROM batches"))} == {bytes(8)}
            assert run_check(conn).ok


def test_0004_downgrade_refuses_a_terminal_with_a_second_log(tmp_path: Path) -> None:
    with world("sqlite", tmp_path) as w:
        _settled_world(w)
        with w.engine.begin() as conn:
            conn.execute(text("UPDATE batches SET log_id = :other WHERE id = 1"), {"other": b"another!"})
        with pytest.raises(RuntimeError, match="downgrade refused"):
            _migrate(w.engine, "0003", down=True)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0007_rebuilds_cards_under_their_references_and_back(kind: str, tmp_path: Path) -> None:
    """A new card state needs a new CHECK: SQLite rebuilds ``cards`` while transfers reference it."""
    with world(kind, tmp_path) as w:
        old = w.card(1, load=5_000)
        transfer = w.lose_card(old, "6277000000000105", bytes.fromhex("04000000000105"))
        w.engine.dispose()
        _migrate(w.engine, "0006", down=True)
        w.engine.dispose()
        engine = open_database(w.engine.url.render_as_string(hide_password=False))  # the upgrade a user gets
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE cards SET state = 'returned' WHERE number = '6277000000000105'"))
                assert conn.execute(text("SELECT id FROM card_transfers")).scalar() == transfer
                if kind == "sqlite":
                    assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(Exception, match="ck_cards_state|CHECK"), engine.begin() as conn:
                conn.execute(text("UPDATE cards SET state = 'gone' WHERE number = '6277000000000105'"))
            _migrate(engine, "0006", down=True)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT state FROM cards WHERE number = '6277000000000105'")).scalar() \
                    == "blocked"
                assert "cash_outs" not in inspect(conn).get_table_names()
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0016_marks_the_desk_records_already_stored_as_posted(kind: str, tmp_path: Path) -> None:
    """The upgrade sets ``posted`` on the loads whose record is in ``records``; a load made while the
    database was at 0015 stays unposted and is posted by the next pass, once."""
    with world(kind, tmp_path) as w:
        stored = w.card(1, load=5_000)
        w.ingest_loads()
        _migrate(w.engine, "0015", down=True)
        later = w.card(2)
        with w.engine.begin() as conn:  # a desk of the 0015 schema, which has no posted column
            from processing import synthetic
            row = synthetic.load_row(later, 700, NOW + 5, 99)
            conn.execute(text("INSERT INTO loads (card_number, counter, amount, balance_after, terminal_id, "
                              "terminal_seq, time, record) VALUES (:card_number, :counter, :amount, :balance_after, "
                              ":terminal_id, :terminal_seq, :time, :record)"), row)
        _migrate(w.engine, "head")
        with w.engine.connect() as conn:
            flags = dict(conn.execute(text("SELECT card_number, posted FROM loads")).all())
        assert {n: bool(f) for n, f in flags.items()} == {stored.number: True, later.number: False}
        assert w.ingest_loads() == 1
        assert w.ingest_loads() == 0
        with w.engine.connect() as conn:
            assert all(bool(f) for (f,) in conn.execute(text("SELECT posted FROM loads")))
            assert ledger.card_float(conn) == 5_700
            assert run_check(conn).ok


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0018_counts_the_points_of_the_records_walked_before_it(kind: str, tmp_path: Path) -> None:
    """A database of 0017 holds records with points and no ``points_days``: the upgrade walks them once and
    the rows it writes are those the importer writes (a full check proves it), the won prizes included."""
    from test_points_days import _loyalty_days, _report

    from processing.run import process_files
    from processing.schema.processing import card_points, points_days

    with world(kind, tmp_path) as w:
        files = _loyalty_days(w, tmp_path / "batches", seed=2)
        w.ingest_loads()
        process_files(w.engine, files, w.keys, w.options())
        with w.engine.connect() as conn:
            imported = sorted(tuple(r) for r in conn.execute(select(points_days)))
            prizes = sorted(tuple(r) for r in conn.execute(select(card_points)))
        expected = _report(w, None, None)
        _migrate(w.engine, "0017", down=True)
        with w.engine.connect() as conn:
            assert "points_days" not in inspect(conn).get_table_names()
        _migrate(w.engine, "head")
        with w.engine.connect() as conn:
            assert sorted(tuple(r) for r in conn.execute(select(points_days))) == imported
            assert sorted(tuple(r) for r in conn.execute(select(card_points))) == prizes
            assert any(r[-1] for r in prizes)  # a card's last record won a prize
            assert run_check(conn, full=True).ok
        assert _report(w, None, None) == expected


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0019_fills_card_days_from_the_records_stored_before_it(kind: str, tmp_path: Path) -> None:
    """A database of 0018 holds records and no ``card_days``: the upgrade writes the rows the importer writes,
    and the cards report counts the same cards as before the downgrade."""
    from test_card_days import _four_days, _used

    from processing.run import process_files
    from processing.schema.processing import card_days

    with world(kind, tmp_path) as w:
        files = _four_days(w, tmp_path / "batches", seed=4)
        w.ingest_loads()
        process_files(w.engine, files, w.keys, w.options())
        with w.engine.connect() as conn:
            imported = sorted(tuple(r) for r in conn.execute(select(card_days)))
        used = [_used(w, start, start) for start in (None, dt.date.fromtimestamp(NOW + DAY))]
        _migrate(w.engine, "0018", down=True)
        with w.engine.connect() as conn:
            assert "card_days" not in inspect(conn).get_table_names()
        _migrate(w.engine, "head")
        with w.engine.connect() as conn:
            assert sorted(tuple(r) for r in conn.execute(select(card_days))) == imported
            assert len(imported) > 12
            assert run_check(conn, full=True).ok
        assert [_used(w, start, start) for start in (None, dt.date.fromtimestamp(NOW + DAY))] == used


# -- 0020: SQLite keeps the card state in WITHOUT ROWID tables ------------------------------------------------

CARD_STATE = ("card_accounts", "card_points", "card_days")


def _without_rowid(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        sql: dict[str, str] = {name: ddl for name, ddl in conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))}
    return {name: "WITHOUT ROWID" in sql[name].upper() for name in CARD_STATE}


def test_0020_rebuilds_the_card_state_without_rowid_and_back_keeping_every_row(tmp_path: Path) -> None:
    """The three tables the import writes card by card become one b-tree each on SQLite; their rows, the
    partial index of open gaps and a full check come through the rebuild both ways."""
    from test_points_days import _loyalty_days

    from processing.run import process_files
    from processing.schema.processing import card_accounts, card_days, card_points

    def rows() -> dict[str, list[tuple[object, ...]]]:
        with w.engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                    for t in (card_accounts, card_points, card_days)}

    def gap_index() -> list[str]:
        with w.engine.connect() as conn:
            return [i["name"] for i in inspect(conn).get_indexes("card_accounts")]

    with world("sqlite", tmp_path) as w:
        files = _loyalty_days(w, tmp_path / "batches", seed=2)
        w.ingest_loads()
        process_files(w.engine, files, w.keys, w.options())
        assert _without_rowid(w.engine) == dict.fromkeys(CARD_STATE, True)
        stored = rows()
        assert all(stored.values()), stored
        assert gap_index() == ["ix_card_accounts_gap_since"]
        _migrate(w.engine, "0019", down=True)
        assert _without_rowid(w.engine) == dict.fromkeys(CARD_STATE, False)
        assert rows() == stored
        assert gap_index() == ["ix_card_accounts_gap_since"]
        _migrate(w.engine, "head")
        assert _without_rowid(w.engine) == dict.fromkeys(CARD_STATE, True)
        assert rows() == stored
        assert gap_index() == ["ix_card_accounts_gap_since"]
        with w.engine.connect() as conn:
            assert run_check(conn, full=True).ok


# -- 0021: PostgreSQL leaves room in the pages of the card state ----------------------------------------------

def _fillfactor(engine: Engine) -> dict[str, list[str] | None]:
    with engine.connect() as conn:
        return {name: options for name, options in conn.execute(text(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('card_accounts', 'card_points')"))}


@pytest.mark.postgres
def test_0021_sets_the_card_state_fillfactor_on_postgresql_and_back(tmp_path: Path) -> None:
    """New databases and upgraded ones get fillfactor 70 on the two tables updated card by card; the
    downgrade resets it, and the rows stay as they were either way."""
    from processing.schema.processing import card_accounts

    with world("postgresql", tmp_path) as w:
        two_merchants_sales(w)
        with w.engine.connect() as conn:
            accounts = sorted(tuple(r) for r in conn.execute(select(card_accounts)))
        assert accounts
        assert _fillfactor(w.engine) == {"card_accounts": ["fillfactor=70"], "card_points": ["fillfactor=70"]}
        _migrate(w.engine, "0020", down=True)
        assert _fillfactor(w.engine) == {"card_accounts": None, "card_points": None}
        _migrate(w.engine, "head")
        assert _fillfactor(w.engine) == {"card_accounts": ["fillfactor=70"], "card_points": ["fillfactor=70"]}
        with w.engine.connect() as conn:
            assert sorted(tuple(r) for r in conn.execute(select(card_accounts))) == accounts
            assert run_check(conn, full=True).ok
