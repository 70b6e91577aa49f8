"""Fixtures: an app on SQLite and on MariaDB, a client, a logged-in helper, a live waitress
server on a loopback port and a Playwright page in Debian's chromium.

Every test that uses `app` (directly or through another fixture) runs once per backend. Mark a
test `@pytest.mark.backends("sqlite")` to run it on one only. MariaDB is at CRM_TEST_MYSQL_URL
(default mysql://root@127.0.0.1:3306); when it is unreachable its tests are skipped, unless
CRM_REQUIRE_MYSQL=1 (CI), where that is a failure.

Time: every test runs with the app's one clock (crm.clock) moved to FIXED_NOW, running on from
there, so nothing depends on the day the suite runs. A test whose outcome depends on the date
takes the `clock` fixture: it runs once at FIXED_NOW and once a year ahead of the real date.
"""
import contextlib
import datetime
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from pathlib import Path

import pymysql
import pytest
from waitress.server import create_server

from crm import clock as crm_clock
from crm import create_app
from crm import db as crm_db
from crm.models import all_models
from crm.services import SYSTEM
from crm.services import users as user_service

BACKENDS = ("sqlite", "mysql")
MYSQL_URL = os.environ.get("CRM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct-horse-9"
FIXED_NOW = datetime.datetime(2026, 11, 27, 9, 30)  # the clock in tests: a Friday, 09:30


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only on these database backends")


def pytest_generate_tests(metafunc):
    """Run every test that needs a database once per backend."""
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = marker.args if marker else BACKENDS
        metafunc.parametrize("backend", names, indirect=True)


def pytest_make_parametrize_id(config, val, argname):
    """A file's bytes as a test id name their first 8 bytes only: the same on every collection
    (an .xlsx made at collection carries its zip time, which changes even its compressed size by
    a byte, and the two workers must collect the same ids) and short (17 MB of zeros was an
    id). pytest numbers ids that come out the same."""
    if isinstance(val, bytes):
        return f"{argname}={val[:8]!r}"
    return None


def _backend_of(nodeid):
    return next((b for b in BACKENDS if f"[{b}" in nodeid or f"-{b}]" in nodeid
                 or f"-{b}-" in nodeid), "none")


def _group_of(item):
    """The worker group of a test: "mysql" for every test that reaches MariaDB (by its backend,
    or by asking for the server itself: SQLite → MariaDB restores, the schema comparison), else
    its backend. A test that reaches MariaDB some other way says so with its own
    @pytest.mark.xdist_group("mysql")."""
    marked = item.get_closest_marker("xdist_group")
    if marked is not None:
        return marked.args[0] if marked.args else marked.kwargs["name"]
    if "mysql_server" in item.fixturenames:
        return "mysql"
    return _backend_of(item.nodeid)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(items):
    """Two workers (pytest.ini: -n 2 --dist loadgroup), one database each: every MariaDB test
    runs in one process, so the server-wide things (the maintenance lock, GET_LOCK, the restore
    hold's timing) are never shared by two tests at once; SQLite's files are per test anyway.
    `mysql_server` checks it: a second worker reaching MariaDB fails at once."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group_of(item)))


_outcomes = Counter()


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[(_backend_of(report.nodeid), report.outcome)] += 1


def pytest_terminal_summary(terminalreporter):
    """Say how many tests ran on each database, so CI shows that both really ran."""
    labels = {"sqlite": "SQLite", "mysql": "MariaDB", "none": "no database"}
    for backend, label in labels.items():
        counts = {o: n for (b, o), n in _outcomes.items() if b == backend}
        if counts:
            text = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
            terminalreporter.write_line(f"{label}: {text}")


def _year_ahead():
    """FIXED_NOW's time of day, a year after the real date (28 Feb for a 29 Feb)."""
    today = datetime.date.today()
    try:
        day = today.replace(year=today.year + 1)
    except ValueError:
        day = today.replace(year=today.year + 1, day=28)
    return datetime.datetime.combine(day, FIXED_NOW.time())


@pytest.fixture(autouse=True)
def fixed_clock():
    """The app's clock at FIXED_NOW for every test (it keeps running from there)."""
    with crm_clock.travel(FIXED_NOW):
        yield FIXED_NOW


class Clock:
    """The app's clock as a test sees it: where it started, now, today, and moving it on."""

    def __init__(self, start):
        self.start = start

    def now(self):
        return crm_clock.now()

    def today(self):
        return crm_clock.today()

    def advance(self, **delta):
        """Move the clock on: clock.advance(minutes=16)."""
        crm_clock.set_clock(crm_clock.now() + datetime.timedelta(**delta))


@pytest.fixture(params=["fixed", "year_ahead"])
def clock(request, fixed_clock):
    """For tests that depend on the date: run at FIXED_NOW, and once a year ahead of today."""
    start = FIXED_NOW if request.param == "fixed" else _year_ahead()
    crm_clock.set_clock(start)
    return Clock(start)


def _server_url(name=""):
    return f"{MYSQL_URL.rstrip('/')}/{name}"


def mysql_admin():
    """A plain PyMySQL connection to the test server (no database selected)."""
    database = crm_db.database_from_url(_server_url("mysql"))
    return pymysql.connect(host=database.connect_params["host"],
                           port=database.connect_params["port"],
                           user=database.connect_params["user"],
                           password=database.connect_params["password"],
                           autocommit=True, charset="utf8mb4")


@pytest.fixture(scope="session")
def mysql_server():
    """Confirm MariaDB answers, or skip (fail under CRM_REQUIRE_MYSQL=1). Under xdist the
    worker holds a server-wide lock for its whole session: a test of another worker that reaches
    MariaDB (grouped wrong) fails here instead of racing the MariaDB tests."""
    try:
        admin = mysql_admin()
    except pymysql.MySQLError as error:
        message = f"MariaDB not reachable at {MYSQL_URL}: {error}"
        if os.environ.get("CRM_REQUIRE_MYSQL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        admin.close()
        yield MYSQL_URL
        return
    with admin.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK('crm_test_mariadb_worker', 0)")
        if cursor.fetchone()[0] != 1:
            admin.close()
            pytest.fail(f"a second pytest worker ({worker}) reached MariaDB: mark the test "
                        '@pytest.mark.xdist_group("mysql") (tests/conftest.py::_group_of)')
    yield MYSQL_URL
    admin.close()  # the lock goes with the connection


class ScratchDatabases:
    """Makes empty databases (SQLite files or MariaDB schemas) and removes them afterwards."""

    def __init__(self, tmp_dir):
        self.tmp_dir = Path(tmp_dir)
        self.mysql_names = []

    def url(self, backend):
        name = "crm_test_" + uuid.uuid4().hex[:12]
        if backend == "sqlite":
            return f"sqlite:///{self.tmp_dir / name}.db"
        conn = mysql_admin()
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        conn.close()
        self.mysql_names.append(name)
        return _server_url(name)

    def drop_all(self):
        if not self.mysql_names:
            return
        conn = mysql_admin()
        with conn.cursor() as cursor:
            for name in self.mysql_names:
                cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    """Session-wide maker of empty databases, all dropped at the end of the run."""
    maker = ScratchDatabases(tmp_path_factory.mktemp("databases"))
    yield maker
    maker.drop_all()


@pytest.fixture(scope="session")
def migrated_template(scratch, tmp_path_factory):
    """One migrated database per backend for the whole run: a file to copy (SQLite) or a
    database to empty between tests (MariaDB)."""
    made = {}

    def get(backend):
        if backend not in made:
            url = scratch.url(backend)
            database = crm_db.database_from_url(url)
            crm_db.migrate(database)
            crm_db.close_all(database)
            made[backend] = url
        return made[backend]

    return get


def _empty_mysql(url):
    """Empty every table but the schema version, without firing the append-only triggers."""
    database = crm_db.database_from_url(url)
    with database.connection_context():
        database.execute_sql("SET FOREIGN_KEY_CHECKS = 0")
        # An empty table whose id counter moved on (rows rolled back) is emptied too: tests that
        # insert by plain SQL count on ids starting at 1.
        counted = dict(database.execute_sql(
            "SELECT table_name, auto_increment FROM information_schema.tables "
            "WHERE table_schema = DATABASE()").fetchall())
        for model in all_models():
            table = model._meta.table_name
            if table == "t_counter":  # its rows are made by a migration: reset, keep them
                database.execute_sql("UPDATE t_counter SET value = 0")
            elif table == "t_restore_hold":
                database.execute_sql("UPDATE t_restore_hold SET held_until = NULL, holder = ''")
            elif (counted.get(table) or 1) > 1 or database.execute_sql(
                    f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                database.execute_sql(f"TRUNCATE TABLE {table}")
        database.execute_sql("SET FOREIGN_KEY_CHECKS = 1")
    crm_db.close_all(database)


@pytest.fixture
def backend(request):
    """The database backend of this test run: "sqlite" or "mysql"."""
    if request.param == "mysql":
        request.getfixturevalue("mysql_server")
    return request.param


@pytest.fixture
def database_url(backend, migrated_template, tmp_path):
    """A migrated, empty database for this test."""
    template = migrated_template(backend)
    if backend == "sqlite":
        target = tmp_path / "crm.db"
        shutil.copyfile(template[len("sqlite:///"):], target)
        return f"sqlite:///{target}"
    _empty_mysql(template)
    return template


@pytest.fixture
def app(database_url, tmp_path):
    """The app on a fresh migrated database, with its own instance folder."""
    app = create_app({
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "BCRYPT_ROUNDS": 4,  # production uses 12; tests only need real hashes, fast
        "STATS_CACHE_SECONDS": 0,  # tests check figures right after posting; the cache has its own
        "OPEN_BROWSER": False,
    })
    from tests.answers import CheckedClient

    app.test_client_class = CheckedClient  # every API answer checked against the document
    yield app
    crm_db.close_all(app.extensions["crm_db"])


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner of the app."""
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user directly through the service: make_user("ann", role="operator")."""

    def make(username, role="operator", password=PASSWORD, display_name=""):
        with app.app_context(), app.extensions["crm_db"].connection_context():
            return user_service.create_user(SYSTEM, username, password, role=role,
                                            display_name=display_name)

    return make


def pdf_text(data):
    """The text of a PDF, as poppler's pdftotext reads it (what a person would copy out)."""
    import subprocess

    result = subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True,
                            check=True, timeout=60)
    return result.stdout.decode("utf-8")


def csrf_token(client, path="/login"):
    """The CSRF token of the form on `path`."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class AuthActions:
    """Log the test client in and out through the real login form."""

    def __init__(self, client):
        self.client = client

    def login(self, username="admin", password=PASSWORD):
        token = csrf_token(self.client, "/login")
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": token})

    def logout(self):
        token = csrf_token(self.client, "/")
        return self.client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    """Log in and out through the forms."""
    return AuthActions(client)


@pytest.fixture
def admin(make_user, auth):
    """An admin user, logged in on `client`."""
    user = make_user("admin", role="admin", display_name="王店长")
    auth.login("admin")
    return user


@pytest.fixture
def api_token(client, make_user):
    """Log in through the API: api_token("ann", role="operator") returns a bearer header dict."""

    def login(username, role="operator"):
        make_user(username, role=role)
        resp = client.post("/api/v1/login", json={"username": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.get_json()
        return {"Authorization": f"Bearer {resp.get_json()['token']}"}

    return login


@pytest.fixture
def live_server(app):
    """The app served by a real waitress server on a free loopback port; yields its base URL."""
    with serving(app, threads=8) as base:
        yield base


@contextlib.contextmanager
def serving(app, threads):
    """The app on a real waitress server on a free loopback port, stopped afterwards. close()
    from this thread can land while the server's loop sits in select() on the socket it closes
    (EBADF): that one error, after the stop was asked for, ends the loop quietly."""
    server = create_server(app, host="127.0.0.1", port=0, threads=threads)
    stopping = threading.Event()

    def run():
        try:
            server.run()
        except OSError:
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        server.close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (no browser download)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser page; console errors fail the test."""
    context = browser.new_context(base_url=live_server, locale="zh-CN")
    page = context.new_page()
    errors = []

    def on_console(msg):
        # A 4xx page the app means to send (a refused login) is logged as "Failed to load
        # resource"; failed sub-resources are caught by on_response instead.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    def on_response(response):
        if response.status >= 400 and response.request.resource_type != "document":
            errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", on_response)
    yield page
    context.close()
    assert not errors, f"browser console errors: {errors}"
