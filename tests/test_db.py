"""The database layer: URLs, SQLite durability pragmas, migrations, append-only triggers,
and recovery from a dropped MariaDB connection."""
import threading

import pytest
from peewee import DatabaseError

from crm import db as crm_db
from crm.models import APPEND_ONLY_TABLES, all_models
from tests.conftest import PASSWORD, mysql_admin


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite:///", "sqlite:///:memory:", "nonsense"])
def test_database_url_refused(url):
    """Only sqlite:///file and mysql:// URLs are accepted."""
    with pytest.raises(ValueError):
        crm_db.database_from_url(url)


def test_mysql_url_parts():
    """User, password (URL-quoted), host, port and database name are taken from the URL."""
    database = crm_db.database_from_url("mysql://shop:p%40ss@10.0.0.5:3307/crm")
    assert database.database == "crm"
    params = database.connect_params
    assert (params["user"], params["password"], params["host"], params["port"]) == (
        "shop", "p@ss", "10.0.0.5", 3307)
    assert params["charset"] == "utf8mb4"


@pytest.mark.backends("sqlite")
def test_every_sqlite_connection_is_durable(app):
    """Each connection, in any thread, runs WAL with synchronous=FULL and foreign keys on."""
    database = app.extensions["crm_db"]
    seen = []

    def check():
        with database.connection_context():
            seen.append((
                database.execute_sql("PRAGMA synchronous").fetchone()[0],
                database.execute_sql("PRAGMA journal_mode").fetchone()[0],
                database.execute_sql("PRAGMA foreign_keys").fetchone()[0],
                database.execute_sql("PRAGMA busy_timeout").fetchone()[0],
            ))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check()
    assert seen == [(2, "wal", 1, 15000)] * 5


@pytest.mark.backends("sqlite")
def test_request_connection_is_durable(app, client, admin):
    """The connection a request gets is one of those durable connections."""
    from crm.db import db

    with app.test_request_context("/"):
        app.preprocess_request()
        assert db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.backends("mysql")
def test_mysql_session_settings(app):
    """MariaDB connections state their isolation level, strict mode and utf8mb4: a new one, the
    same one handed out again by the pool, and the one replacing a killed connection."""
    database = app.extensions["crm_db"]

    def settings():  # as a request does: connect, one statement, close
        database.connect()
        try:
            return database.execute_sql(
                "SELECT @@SESSION.tx_isolation, @@SESSION.sql_mode, "
                "@@character_set_connection, @@collation_connection, CONNECTION_ID()").fetchone()
        finally:
            database.close()

    first = settings()
    again = settings()
    killer = mysql_admin()
    with killer.cursor() as cursor:
        cursor.execute(f"KILL {int(again[4])}")
    killer.close()
    replaced = settings()
    assert again[4] == first[4] != replaced[4]  # pooled, then replaced
    for isolation, sql_mode, charset, collation, _ in (first, again, replaced):
        assert isolation == "READ-COMMITTED"
        assert "STRICT_ALL_TABLES" in sql_mode
        assert (charset, collation) == ("utf8mb4", "utf8mb4_bin")


def _schema(database):
    """{table: sorted column names} and {table: sorted index names} as the database reports them."""
    with database.connection_context():
        tables = sorted(database.get_tables())
        columns = {t: sorted(c.name for c in database.get_columns(t)) for t in tables}
        indexes = {t: sorted(i.name for i in database.get_indexes(t)) for t in tables}
    return tables, columns, indexes


def test_migrate_creates_the_models_tables_and_second_run_is_noop(backend, scratch):
    """A fresh migrate makes exactly the tables and columns of crm/models.py; again: nothing."""
    database = crm_db.database_from_url(scratch.url(backend))
    try:
        files = sorted(p.stem for p in crm_db.MIGRATIONS_DIR.glob("[0-9]*.py"))
        assert crm_db.migrate(database) == files
        tables, columns, indexes = _schema(database)
        expected = {m._meta.table_name: sorted(f.column_name for f in m._meta.sorted_fields)
                    for m in all_models()}
        assert set(tables) == set(expected) | {"t_schema_version"}
        for table, cols in expected.items():
            assert columns[table] == cols, table
        assert crm_db.migrate(database) == []
        assert _schema(database) == (tables, columns, indexes)
        assert crm_db.schema_version(database) == files
    finally:
        crm_db.close_all(database)


def test_both_backends_get_the_same_schema(scratch, mysql_server):
    """SQLite and MariaDB end up with the same tables and columns."""
    schemas = []
    for backend in ("sqlite", "mysql"):
        database = crm_db.database_from_url(scratch.url(backend))
        crm_db.migrate(database)
        schemas.append(_schema(database)[:2])
        crm_db.close_all(database)
    assert schemas[0] == schemas[1]


def _insert_ledger_rows(database):
    """One row in each append-only table, by plain SQL."""
    sql = [
        "INSERT INTO t_user (username, display_name, password_hash, role, active, permissions,"
        " created_at, updated_at) VALUES ('op', '', 'x', 'operator', 1, '', '2026-01-01 10:00:00',"
        " '2026-01-01 10:00:00')",
        "INSERT INTO t_customer (customer_no, name, gender, phone, address, remark, archived,"
        " created_at, updated_at, search_text) VALUES ('000001', '张三', '男', '13800000000', '',"
        " '', 0, '2026-01-01 10:00:00', '2026-01-01 10:00:00', '张三|13800000000|000001')",
        "INSERT INTO t_card (card_no, customer_id, status, money, paid_money, bonus_money,"
        " entry_count, chain_head, remark, created_at, updated_at) VALUES ('8800001', 1, 'active',"
        " 10000, 10000, 0, 1, 'h1', '', '2026-01-01 10:00:00', '2026-01-01 10:00:00')",
        "INSERT INTO t_card_record (card_id, customer_id, seq, business_type, amount, paid_delta,"
        " bonus_delta, balance_after, paid_after, bonus_after, payment_method, operator_id,"
        " request_id, remark, created_at, prev_hash, hash) VALUES (1, 1, 1, 'recharge', 10000,"
        " 10000, 0, 10000, 10000, 0, 'cash', 1, 'k1', '', '2026-01-01 10:00:00', '', 'h1')",
        "INSERT INTO t_consume_record (card_id, customer_id, card_record_id, original_amount,"
        " amount, balance_after, operator_id, request_id, remark, created_at) VALUES (1, 1, 1,"
        " 100, 100, 9900, 1, 'k2', '', '2026-01-01 10:00:00')",
        "INSERT INTO t_audit_log (created_at, username, ip, action, object_type, object_id, detail)"
        " VALUES ('2026-01-01 10:00:00', 'op', '', 'test', '', '', '')",
    ]
    for statement in sql:
        database.execute_sql(statement)


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("statement", ["UPDATE {table} SET created_at = '2020-01-01 00:00:00'",
                                       "DELETE FROM {table}"])
def test_database_refuses_changing_ledger_rows(app, table, statement):
    """The database itself (a trigger) refuses UPDATE and DELETE on append-only tables."""
    database = app.extensions["crm_db"]
    with database.connection_context():
        _insert_ledger_rows(database)
        before = database.execute_sql(f"SELECT * FROM {table}").fetchall()
        with pytest.raises(DatabaseError, match="append-only"):
            with database.atomic():
                database.execute_sql(statement.format(table=table))
        assert database.execute_sql(f"SELECT * FROM {table}").fetchall() == before


@pytest.mark.backends("mysql")
def test_killed_mysql_connection_is_replaced(app, client, make_user, auth):
    """KILL of the app's pooled connection between two requests: the next request succeeds."""
    make_user("admin", role="admin")
    assert auth.login("admin", PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    database = app.extensions["crm_db"]
    with database.connection_context():  # the pooled connection the next request will get
        connection_id = database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
    killer = mysql_admin()
    with killer.cursor() as cursor:
        cursor.execute(f"KILL {int(connection_id)}")
    killer.close()
    resp = client.get("/")
    assert resp.status_code == 200
    assert "您好" in resp.get_data(as_text=True)
    with database.connection_context():
        assert database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0] != connection_id
