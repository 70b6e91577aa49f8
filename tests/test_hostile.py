"""Hostile input to every JSON endpoint that takes a body: SQL text, markup, overlong strings,
control characters, emoji, wrong types. Never a 5xx; a 4xx always carries a JSON error; the
ledger still verifies afterwards."""
import uuid

from crm.api.openapi import document
from crm.services import ledger
from tests.ledger_helpers import make_shop, run

HOSTILE = [
    "' OR '1'='1' --", "Robert'); DROP TABLE t_customer;--", "<script>alert(1)</script>",
    "x" * 5000, "\x00\x01\x1f\x7f", "😀💰🧾", "", " ", "%s%s%s%n", "../../etc/passwd",
    12345, -1, 1.5e300, True, None, [], {}, ["a"],
]


def _bodies(schema, components):
    """For each property of the body schema, the body with that property set to each hostile
    value (other properties left out)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    for name in schema.get("properties", {}):
        for value in HOSTILE:
            yield {name: value}
    for value in HOSTILE[:6]:
        yield value  # not even an object


def test_hostile_bodies_never_give_a_server_error(app, client):
    """Every JSON body endpoint × every property × every hostile value: status < 500."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    token = client.post("/api/v1/login", json={"username": "boss",
                                               "password": "correct-horse-9"}).get_json()["token"]
    doc = document()
    components = doc["components"]["schemas"]
    ids = {"customer_id": shop.customer_id, "card_id": card_id, "type_id": 1, "record_id": 1,
           "user_id": shop.operator.user.id, "rule_id": 1, "token_id": 999999,
           "name": "crm-backup-20000101-000000-manual.zip", "chart": "daily"}
    sent = 0
    for path, operations in doc["paths"].items():
        if path in ("/api/v1/login", "/api/v1/me/password", "/api/v1/logout"):
            continue
        url = path.format(**ids)
        for method, operation in operations.items():
            if method == "parameters" or "requestBody" not in operation:
                continue
            content = operation["requestBody"]["content"]
            if "application/json" not in content:
                continue
            for body in _bodies(content["application/json"]["schema"], components):
                headers = {"Authorization": f"Bearer {token}",
                           "Idempotency-Key": uuid.uuid4().hex}
                resp = client.open(url, method=method.upper(), json=body, headers=headers)
                assert resp.status_code < 500, (method, url, body, resp.status_code)
                if resp.status_code >= 400:
                    error = resp.get_json()["error"]
                    assert error["code"] and error["message"], (method, url, body)
                sent += 1
    assert sent > 500
    assert run(app, ledger.verify).ok
