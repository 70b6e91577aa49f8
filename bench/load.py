"""Bench: 50 staff working at once over HTTP on a shop with 100,000 customers and 1,000,000 entries.

    python bench/load.py [--url mysql://root@127.0.0.1:3306/crm_bench_load] [--users 50]
                         [--seconds 180] [--think 0] [--customers 100000] [--entries 1000000]
                         [--reuse] [--workers 0] [--mix-only]

A fresh bench database (dropped and re-created: never point --url at a shop's data; --reuse keeps
one that an earlier run filled) gets `crm seed-demo`'s data and one login per simulated staff
member. The app then starts cold as a shop runs it (`python crm.py`: the supervisor and its
server processes, `--workers` of them, 0 = as the app chooses); the time to its first page is
reported. Each staff member logs in through the login form with
its own session and works through the web pages a browser would use, in this mix: 40 % customer
search, 20 % customer page, 15 % consumption (the form, then the receipt it leads to), 10 %
recharge, 10 % statement, 5 % dashboard, with `--think` seconds between steps (0 = stress).
Reported per operation: count, errors, p50 / p95 / p99, throughput; the server's peak memory
(VmHWM). Afterwards the touched cards' chains are verified and every balance must have moved by
exactly the entries written, one consumption record per consumption answered.

In the same run, for reading the figures on any machine: consumption alone through the JSON API
(bench/consume.py's clients), the same statements straight through PyMySQL (bare SQL), and a
trivial Flask endpoint on waitress; throughputs are given as ratios.
"""
import argparse
import http.client
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

from _common import ROOT, machine, recreate_mysql
from consume import percentile, run_threads

from crm import db as crm_db  # noqa: E402

PASSWORD = "bench-password-1"
MIX = (("search", 40), ("customer", 20), ("consume", 15), ("recharge", 10), ("statement", 10),
       ("dashboard", 5))
# The bare-SQL phase writes entries without the real chain key: its cards are marked, and a
# later run (--reuse) never hands them to the staff.
BASELINE = "裸 SQL 基线"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Staff:
    """One member of staff in a browser: a keep-alive connection and its own login cookie."""

    def __init__(self, host, port, username):
        self.host, self.port, self.username = host, port, username
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.cookies, self.csrf = {}, ""

    def request(self, method, path, form=None):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body, headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            raise
        for header in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return resp.status, resp.headers.get("Location", ""), data

    def login(self):
        _, _, page = self.request("GET", "/login")
        token = _CSRF.search(page.decode()).group(1)
        status, _, _ = self.request("POST", "/login", {"username": self.username,
                                                       "password": PASSWORD, "csrf_token": token})
        if status != 302:
            raise RuntimeError(f"{self.username} could not log in ({status})")
        _, _, home = self.request("GET", "/customers")
        self.csrf = _CSRF.search(home.decode()).group(1)

    def post_and_follow(self, path, form, expected):
        """A form post and the page it redirects to, as a browser does."""
        status, location, _ = self.request("POST", path, {**form, "csrf_token": self.csrf,
                                                          "idempotency_key": uuid.uuid4().hex})
        if status != expected:
            return status
        status, _, _ = self.request("GET", location.replace(f"http://{self.host}:{self.port}", ""))
        return status


class Shop:
    """What the staff pick from: customers, cards with money, phone fragments."""

    def __init__(self, customer_ids, card_ids, fragments):
        self.customer_ids, self.card_ids, self.fragments = customer_ids, card_ids, fragments

    @classmethod
    def sample(cls, database, size=5000, seed=11):
        from crm.models import Card, Customer

        with database.connection_context():
            cards = list(Card.select(Card.id, Card.customer).where(
                (Card.status == "active") & (Card.money >= 50000)
                & (Card.remark != BASELINE)).order_by(Card.id)
                .limit(size * 4).tuples())
            rng = random.Random(seed)
            cards = rng.sample(cards, min(size, len(cards)))
            phones = [p for (p,) in Customer.select(Customer.phone)
                      .where(Customer.id.in_([c for _, c in cards[:2000]])).tuples()]
        fragments = [p[-4:] for p in phones] + [p[3:7] for p in phones]
        return cls([c for _, c in cards], [c for c, _ in cards], fragments)


def staff_step(staff, shop, rng, op):
    """One operation; returns the final HTTP status (200 is success for every operation)."""
    index = rng.randrange(len(shop.card_ids))
    card_id, customer_id = shop.card_ids[index], shop.customer_ids[index]
    if op == "search":
        return staff.request("GET", "/customers?" + urlencode({"q": rng.choice(shop.fragments)}))[0]
    if op == "customer":
        return staff.request("GET", f"/customers/{customer_id}")[0]
    if op == "consume":
        amount = f"{rng.randrange(100, 2000) / 100:.2f}"
        return staff.post_and_follow(f"/cards/{card_id}/consume",
                                     {"amount": amount, "remark": "压测",
                                      "customer_id": customer_id}, 303)
    if op == "recharge":
        return staff.post_and_follow(f"/cards/{card_id}/recharge",
                                     {"amount": f"{rng.choice((100, 200, 500))}.00", "bonus": "0",
                                      "payment_method": "cash", "remark": "压测"}, 302)
    if op == "statement":
        return staff.request("GET", f"/customers/{customer_id}/statement")[0]
    return staff.request("GET", "/stats")[0]


def mixed_load(host, port, usernames, shop, seconds, think=0.0, seed=1):
    """Every user logs in, then works the mix until time is up. Returns ({op: [ms]},
    {op: [error]}, answered {op: count}, wall seconds)."""
    ops = [op for op, weight in MIX for _ in range(weight)]
    latencies, errors = defaultdict(list), defaultdict(list)
    lock = threading.Lock()
    staff = [Staff(host, port, name) for name in usernames]
    for member in staff:
        member.login()
    stop = time.monotonic() + seconds

    def work(index):
        rng = random.Random(seed * 1000 + index)
        member = staff[index]
        own, bad = defaultdict(list), defaultdict(list)
        if think:  # people do not all click at the same instant: stagger the first step
            time.sleep(rng.uniform(0, think))
        while time.monotonic() < stop:
            op = rng.choice(ops)
            started = time.perf_counter()
            try:
                status = staff_step(member, shop, rng, op)
            except (OSError, http.client.HTTPException) as error:
                status = repr(error)
            if status == 200:
                own[op].append((time.perf_counter() - started) * 1000)
            else:
                bad[op].append(status)
            if think:
                time.sleep(rng.expovariate(1 / think))
        with lock:
            for op, values in own.items():
                latencies[op].extend(values)
            for op, values in bad.items():
                errors[op].extend(values)

    return latencies, errors, run_threads(work, range(len(staff)))


def ledger_mark(database):
    """Where the ledger stands: the last entry id, the money on all cards, records so far."""
    from peewee import fn

    from crm.models import Card, CardRecord, ConsumeRecord

    with database.connection_context():
        return {"record": CardRecord.select(fn.MAX(CardRecord.id)).scalar() or 0,
                "sale": ConsumeRecord.select(fn.MAX(ConsumeRecord.id)).scalar() or 0,
                "money": Card.select(fn.SUM(Card.money)).scalar() or 0}


def ledger_check(database, before, answered, card_ids):
    """After the run: the touched chains verify, the money on the cards moved by exactly the
    entries written, one entry set per answered consumption / recharge. Returns (ok, text)."""
    from peewee import fn

    from crm.models import CardRecord, ConsumeRecord
    from crm.services import ledger

    after = ledger_mark(database)
    with database.connection_context():
        new = CardRecord.select().where(CardRecord.id > before["record"])
        moved = new.select(fn.SUM(CardRecord.amount)).scalar() or 0
        consumes = new.where(CardRecord.business_type == "consume").count()
        recharges = new.where(CardRecord.business_type == "recharge").count()
        sales = ConsumeRecord.select().where(ConsumeRecord.id > before["sale"]).count()
        touched = sorted({c for (c,) in new.select(CardRecord.card).distinct().tuples()}
                         | set(card_ids))
        report = ledger.verify(touched)
    checks = {
        "chains verify": report.ok,
        "money moved = entries written": after["money"] - before["money"] == moved,
        "consumptions answered = written": consumes == answered.get("consume", 0) == sales,
        "recharges answered = written": recharges == answered.get("recharge", 0),
    }
    text = (f"ledger: {report.cards_checked} touched cards, {report.entries_checked} entries "
            f"verified; moved {moved / 100:.2f}; consumptions {consumes} (answered "
            f"{answered.get('consume', 0)}, sale rows {sales}); recharges {recharges} (answered "
            f"{answered.get('recharge', 0)}) — " + ", ".join(
                f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items()))
    return all(checks.values()), text


def print_table(latencies, errors, seconds):
    print(f"  {'operation':10s} {'count':>7s} {'errors':>6s} {'/s':>7s} {'p50':>7s} {'p95':>7s} "
          f"{'p99':>7s} ms")
    worst = (0.0, 0.0)
    for op, _ in MIX:
        values = latencies.get(op, [])
        p95, p99 = percentile(values, 0.95), percentile(values, 0.99)
        worst = (max(worst[0], p95), max(worst[1], p99))
        print(f"  {op:10s} {len(values):7d} {len(errors.get(op, [])):6d} "
              f"{len(values) / seconds:7.1f} {statistics.median(values) if values else 0:7.1f} "
              f"{p95:7.1f} {p99:7.1f}")
    total = sum(len(v) for v in latencies.values())
    print(f"  {'all':10s} {total:7d} {sum(len(v) for v in errors.values()):6d} "
          f"{total / seconds:7.1f}")
    return worst


def _tree(pid):
    """A process and its child processes (Linux /proc): the supervisor and its server processes."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


def peak_memory_mb(pid):
    """The server's peak resident memory so far (VmHWM), in MB, summed over the supervisor and
    its server processes (each one's own peak: an upper bound of their peak together)."""
    total = 0.0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in status.splitlines()
                     if line.startswith("VmHWM:"))
    return total


def prepare(url, instance, customers, entries, users, reuse):
    """The bench database with demo data and `users` operators (staff001…), plus the admin."""
    from crm import config
    from crm.models import Customer, User
    from crm.services import SYSTEM, demo, ledger
    from crm.services import users as user_service

    settings = config.load(instance)
    ledger.configure(settings)
    user_service.configure(settings)
    if not reuse:
        recreate_mysql(url)
    database = crm_db.database_from_url(url)
    crm_db.db.initialize(database)
    crm_db.migrate(database)
    with database.connection_context():
        admin = User.get_or_none(User.username == "boss") or user_service.create_user(
            SYSTEM, "boss", PASSWORD, role="admin")
        for i in range(users):
            name = f"staff{i:03d}"
            if not User.select().where(User.username == name).exists():
                user_service.create_user(SYSTEM, name, PASSWORD)
        if Customer.select().count() < customers:
            started = time.monotonic()
            demo.seed_bulk(database, admin, customers=customers, entries=entries)
            print(f"seed-demo: {customers} customers, {entries} entries in "
                  f"{time.monotonic() - started:.1f} s")
    return database, admin


def baseline_cards(database, admin, count):
    """Cards on customers of their own for the bare-SQL phase (random numbers, so --reuse runs
    do not collide with an earlier run's)."""
    from crm.errors import Conflict
    from crm.services import Actor, cards, customers

    actor, ids, rng = Actor(admin, "127.0.0.1"), [], random.Random()
    with database.connection_context():
        while len(ids) < count:
            try:
                customer = customers.create_customer(actor, {
                    "name": f"基线客户{len(ids)}", "phone": f"199{rng.randrange(10**8):08d}"})
            except Conflict:
                continue
            ids.append(cards.open_card(actor, customer.id, uuid.uuid4().hex, amount=4_000_000,
                                       bonus=0, remark=BASELINE).card_id)
    return ids


def trivial_server(port):
    """A Flask app with one endpoint on waitress, same thread count, its own process."""
    code = ("import flask, waitress\napp = flask.Flask('trivial')\n"
            "app.add_url_rule('/ping', 'ping', lambda: 'ok')\n"
            f"waitress.serve(app, host='127.0.0.1', port={port}, threads=64, _quiet=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    from crm.launcher import wait_until_running

    wait_until_running(port)
    return proc


def trivial_load(port, clients, seconds):
    latencies, lock = [], threading.Lock()
    stop = time.monotonic() + seconds

    def client(_):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        own = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("GET", "/ping")
            conn.getresponse().read()
            own.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(own)

    return latencies, run_threads(client, range(clients))


def main():
    import consume  # the API consumption clients, the bare-SQL baseline, the server start

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mysql://root@127.0.0.1:3306/crm_bench_load")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--think", type=float, default=0.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the bench database if filled")
    parser.add_argument("--workers", type=int, default=0,
                        help="server processes (0: as the app chooses, one per core up to 2)")
    parser.add_argument("--mix-only", action="store_true",
                        help="stop after the mixed load (no API, bare-SQL and trivial phases)")
    args = parser.parse_args()

    instance = ROOT / "bench" / "out" / "load-instance"  # its ledger key must outlive --reuse
    instance.mkdir(parents=True, exist_ok=True)
    database, admin = prepare(args.url, instance, args.customers, args.entries, args.users,
                              args.reuse)
    with database.connection_context():
        print(f"{machine(database)} · {time.strftime('%Y-%m-%d')}")
    shop = Shop.sample(database)
    before = ledger_mark(database)

    port = consume.free_port()
    started = time.perf_counter()
    server = consume.start_server_for(args.url, instance, port, args.workers)
    first = Staff("127.0.0.1", port, "-")
    status = first.request("GET", "/login")[0]
    cold = time.perf_counter() - started
    print(f"cold start: process start to first page ({status}) {cold:.2f} s (target < 2 s); "
          f"{len(_tree(server.pid)) - 1} server processes under the supervisor")
    try:
        print(f"mixed load: {args.users} staff, think {args.think:g} s, {args.seconds:g} s, "
              "web pages as a browser uses them:")
        latencies, errors, seconds = mixed_load("127.0.0.1", port,
                                                [f"staff{i:03d}" for i in range(args.users)],
                                                shop, args.seconds, args.think)
        memory = peak_memory_mb(server.pid)
        worst_p95, worst_p99 = print_table(latencies, errors, seconds)
        answered = {op: len(v) for op, v in latencies.items()}
        ok, text = ledger_check(database, before, answered, [])
        print("  " + text)
        print(f"  server peak memory (VmHWM, supervisor and server processes): {memory:.0f} MB "
              "(target < 300 MB)")
        failures = {op: sorted(set(map(str, v)))[:5] for op, v in errors.items() if v}
        if failures:
            print(f"  errors by operation: {failures}")
        met = not failures and worst_p95 < 150 and worst_p99 < 300 and ok and memory < 300
        print("  target (no errors, every p95 < 150 ms and p99 < 300 ms, ledger ok, < 300 MB):",
              "met" if met else "NOT met")

        if args.mix_only:
            return
        # Consumption alone, through the JSON API, on cards with money.
        with database.connection_context():
            from crm.models import User
            from crm.services import SYSTEM
            from crm.services import users as user_service

            if not User.select().where(User.username == "bench").exists():
                user_service.create_user(SYSTEM, "bench", PASSWORD)
        api_cards = shop.card_ids[:args.users]
        mark = ledger_mark(database)
        api_latencies, api_errors, api_seconds = consume.http_load(port, api_cards, 20)
        memory = peak_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    api_rate, _ = consume.report("consumption alone, JSON API", api_latencies, len(api_errors),
                                 api_seconds)
    ok_api, text = ledger_check(database, mark, {"consume": len(api_latencies)}, [])
    print("  " + text)
    print(f"  server peak memory over the whole run: {memory:.0f} MB")

    # Bare SQL (on cards of its own: it writes entries without the real chain key).
    base_cards = baseline_cards(database, admin, args.users)
    base_latencies, base_seconds = consume.sql_baseline(args.url, admin.id, base_cards, 20)
    base_rate, _ = consume.report("bare SQL, same statements", base_latencies, 0, base_seconds)
    trivial_port = consume.free_port()
    trivial = trivial_server(trivial_port)
    try:
        trivial_latencies, trivial_seconds = trivial_load(trivial_port, args.users, 10)
    finally:
        trivial.terminate()
        trivial.wait(timeout=30)
    trivial_rate, _ = consume.report("trivial Flask endpoint, waitress", trivial_latencies, 0,
                                     trivial_seconds)
    print(f"  ratios: API consumption / bare SQL {api_rate / base_rate:.2f}; "
          f"/ trivial endpoint {api_rate / trivial_rate:.2f}")
    print("  target (≥ 300 consumptions/s through HTTP, ledger ok):",
          "met" if api_rate >= 300 and ok_api and not api_errors else "NOT met")
    crm_db.close_all(database)


if __name__ == "__main__":
    main()
