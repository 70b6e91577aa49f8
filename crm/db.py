"""The database: built from a URL, one connection per request, schema migrations."""
import itertools
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from peewee import DatabaseProxy, OperationalError, SqliteDatabase
from playhouse.migrations import Runner
from playhouse.pool import PooledMySQLDatabase
from playhouse.shortcuts import ReconnectMixin
from pymysql.constants import SERVER_STATUS

from crm.config import MYSQL_SCHEMES, PROJECT_ROOT

log = logging.getLogger(__name__)

db = DatabaseProxy()

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
SCHEMA_TABLE = "t_schema_version"

# Every SQLite connection: WAL so readers never wait for the writer; synchronous=FULL because
# in WAL mode NORMAL can lose the last commits on a power cut, after the receipt was printed.
SQLITE_PRAGMAS = (
    ("journal_mode", "wal"),
    ("synchronous", 2),
    ("foreign_keys", 1),
    ("busy_timeout", 15000),
)

# Stated once for every MySQL connection, by the driver as it opens it. READ COMMITTED: money
# moves by conditional UPDATEs that always see the latest committed row, and it avoids the gap
# locks that make REPEATABLE READ deadlock on concurrent inserts. A reader that needs one
# snapshot (backup, reports) asks for REPEATABLE READ on its own transaction.
# (Not in peewee's _initialize_connection: peewee runs that on every connect(), pooled ones
# included, under the database-wide lock: three round trips in single file for every request
# capped the whole server at ~60 pages/s.)
MYSQL_SESSION = {
    "charset": "utf8mb4",
    "collation": "utf8mb4_bin",  # text compares byte for byte, as on SQLite (design rule 11)
    "sql_mode": "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE",
    "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
}
def binary_collation(database):
    """The MySQL collation that compares text byte for byte as SQLite does, trailing spaces
    included (utf8mb4_bin pads: it calls 'k' and 'k ' equal): utf8mb4_nopad_bin on MariaDB,
    utf8mb4_0900_bin on MySQL 8, utf8mb4_bin where neither exists."""
    have = {row[0] for row in database.execute_sql(
        "SELECT collation_name FROM information_schema.collations "
        "WHERE character_set_name = 'utf8mb4'")}
    return next((c for c in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin") if c in have),
                "utf8mb4_bin")
# A pooled connection that came back this recently is handed out without a ping (a round trip
# under the pool's lock); one that sat idle longer is pinged and replaced if the server dropped
# it. A connection killed within that window fails its first statement, which ReconnectMixin
# answers by reconnecting (outside a transaction; BEGIN is a statement too).
PING_AFTER_IDLE_SECONDS = 2.0


class CrmMySQLDatabase(ReconnectMixin, PooledMySQLDatabase):
    """Pooled MySQL: a connection idle for a while is pinged when taken from the pool and
    replaced if the server dropped it ("server has gone away"), and a dropped connection outside
    a transaction is reopened once, so that a restart of MySQL or a killed connection costs no
    request."""

    # MariaDB answers the first query on a KILLed connection with 1927 "Connection was killed".
    reconnect_errors = (*ReconnectMixin.reconnect_errors, (OperationalError, "1927"))

    def _can_reuse(self, conn):
        # peewee's check asks the driver whether a transaction is open; PyMySQL cannot say, so
        # peewee sent a ROLLBACK on every check-in, while holding the pool-wide lock: every
        # request's end waited in line for a round trip (a third of the time under load).
        # PyMySQL does track the server's status flags: roll back only when one is open.
        try:
            if not conn.open:  # the driver dropped it after a lost connection
                return False
            if conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
                conn.rollback()
        except Exception:  # noqa: BLE001 — a connection that cannot say is not reused
            return False
        conn.crm_returned_at = time.monotonic()
        return True

    def _is_closed(self, conn):
        returned = getattr(conn, "crm_returned_at", None)
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return False
        return super()._is_closed(conn)


def database_from_url(url):
    """Build an (unconnected) peewee database from sqlite:///path or mysql://user:pw@host:port/db."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            # Each request opens its own connection: an in-memory database would vanish.
            raise ValueError("SQLite needs a file path, not an in-memory database")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            path,
            pragmas=SQLITE_PRAGMAS,
            timeout=15,
            lock_type="IMMEDIATE",  # writers take the lock at BEGIN: no deadlocked upgrades
            check_same_thread=False,
        )
    parts = urlsplit(url)
    if parts.scheme in MYSQL_SCHEMES:
        return CrmMySQLDatabase(
            parts.path.lstrip("/"),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            **MYSQL_SESSION,
            max_connections=128,
            stale_timeout=300,
            timeout=10,
            connect_timeout=5,
        )
    raise ValueError(f"unsupported database URL: {url!r} (use sqlite:///… or mysql://…)")


def executemany(database, statement, rows, chunk=5000):
    """Run one statement (its text built once) for every row, `chunk` rows at a time through the
    driver's executemany; `rows` may be a generator (a restore streams millions)."""
    rows = iter(rows)
    cursor = database.cursor()
    while batch := list(itertools.islice(rows, chunk)):
        cursor.executemany(statement, batch)


def beside(rows, others, key=lambda row: row[0]):
    """Walk `rows` with `others`, both in ascending order of an id (`key(row)`, and the first
    value of each of `others`): yields (row, [those of `others` with the row's id]). Two
    streamed reads instead of a query per row (customers and their cards)."""
    others = iter(others)
    pending = next(others, None)
    for row in rows:
        mine, wanted = [], key(row)
        while pending is not None and pending[0] <= wanted:
            if pending[0] == wanted:
                mine.append(pending)
            pending = next(others, None)
        yield row, mine


def column_list(database, columns):
    """Column names quoted for the database, comma-separated (t_idempotency_key has a column
    named key)."""
    opening, closing = database.quote
    return ", ".join(f"{opening}{c}{closing}" for c in columns)


def is_mysql(database=None):
    """True when the (given or current) database is MySQL/MariaDB."""
    target = database or db.obj
    return isinstance(target, CrmMySQLDatabase)


LOCK_WAIT_TIMEOUT, DEADLOCK = 1205, 1213  # MySQL's error codes of a busy database
BUSY_CODES = (LOCK_WAIT_TIMEOUT, DEADLOCK)


def is_busy(error):
    """True when a database error means "held by another operation" (its transaction was rolled
    back, nothing changed; a retry can succeed), not "the database cannot be reached": MySQL's
    lock wait timeout or deadlock victim, SQLite's lock held past busy_timeout."""
    if error.args and error.args[0] in BUSY_CODES:
        return True
    return "database is locked" in str(error) or "database table is locked" in str(error)


class LockBusy(OperationalError):
    """Another process holds the maintenance lock."""


@contextmanager
def migration_lock(database, wait=60):
    """A server-wide lock: two processes never migrate, back up or restore one MySQL database at
    once. Waits up to `wait` seconds for it, then raises LockBusy."""
    if not is_mysql(database):
        yield  # SQLite: one server process per file (the launcher's single-instance check)
        return
    got = database.execute_sql("SELECT GET_LOCK('crm_maintenance', %s)", (wait,)).fetchone()[0]
    if got != 1:
        raise LockBusy("another process is migrating, backing up or restoring this database")
    try:
        yield
    finally:
        database.execute_sql("SELECT RELEASE_LOCK('crm_maintenance')")


def migrate(database=None):
    """Apply pending migrations in order; return the names applied (empty when up to date)."""
    database = database or db.obj
    with database.connection_context(), migration_lock(database):
        applied = Runner(database, str(MIGRATIONS_DIR), table_name=SCHEMA_TABLE).up()
    for name in applied:
        log.info("applied migration %s", name)
    return applied


def schema_version(database=None):
    """The names of the migrations recorded as applied."""
    database = database or db.obj
    runner = Runner(database, str(MIGRATIONS_DIR), table_name=SCHEMA_TABLE)
    return sorted(m.name for m in runner.status() if m.applied)


@contextmanager
def snapshot(database=None):
    """A read transaction that sees one consistent state of the whole database (reports, the
    bank-invariant check, backups), while writers go on. MySQL: REPEATABLE READ with a consistent
    snapshot; SQLite: a deferred read transaction, which WAL keeps on its snapshot."""
    database = database or db.obj
    if is_mysql(database):
        database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with database.atomic():
            database.execute_sql("SELECT 1 FROM t_schema_version LIMIT 1")  # start the snapshot
            yield database
    else:
        with database.atomic(lock_type="DEFERRED"):
            database.execute_sql("SELECT 1 FROM t_schema_version LIMIT 1")
            yield database


def wait_for(database, seconds, waiting=None):
    """Try to connect for up to `seconds`; return True once the database answers. `waiting()`
    is called once, when the first try fails (the server window says it is waiting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with database.connection_context():
                database.execute_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 — any failure means "not yet"
            if waiting is not None:
                waiting()
                waiting = None
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def init_app(app):
    """Bind the app's database to the proxy and open/close a connection around each request."""
    database = database_from_url(app.config["DATABASE_URL"])
    db.initialize(database)
    app.extensions["crm_db"] = database

    @app.before_request
    def _connect():
        db.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc):
        if not db.is_closed():
            db.close()


def close_all(database):
    """Close every connection the database object holds (all of a MySQL pool)."""
    if hasattr(database, "close_all"):
        database.close_all()
    elif not database.is_closed():
        database.close()
