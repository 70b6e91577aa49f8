"""Money under concurrency, on SQLite and MariaDB: many threads, each with its own connection."""
import threading

import pytest
from peewee import fn

from crm.db import snapshot
from crm.errors import Conflict
from crm.models import Card, CardRecord, ConsumeRecord
from crm.services import cards, ledger
from tests.ledger_helpers import key, make_shop


def _threads(count, target):
    errors = []

    def guarded(index):
        try:
            target(index)
        except Exception as error:  # noqa: BLE001 — collected and asserted on below
            errors.append(repr(error))

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def test_fifty_threads_drain_one_card_exactly(app):
    """50 threads × 20 consumptions of 1.00 on a card holding 500.00: exactly 500 succeed, the
    rest are refused for insufficient balance, the balance ends at 0.00 and the ledger verifies."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=50000, bonus=0)
    database = app.extensions["crm_db"]
    outcomes = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def worker(index):
        with app.app_context(), database.connection_context():
            for _ in range(20):
                try:
                    cards.consume(shop.operator, card_id, key(), 100)
                    result = "ok"
                except Conflict as error:
                    assert error.code == "insufficient_balance"
                    result = "refused"
                with lock:
                    outcomes[result] += 1

    assert _threads(50, worker) == []
    assert outcomes == {"ok": 500, "refused": 500}
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.entry_count) == (0, 0, 501)
    assert shop.do(lambda: ConsumeRecord.select().count()) == 500
    assert shop.do(lambda: CardRecord.select().where(CardRecord.business_type == "consume")
                   .count()) == 500
    assert shop.verify().ok


def test_mixed_recharge_and_consume_over_ten_cards(app):
    """Recharges and consumptions from 20 threads over 10 cards (with bonus parts): every
    balance equals the start plus what was recorded, parts never negative, ledger verifies."""
    shop = make_shop(app)
    card_ids = [shop.open_card(amount=2000, bonus=500) for _ in range(10)]
    database = app.extensions["crm_db"]

    def worker(index):
        with app.app_context(), database.connection_context():
            for step in range(15):
                card_id = card_ids[(index + step) % 10]
                try:
                    if (index + step) % 3 == 0:
                        cards.recharge(shop.operator, card_id, key(), 300, bonus=50)
                    else:
                        cards.consume(shop.operator, card_id, key(), 250)
                except Conflict as error:
                    assert error.code == "insufficient_balance"

    assert _threads(20, worker) == []

    def sums():
        return {c: CardRecord.select(fn.SUM(CardRecord.amount)).where(CardRecord.card == c).scalar()
                for c in card_ids}

    recorded = shop.do(sums)
    for card_id in card_ids:
        card = shop.card(card_id)
        assert card.money == recorded[card_id] == card.paid_money + card.bonus_money
        assert card.paid_money >= 0 and card.bonus_money >= 0
    report = shop.verify()
    assert report.ok and report.cards_checked == 10


def test_bank_invariant_holds_for_a_concurrent_reader(app):
    """While 50 threads recharge and consume over 10 cards, a reader's one-transaction view
    always finds the balances equal to the recorded entries, and never a negative balance."""
    shop = make_shop(app)
    card_ids = [shop.open_card(amount=5000, bonus=0) for _ in range(10)]
    start_total = 50000
    database = app.extensions["crm_db"]
    done = threading.Event()
    views = []

    def reader():
        with app.app_context(), database.connection_context():
            while not done.is_set():
                with snapshot(database):
                    balances = Card.select(fn.SUM(Card.money)).scalar()
                    entries = CardRecord.select(fn.SUM(CardRecord.amount)).scalar()
                    opening = CardRecord.select(fn.SUM(CardRecord.amount)).where(
                        CardRecord.seq == 1).scalar()
                    lowest = Card.select(fn.MIN(Card.money)).scalar()
                views.append((balances, entries, opening, lowest))

    def worker(index):
        with app.app_context(), database.connection_context():
            for step in range(8):
                card_id = card_ids[(index * 3 + step) % 10]
                try:
                    if step % 2:
                        cards.recharge(shop.operator, card_id, key(), 100, bonus=0)
                    else:
                        cards.consume(shop.operator, card_id, key(), 700)
                except Conflict:
                    pass

    watcher = threading.Thread(target=reader)
    watcher.start()
    errors = _threads(50, worker)
    done.set()
    watcher.join()
    assert errors == []
    assert len(views) >= 3
    for balances, entries, opening, lowest in views:
        assert balances == entries
        assert opening == start_total
        assert lowest >= 0


@pytest.mark.backends("mysql")
def test_connection_killed_mid_consumption_leaves_nothing(app, monkeypatch):
    """The MySQL connection killed between the balance update and the records: no partial row,
    no changed balance (the server rolls the open transaction back)."""
    from tests.conftest import mysql_admin

    shop = make_shop(app)
    card_id = shop.open_card(amount=5000, bonus=0)
    before = shop.counts()
    database = app.extensions["crm_db"]
    real_seal = ledger.seal

    cut = []

    def kill_then_seal(*args):
        # Called after the card's balance was updated, before any record is written.
        cut.append(True)
        own_id = database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]
        killer = mysql_admin()
        with killer.cursor() as cursor:
            cursor.execute(f"KILL {int(own_id)}")
        killer.close()
        return real_seal(*args)

    monkeypatch.setattr(ledger, "seal", kill_then_seal)
    with pytest.raises(Exception) as lost:  # noqa: B017 — the driver's "lost connection" of any kind
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 1000))
    assert cut and not isinstance(lost.value, TypeError)  # the connection was cut, mid-way
    monkeypatch.setattr(ledger, "seal", real_seal)
    database.close_all()
    assert shop.counts() == before
    assert shop.verify().ok


@pytest.mark.backends("sqlite")
def test_connection_lost_mid_consumption_leaves_nothing_sqlite(app, monkeypatch):
    """SQLite: the connection closed between the balance update and the records: nothing stays."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=5000, bonus=0)
    before = shop.counts()
    database = app.extensions["crm_db"]
    real_seal = ledger.seal

    cut = []

    def close_then_seal(*args):
        cut.append(True)
        database.connection().close()  # the raw sqlite3 connection goes away mid-transaction
        return real_seal(*args)

    monkeypatch.setattr(ledger, "seal", close_then_seal)
    with pytest.raises(Exception) as lost:  # noqa: B017 — sqlite3.ProgrammingError on the closed handle
        with app.app_context():
            database.connect(reuse_if_open=True)
            try:
                cards.consume(shop.operator, card_id, key(), 1000)
            finally:
                database._state.reset()
    assert cut and not isinstance(lost.value, TypeError)  # the connection was cut, mid-way
    monkeypatch.setattr(ledger, "seal", real_seal)
    assert shop.counts() == before
    assert shop.verify().ok


def test_idempotency_keys_belong_to_their_user(app, live_server, make_user):
    """Another user's key with the very same request is refused (409) and learns nothing of the
    first answer; two users racing with one key through a real server: one 201, one 409, the
    money moved once."""
    import json
    import urllib.error
    import urllib.request

    from tests.conftest import PASSWORD

    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    make_user("bob")

    def token(name):
        request = urllib.request.Request(
            f"{live_server}/api/v1/login", data=json.dumps(
                {"username": name, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["token"]

    tokens = {"ann": token("ann"), "bob": token("bob")}

    def consume(name, request_key):
        request = urllib.request.Request(
            f"{live_server}/api/v1/cards/{card_id}/consume", data=b'{"amount": "1.00"}',
            headers={"Content-Type": "application/json", "Idempotency-Key": request_key,
                     "Authorization": f"Bearer {tokens[name]}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    first_key = key()
    status, first = consume("ann", first_key)
    assert status == 201
    status, answer = consume("bob", first_key)
    assert status == 409 and answer["error"]["code"] == "idempotency_key_reused", answer
    assert set(answer) == {"error"}  # nothing of ann's answer (record, balance)
    assert consume("ann", first_key)[1]["record_id"] == first["record_id"]  # ann's replay

    for _ in range(10):
        shared, results = key(), []
        errors = _threads(2, lambda i, k=shared, out=results: out.append(
            consume(("ann", "bob")[i], k)))
        assert errors == []
        assert sorted(s for s, _ in results) == [201, 409], results
    assert shop.card(card_id).money == 10000 - 100 * 11
    assert shop.verify().ok


def test_a_recharge_reversed_by_ten_threads_at_once_goes_back_once(app):
    """Ten admins reverse one recharge (with its bonus) at the same moment: one succeeds, the
    others are told it was reversed already (409), the card holds exactly nothing and verifies."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=1000)
    recharge = shop.do(lambda: CardRecord.get((CardRecord.card == card_id)
                                              & (CardRecord.business_type == "recharge")))
    database = app.extensions["crm_db"]
    outcomes = []

    def worker(index):
        with app.app_context(), database.connection_context():
            try:
                cards.reverse(shop.admin, recharge.id, key(), f"第 {index} 位")
                outcomes.append("ok")
            except Conflict as error:
                outcomes.append(error.code)

    assert _threads(10, worker) == []
    assert sorted(outcomes) == ["already_reversed"] * 9 + ["ok"], outcomes
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money) == (0, 0, 0)
    assert shop.do(lambda: CardRecord.select().where(CardRecord.business_type == "reversal")
                   .count()) == 2
    assert shop.verify().ok


def _race(app, shop, workers):
    """Run each worker (a callable of no arguments) in its own thread with its own connection;
    returns their outcomes: "ok" or the refusal's code (anything else fails the test)."""
    database = app.extensions["crm_db"]
    outcomes = []

    def run_one(index):
        with app.app_context(), database.connection_context():
            try:
                workers[index]()
                outcomes.append("ok")
            except Conflict as error:
                outcomes.append(error.code)

    assert _threads(len(workers), run_one) == []  # no deadlock, no AssertionError, no 5xx
    return outcomes


@pytest.mark.parametrize("rival", ["consume", "recharge"])
def test_reissue_and_close_under_concurrency_answer_honestly(app, rival):
    """A reissue and a close, each racing ten charges or ten recharges of the card (and each
    other, below): every call either goes through or is refused with 409 and its own code —
    never a deadlock, a 5xx or a sum that does not add up — and the money is exact."""
    shop = make_shop(app)
    for operation in ("reissue", "close"):
        card_id = shop.open_card(amount=100000, bonus=5000)
        move = (lambda c=card_id: cards.consume(shop.operator, c, key(), 100)) if rival == \
            "consume" else (lambda c=card_id: cards.recharge(shop.operator, c, key(), 100, bonus=0))
        main = (lambda c=card_id: cards.reissue(shop.admin, c, key(), "丢卡")) if operation == \
            "reissue" else (lambda c=card_id: cards.close(shop.admin, c, key(), "退卡"))
        outcomes = _race(app, shop, [move] * 5 + [main] + [move] * 5)
        assert set(outcomes) <= {"ok", "card_not_active"}, outcomes
        assert outcomes.count("ok") >= 1
        old = shop.card(card_id)
        assert old.status == "closed" and old.money == 0
        moved = sum(1 for o in outcomes if o == "ok") - 1  # the charges that went through
        if operation == "reissue":
            new = shop.do(lambda c=card_id: Card.select().where(
                Card.remark.contains(f"原卡 {shop.card(c).card_no}")).get())
            delta = -100 * moved if rival == "consume" else 100 * moved
            assert new.money == 105000 + delta
    assert shop.verify().ok


def test_a_reissue_and_a_close_at_once_one_wins_the_other_is_told_why(app):
    """补卡 and 注销 of one card at the same moment, twenty times: one goes through; the other
    gets 409 card_reissued (卡已补卡) or card_closed (卡已注销); the ledger stays exact."""
    shop = make_shop(app)
    for _ in range(20):
        card_id = shop.open_card(amount=5000, bonus=500)
        outcomes = _race(app, shop, [lambda c=card_id: cards.reissue(shop.admin, c, key(), "丢"),
                                     lambda c=card_id: cards.close(shop.admin, c, key(), "退")])
        assert sorted(outcomes) in (["card_reissued", "ok"], ["card_closed", "ok"]), outcomes
    assert shop.verify().ok
