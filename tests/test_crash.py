"""The server killed (SIGKILL) while 30 clients consume, then started again: every request whose
answer was lost is retried with its key; each key is charged exactly once."""
import http.client
import json
import signal
import socket
import threading
import time
import uuid

from peewee import fn

from crm.launcher import spawn
from crm.models import CardRecord, ConsumeRecord
from tests.conftest import PASSWORD
from tests.ledger_helpers import make_shop, run

STEPS = 20  # consumptions per client


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(app, url, port):
    return spawn({"CRM_HOME": app.instance_path, "CRM_DATABASE_URL": url,
                  "CRM_BCRYPT_ROUNDS": "4"}, port)


def test_sigkill_while_thirty_clients_consume(app, database_url, backend):
    """Kill -9 mid-traffic, restart, retry lost answers with their keys: charged exactly once."""
    shop = make_shop(app)
    card_ids = [shop.open_card(amount=500000, bonus=0) for _ in range(3)]
    port = _free_port()
    server = _start(app, database_url, port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/api/v1/login", json.dumps({"username": "ann", "password": PASSWORD}),
                 {"Content-Type": "application/json"})
    token = json.loads(conn.getresponse().read())["token"]
    keys = {}  # key → (card, fen)
    answered, lost, replayed, failures = {}, [0], [0], []
    lock = threading.Lock()

    def client(index):
        conn = None
        for step in range(STEPS):
            key, card_id, fen = uuid.uuid4().hex, card_ids[index % 3], 100 + index + step
            with lock:
                keys[key] = (card_id, fen)
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", f"/api/v1/cards/{card_id}/consume",
                                 json.dumps({"amount": f"{fen / 100:.2f}"}),
                                 {"Content-Type": "application/json", "Idempotency-Key": key,
                                  "Authorization": f"Bearer {token}"})
                    resp = conn.getresponse()
                    body = json.loads(resp.read())
                    if resp.status != 201:
                        failures.append((resp.status, body))
                        return
                    with lock:
                        answered[key] = body["record_id"]
                        replayed[0] += body["replayed"]
                    break
                except (OSError, http.client.HTTPException, ValueError):
                    with lock:
                        lost[0] += 1
                    conn = None
                    if time.monotonic() > deadline:
                        failures.append(("gave up", key))
                        return
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 30 * STEPS // 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # kill once about a third of the requests were answered
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    killed_at = len(answered)
    server = _start(app, database_url, port)
    try:
        for t in threads:
            t.join(timeout=120)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)

    assert failures == []
    assert 0 < killed_at < len(keys), "the kill must land in the middle of the traffic"
    assert lost[0] > 0, "some answers must have been lost to the kill"
    assert set(answered) == set(keys)

    def charged_per_key():
        return {r.request_id: r.amount for r in ConsumeRecord.select()}

    charged = run(app, charged_per_key)
    assert charged == {key: fen for key, (_, fen) in keys.items()}  # each key exactly once
    entries = run(app, lambda: CardRecord.select(CardRecord.request_id, fn.COUNT(CardRecord.id))
                  .where(CardRecord.business_type == "consume")
                  .group_by(CardRecord.request_id).tuples())
    assert all(count == 1 for _, count in entries) and len(entries) == len(keys)
    for card_id in card_ids:
        spent = sum(fen for c, fen in keys.values() if c == card_id)
        assert shop.card(card_id).money == 500000 - spent
    assert shop.verify().ok
    if backend == "sqlite":
        database = app.extensions["crm_db"]
        with database.connection_context():
            assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
