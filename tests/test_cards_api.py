"""The card and money API: contract, idempotency header, errors, and 50 clients over HTTP."""
import http.client
import json
import threading
import uuid

import pytest

from crm.models import Card, CardRecord, ConsumeRecord
from tests.ledger_helpers import make_shop, run


def _key():
    return uuid.uuid4().hex


@pytest.fixture
def shop(app):
    """A shop with staff and a customer."""
    return make_shop(app)


@pytest.fixture
def op(client, shop):
    """Bearer headers of the operator."""
    from tests.conftest import PASSWORD

    token = client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD}).get_json()
    return {"Authorization": f"Bearer {token['token']}"}


@pytest.fixture
def boss(client, shop):
    """Bearer headers of the admin."""
    from tests.conftest import PASSWORD

    token = client.post("/api/v1/login", json={"username": "boss", "password": PASSWORD}).get_json()
    return {"Authorization": f"Bearer {token['token']}"}


def _post(client, path, body, headers, key=None):
    return client.post(path, json=body, headers={**headers, "Idempotency-Key": key or _key()})


def test_open_recharge_consume_contract(client, shop, op):
    """The contract's answers: yuan strings with two decimals, record ids, balances."""
    resp = _post(client, f"/api/v1/customers/{shop.customer_id}/cards",
                 {"card_no": "VIP-0001", "amount": "100", "bonus": 20}, op)
    assert resp.status_code == 201
    card = resp.get_json()
    assert (card["card_no"], card["status"], card["balance"]) == ("VIP-0001", "active", "120.00")
    card_id = card["id"]
    resp = _post(client, f"/api/v1/cards/{card_id}/recharge",
                 {"amount": 50.5, "payment_method": "alipay", "remark": "支付宝"}, op)
    assert resp.status_code == 201
    assert resp.get_json()["balance"] == "170.50" and resp.get_json()["record_id"]
    resp = _post(client, f"/api/v1/cards/{card_id}/consume",
                 {"amount": "70.50", "remark": "烫发", "customer_id": shop.customer_id}, op)
    body = resp.get_json()
    assert resp.status_code == 201 and body["balance"] == "100.00" and body["amount"] == "70.50"
    got = client.get(f"/api/v1/cards/{card_id}", headers=op).get_json()
    assert got == {"id": card_id, "card_no": "VIP-0001", "customer_id": shop.customer_id,
                   "status": "active", "balance": "100.00", "paid_balance": "80.00",
                   "bonus_balance": "20.00"}
    records = client.get(f"/api/v1/cards/{card_id}/records", headers=op).get_json()["items"]
    assert [(r["business_type"], r["amount"], r["balance"]) for r in records] == [
        ("consume", "-70.50", "100.00"), ("recharge", "50.50", "170.50"),
        ("bonus", "20.00", "120.00"), ("recharge", "100.00", "100.00")]
    assert records[1]["payment_method"] == "alipay"
    listed = client.get(f"/api/v1/customers/{shop.customer_id}/cards", headers=op).get_json()
    assert [c["card_no"] for c in listed["items"]] == ["VIP-0001"]


def test_idempotency_key_header(client, shop, op):
    """Same key: the first answer again and no second charge; changed request: 409; none: 400."""
    card_id = shop.open_card(amount=10000, bonus=0)
    key = _key()
    first = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": "10.00"}, op, key)
    again = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": "10.00"}, op, key)
    assert first.status_code == again.status_code == 201
    assert first.get_json()["record_id"] == again.get_json()["record_id"]
    assert again.get_json()["replayed"] is True
    other = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": "11.00"}, op, key)
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    missing = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "1"}, headers=op)
    assert missing.status_code == 400
    assert missing.get_json()["error"]["code"] == "missing_idempotency_key"
    assert shop.card(card_id).money == 9000


@pytest.mark.parametrize("amount,status,code", [
    ("0", 422, "invalid_amount"), ("-1", 422, "invalid_amount"), ("1.234", 422, "invalid_amount"),
    ("abc", 422, "invalid_amount"), (None, 422, "invalid_amount"), (0.001, 422, "invalid_amount"),
    ("50000.01", 422, "amount_too_large"), (1e12, 422, "invalid_amount"),
    ([5], 422, "invalid_amount"), ("200.00", 409, "insufficient_balance"),
])
def test_bad_consumptions_change_nothing(client, shop, op, amount, status, code):
    """Each bad amount or a too-large one: its status and code; balances and rows unchanged."""
    card_id = shop.open_card(amount=10000, bonus=0)
    before = shop.counts()
    resp = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": amount}, op)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] == code and resp.get_json()["error"]["message"]
    assert shop.counts() == before


@pytest.mark.parametrize("path,status,code", [
    ("/api/v1/cards/999/consume", 404, "card_not_found"),
    ("/api/v1/cards/999/recharge", 404, "card_not_found"),
])
def test_unknown_card(client, shop, op, path, status, code):
    """An unknown card: 404 card_not_found."""
    resp = _post(client, path, {"amount": "1.00"}, op)
    assert resp.status_code == status and resp.get_json()["error"]["code"] == code


def test_card_states_through_the_api(client, shop, op):
    """Freeze refuses money (409 card_not_active), unfreeze, report lost, reissue, close."""
    card_id = shop.open_card(amount=10000, bonus=1000)
    assert client.post(f"/api/v1/cards/{card_id}/freeze", json={"reason": "客户要求"},
                       headers=op).get_json()["status"] == "frozen"
    resp = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": "1"}, op)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "card_not_active"
    resp = client.post(f"/api/v1/cards/{card_id}/freeze", json={"reason": "again"}, headers=op)
    assert resp.status_code == 409
    resp = client.post(f"/api/v1/cards/{card_id}/unfreeze", json={}, headers=op)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "missing_field"
    client.post(f"/api/v1/cards/{card_id}/report-lost", json={"reason": "丢了"}, headers=op)
    resp = _post(client, f"/api/v1/cards/{card_id}/reissue", {"reason": "补办"}, op)
    assert resp.status_code == 201 and resp.get_json()["balance"] == "110.00"
    new_id = resp.get_json()["card_id"]
    resp = _post(client, f"/api/v1/cards/{new_id}/close", {"reason": "退卡"}, op)
    body = resp.get_json()
    assert resp.status_code == 201 and (body["refunded"], body["bonus_voided"]) == ("100.00",
                                                                                    "10.00")
    assert shop.card(new_id).status == "closed" and shop.card(card_id).status == "closed"


def test_reverse_is_for_admins(client, shop, op, boss):
    """Operators get 403 on reversal; admins reverse once, the second time 409."""
    card_id = shop.open_card(amount=10000, bonus=0)
    consumed = _post(client, f"/api/v1/cards/{card_id}/consume", {"amount": "30"}, op).get_json()
    path = f"/api/v1/records/{consumed['record_id']}/reverse"
    assert _post(client, path, {"reason": "错了"}, op).status_code == 403
    resp = _post(client, path, {"reason": "错了"}, boss)
    assert resp.status_code == 201 and resp.get_json()["balance"] == "100.00"
    again = _post(client, path, {"reason": "错了"}, boss)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_reversed"
    records = client.get(f"/api/v1/cards/{card_id}/records", headers=op).get_json()["items"]
    assert records[0]["reverses_id"] == consumed["record_id"]
    assert records[1]["reversed_by"] == records[0]["id"]


def test_rules_and_verify(client, shop, op, boss):
    """Recharge rules apply when no bonus is sent; the ledger check is admin-only and passes."""
    resp = client.post("/api/v1/recharge-rules", json={"min_amount": "500", "bonus": "50"},
                       headers=boss)
    assert resp.status_code == 201
    assert client.post("/api/v1/recharge-rules", json={"min_amount": "500", "bonus": "60"},
                       headers=boss).status_code == 409
    assert client.post("/api/v1/recharge-rules", json={"min_amount": "1", "bonus": "1"},
                       headers=op).status_code == 403
    card_id = shop.open_card()
    resp = _post(client, f"/api/v1/cards/{card_id}/recharge", {"amount": "500"}, op)
    assert resp.get_json()["bonus"] == "50.00" and resp.get_json()["balance"] == "550.00"
    resp = _post(client, f"/api/v1/cards/{card_id}/recharge", {"amount": "500", "bonus": "0"}, op)
    assert resp.get_json()["bonus"] == "0.00"
    assert client.get("/api/v1/ledger/verify", headers=op).status_code == 403
    report = client.get("/api/v1/ledger/verify", headers=boss).get_json()
    assert report["ok"] is True and report["cards_checked"] == 1 and report["problems"] == []


def test_fifty_http_clients_drain_one_card_exactly(app, live_server, shop):
    """50 clients × 20 consumptions of 1.00 through the HTTP API of a live waitress server on a
    card holding 500.00: exactly 500 × 201 and 500 × 409; balance 0.00; records; verify."""
    from tests.conftest import PASSWORD

    card_id = shop.open_card(amount=50000, bonus=0)
    host, port = live_server.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/api/v1/login", json.dumps({"username": "ann", "password": PASSWORD}),
                 {"Content-Type": "application/json"})
    token = json.loads(conn.getresponse().read())["token"]
    conn.close()
    statuses, errors, lock = [], [], threading.Lock()

    def client_thread():
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            for _ in range(20):
                conn.request("POST", f"/api/v1/cards/{card_id}/consume",
                             json.dumps({"amount": "1.00"}),
                             {"Content-Type": "application/json", "Idempotency-Key": _key(),
                              "Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                body = json.loads(resp.read())
                with lock:
                    statuses.append((resp.status, body.get("error", {}).get("code")))
            conn.close()
        except Exception as error:  # noqa: BLE001 — reported by the assertion below
            errors.append(repr(error))

    threads = [threading.Thread(target=client_thread) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert statuses.count((201, None)) == 500
    assert statuses.count((409, "insufficient_balance")) == 500
    assert shop.card(card_id).money == 0
    assert run(app, lambda: ConsumeRecord.select().count()) == 500
    assert run(app, lambda: CardRecord.select().where(CardRecord.card == card_id).count()) == 501
    assert run(app, lambda: Card.get_by_id(card_id).entry_count) == 501
    assert shop.verify().ok
