"""What the benches share: a fresh bench database, the machine line, a server to load."""
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm import db as crm_db  # noqa: E402
from crm.launcher import spawn  # noqa: E402


def recreate_mysql(url):
    """Drop and create the MySQL database named in `url` (a bench database, never a shop's)."""
    base, name = url.rsplit("/", 1)
    server = crm_db.database_from_url(base + "/mysql")
    with server.connection_context():
        server.execute_sql(f"DROP DATABASE IF EXISTS {name}")
        server.execute_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 "
                           "COLLATE utf8mb4_unicode_ci")
    crm_db.close_all(server)


def machine(database):
    """One line naming the machine and the database the figures come from."""
    version = database.execute_sql("SELECT VERSION()").fetchone()[0]
    return (f"machine: {platform.node()} · {os.cpu_count()} cores · python "
            f"{platform.python_version()} · MariaDB {version}")


def start_server(env, port, supervised=False):
    """`python crm.py` in its own process on `port` (unsupervised unless asked); waits until it
    serves."""
    return spawn(env, port, supervised=supervised)


def timed(fn, repeat=7):
    """Run fn `repeat` times: "p50 … ms  max … ms" of its wall time."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return f"p50 {statistics.median(samples):7.1f} ms  max {samples[-1]:7.1f} ms"


def logged_in(app, username, password):
    """A test client of `app` logged in through the login page (its CSRF token taken from it)."""
    import re

    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    return client


def fresh_app(url):
    """The app on a fresh bench database at `url` (dropped and re-created), migrated, with its
    own throwaway instance folder: (app, database)."""
    import tempfile

    from crm import create_app

    recreate_mysql(url)
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": tempfile.mkdtemp(prefix="crm-bench-"),
                      "BCRYPT_ROUNDS": 4, "TESTING": True})
    database = app.extensions["crm_db"]
    crm_db.migrate(database)
    return app, database


def size_args(doc, database_name):
    """The command line of a bench on a filled shop: --url (a bench database, dropped and made
    again), --customers, --entries."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--url", default=f"mysql://root@127.0.0.1:3306/{database_name}")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    return parser.parse_args()


def fill(database, admin, args):
    """Fill the bench shop with args.customers customers and args.entries entries (by `admin`),
    saying how long it took."""
    from crm.services import demo

    started = time.perf_counter()
    made = demo.seed_bulk(database, admin, customers=args.customers, entries=args.entries)
    print(f"filled {args.customers} customers and {made} entries in "
          f"{time.perf_counter() - started:.0f} s")
    return made
