"""Bench: consumption through the HTTP API with 50 concurrent clients, beside a bare-SQL baseline.

    python bench/consume.py [--url mysql://root@127.0.0.1:3306/crm_bench_consume]
                            [--clients 50] [--seconds 20]

A real server (`python crm.py`, waitress, its own process) serves a fresh bench database (dropped
and re-created: never point --url at a shop's data). Each client logs in, then consumes 1.00 from
its own card as fast as it can, each request with its own Idempotency-Key. In the same run the
same SQL statements a consumption makes are replayed straight through PyMySQL by the same number
of threads: the ratio of the two is what the web layer costs, whatever the machine. At the end the
ledger is verified and the balances checked against the number of successful requests.
"""
import argparse
import http.client
import json
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import machine, recreate_mysql, start_server

from crm import db as crm_db  # noqa: E402
from crm.models import Card  # noqa: E402
from crm.services import Actor, cards, customers, ledger  # noqa: E402
from crm.services import users as user_service  # noqa: E402

PASSWORD = "bench-password-1"
START_FEN = 4_000_000  # 40,000.00 per card: never runs dry during a bench


def recreate(url):
    """A fresh bench database, migrated and bound."""
    recreate_mysql(url)
    database = crm_db.database_from_url(url)
    crm_db.db.initialize(database)
    crm_db.migrate(database)
    return database


def seed(database, instance, count):
    """One operator and `count` customers, each with a card holding START_FEN."""
    from crm import config

    settings = config.load(instance)
    ledger.configure(settings)
    with database.connection_context():
        user = user_service.create_user(Actor(), "bench", PASSWORD, role="operator")
        actor = Actor(user, "127.0.0.1")
        card_ids = []
        for i in range(count):
            customer = customers.create_customer(actor, {"name": f"压测客户{i}",
                                                         "phone": f"1390000{i:04d}"})
            card_ids.append(cards.open_card(actor, customer.id, uuid.uuid4().hex,
                                            amount=START_FEN, bonus=0).card_id)
    return user, card_ids


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server_for(url, instance, port, workers=None):
    """`python crm.py` in its own process, as a shop runs it; `workers`: that many server
    processes under the supervisor (0: as many as the app would choose)."""
    # No nightly-backup catch-up in the middle of the measurement.
    env = {"CRM_HOME": str(instance), "CRM_DATABASE_URL": url, "CRM_SCHEDULER": "false"}
    if workers is None:
        return start_server(env, port)
    return start_server({**env, "CRM_WORKERS": str(workers)}, port, supervised=True)


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def report(label, latencies, errors, seconds):
    rate = len(latencies) / seconds
    print(f"  {label:34s} {rate:7.1f}/s  p50 {statistics.median(latencies):6.1f}  "
          f"p95 {percentile(latencies, 0.95):6.1f}  p99 {percentile(latencies, 0.99):6.1f} ms"
          f"  errors {errors}")
    return rate, percentile(latencies, 0.99)


def run_threads(target, items):
    """One thread per item running `target(item)`; returns the wall time in seconds."""
    threads = [threading.Thread(target=target, args=(c,)) for c in items]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def http_load(port, card_ids, seconds):
    """Each client consumes 1.00 from its own card until time is up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/login", json.dumps({"username": "bench", "password": PASSWORD}),
                 {"Content-Type": "application/json"})
    token = json.loads(conn.getresponse().read())["token"]
    conn.close()
    latencies, errors, lock = [], [], threading.Lock()
    stop = time.monotonic() + seconds

    def client(card_id):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        own = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                conn.request("POST", f"/api/v1/cards/{card_id}/consume",
                             '{"amount": "1.00"}',
                             {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex,
                              "Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 201:
                    errors.append(resp.status)
                    continue
            except OSError as error:
                errors.append(repr(error))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            own.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(own)

    return latencies, errors, run_threads(client, card_ids)


def sql_baseline(url, user_id, card_ids, seconds):
    """The statements of one consumption, straight through PyMySQL, one connection per thread."""
    import hashlib
    import hmac
    from urllib.parse import urlsplit

    import pymysql

    parts = urlsplit(url)
    latencies, lock = [], threading.Lock()
    stop = time.monotonic() + seconds

    def worker(card_id):
        conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                               user=parts.username or "root", password=parts.password or "",
                               database=parts.path.lstrip("/"), autocommit=False,
                               charset="utf8mb4")
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        own = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            key = uuid.uuid4().hex
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            cur.execute("SELECT held_until FROM t_restore_hold WHERE id = 1")  # the request check
            cur.execute("SELECT id FROM t_auth_token WHERE token_hash = %s", ("x" * 64,))
            cur.execute("SELECT id FROM t_idempotency_key WHERE `key` = %s", (key,))
            cur.execute("SELECT c.customer_id, t.discount FROM t_card c JOIN t_customer u ON "
                        "u.id = c.customer_id LEFT JOIN t_customer_type t ON t.id = u.type_id "
                        "WHERE c.id = %s", (card_id,))
            customer_id = cur.fetchone()[0]
            cur.execute("SELECT held_until FROM t_restore_hold WHERE id = 1 LOCK IN SHARE MODE")
            cur.execute("UPDATE t_customer SET last_visit_at = %s WHERE id = %s", (now, customer_id))
            cur.execute("UPDATE t_card SET money = money - 100, updated_at = %s WHERE id = %s AND "
                        "status = 'active' AND money - 100 >= 0", (now, card_id))
            cur.execute("SELECT money, paid_money, bonus_money, entry_count, chain_head FROM t_card "
                        "WHERE id = %s", (card_id,))
            money, paid, bonus, seq, head = cur.fetchone()
            digest = hmac.new(b"k", f"{card_id}{seq}{head}".encode(), hashlib.sha256).hexdigest()
            cur.execute("INSERT INTO t_card_record (card_id, customer_id, seq, business_type, amount,"
                        " paid_delta, bonus_delta, balance_after, paid_after, bonus_after,"
                        " payment_method, operator_id, request_id, remark, created_at, prev_hash,"
                        " hash) VALUES (%s, %s, %s, 'consume', -100, -100, 0, %s, %s, %s, '', %s,"
                        " %s, '', %s, %s, %s)",
                        (card_id, customer_id, seq + 1, money, paid - 100, bonus, user_id, key, now,
                         head, digest))
            record_id = cur.lastrowid
            cur.execute("UPDATE t_card SET paid_money = %s, bonus_money = %s, entry_count = %s,"
                        " chain_head = %s WHERE id = %s", (paid - 100, bonus, seq + 1, digest,
                                                           card_id))
            cur.execute("INSERT INTO t_consume_record (card_id, customer_id, card_record_id,"
                        " original_amount, amount, balance_after, operator_id, request_id, remark,"
                        " created_at) VALUES (%s, %s, %s, 100, 100, %s, %s, %s, '', %s)",
                        (card_id, customer_id, record_id, money, user_id, key, now))
            cur.execute("INSERT INTO t_idempotency_key (`key`, user_id, fingerprint, status_code,"
                        " response, created_at) VALUES (%s, %s, %s, 201, '{}', %s)",
                        (key, user_id, "f" * 64, now))
            conn.commit()
            own.append((time.perf_counter() - started) * 1000)
        conn.close()
        with lock:
            latencies.extend(own)

    return latencies, run_threads(worker, card_ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mysql://root@127.0.0.1:3306/crm_bench_consume")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    database = recreate(args.url)
    user, card_ids = seed(database, instance, args.clients)
    with database.connection_context():
        flush = database.execute_sql("SELECT @@innodb_flush_log_at_trx_commit").fetchone()[0]
        print(f"{machine(database)} · innodb_flush_log_at_trx_commit={flush}")
    print(f"{args.clients} concurrent clients, {args.seconds:.0f} s each phase, each client on its "
          "own card; latencies per consumption:")

    port = free_port()
    server = start_server_for(args.url, instance, port)
    try:
        warm, warm_errors, _ = http_load(port, card_ids, 2)  # warm the server's pool and caches
        latencies, errors, seconds = http_load(port, card_ids, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    http_rate, http_p99 = report("HTTP API (waitress, own process)", latencies, len(errors),
                                 seconds)

    # The ledger after the HTTP phase: chains sound, and exactly 1.00 gone per 201 answer.
    with database.connection_context():
        checked = ledger.verify(card_ids)
        charged = START_FEN * len(card_ids) - sum(
            c.money for c in Card.select().where(Card.id.in_(card_ids)))
    answered = (len(warm) + len(latencies)) * 100
    ledger_ok = checked.ok and charged == answered and not warm_errors
    print(f"  ledger after the HTTP phase: verify {'ok' if checked.ok else 'FAILED'} "
          f"({checked.entries_checked} entries); charged {charged / 100:.2f} = "
          f"{answered / 100:.2f} answered: {'yes' if charged == answered else 'NO'}")

    # The baseline writes records without the real chain key: on cards of its own.
    with database.connection_context():
        _, base_cards = seed_more(database, user, args.clients)
    base_latencies, base_seconds = sql_baseline(args.url, user.id, base_cards, args.seconds)
    base_rate, _ = report("bare SQL, same statements", base_latencies, 0, base_seconds)
    print(f"  ratio HTTP / bare SQL throughput: {http_rate / base_rate:.2f}")
    target = http_rate >= 300 and http_p99 < 200 and not errors and ledger_ok
    print("target (≥ 300/s, p99 < 200 ms, no errors, ledger ok):", "met" if target else "NOT met")
    crm_db.close_all(database)


def seed_more(database, user, count):
    """Cards for the bare-SQL phase."""
    actor = Actor(user, "127.0.0.1")
    ids = []
    for i in range(count):
        customer = customers.create_customer(actor, {"name": f"基线客户{i}",
                                                     "phone": f"1380000{i:04d}"})
        ids.append(cards.open_card(actor, customer.id, uuid.uuid4().hex, amount=START_FEN,
                                   bonus=0).card_id)
    return actor, ids


if __name__ == "__main__":
    main()
