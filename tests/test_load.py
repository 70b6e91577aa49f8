"""A short run of bench/load.py's mixed workload in the suite: 10 staff, each logged in with its
own session, for 15 seconds against a real waitress server on SQLite. Not a timing: no request
may fail, and afterwards the ledger must account for every answered consumption and recharge."""
import sys
from pathlib import Path

import pytest

from crm.services import SYSTEM, demo
from crm.services import users as user_service
from tests.ledger_helpers import run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import load  # noqa: E402 — bench/load.py


@pytest.mark.backends("sqlite")
def test_ten_staff_mixed_load_without_errors(app, live_server):
    database = app.extensions["crm_db"]

    def seed():
        admin = user_service.create_user(SYSTEM, "boss", load.PASSWORD, role="admin")
        for i in range(10):
            user_service.create_user(SYSTEM, f"staff{i:03d}", load.PASSWORD)
        demo.seed_bulk(database, admin, customers=300, entries=3000)

    run(app, seed)
    shop = load.Shop.sample(database, size=200)
    assert len(shop.card_ids) >= 50
    before = load.ledger_mark(database)
    port = int(live_server.rsplit(":", 1)[1])
    latencies, errors, seconds = load.mixed_load("127.0.0.1", port,
                                                 [f"staff{i:03d}" for i in range(10)], shop, 15)
    assert not any(errors.values()), {op: v[:5] for op, v in errors.items() if v}
    assert {op for op, _ in load.MIX} <= set(latencies), "every operation ran"
    answered = {op: len(v) for op, v in latencies.items()}
    ok, text = load.ledger_check(database, before, answered, [])
    assert ok, text
    assert answered["consume"] > 0 and answered["recharge"] > 0
