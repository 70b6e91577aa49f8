"""Hostile input to every JSON endpoint that takes a body: SQL text, markup, overlong strings,
control characters, emoji, wrong types. Never a 5xx; a 4xx always carries a JSON error; the
ledger still verifies afterwards."""
import json
import uuid

from crm.api.openapi import document
from crm.services import ledger
from tests.ledger_helpers import make_shop, run


def _nested(depth):
    value = "deep"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = [
    "' OR '1'='1' --", "Robert'); DROP TABLE t_customer;--", "<script>alert(1)</script>",
    "x" * 5000, "\x00\x01\x1f\x7f", "😀💰🧾", "", " ", "%s%s%s%n", "../../etc/passwd",
    12345, -1, 1.5e300, True, None, [], {}, ["a"],
    # Issue 17.6: a lone surrogate gave a 500 in every text field; absurd dates and numbers.
    "\ud800", "a\udfffb", "9999-12-31", "0001-01-01", "²", "99999999999999999999",
    99999999999999999999, _nested(40),
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
                # Sent as text the encoder escapes: a lone surrogate travels as "\ud800".
                resp = client.open(url, method=method.upper(), data=json.dumps(body),
                                   content_type="application/json", headers=headers)
                assert resp.status_code < 500, (method, url, body, resp.status_code)
                if resp.status_code >= 400:
                    error = resp.get_json()["error"]
                    assert error["code"] and error["message"], (method, url, body)
                sent += 1
    assert sent > 500
    assert run(app, ledger.verify).ok


def test_bad_json_on_the_login_and_anywhere_is_a_4xx(app, client):
    """JSON nested 100,000 deep gave a 500 even on /api/v1/login (Python's parser ran out of
    recursion), and a lone surrogate in the user name or password another: now 400 / 422 with
    a Chinese message, through the one JSON parser of the API."""
    make_shop(app)
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/login", "/api/v1/customers"):
        for body in ('{"username": ' + deep + "}", deep, '{"a": ' + "{\"a\": " * 40 + "1" + "}" * 41,
                     '{"username": "boss", "password": "\\ud800"}',
                     '{"username": "\\udfff", "password": "x"}', '{"\\ud800": 1}',
                     b'{"username": "\xed\xa0\x80"}', "{not json"):
            resp = client.post(path, data=body, content_type="application/json")
            assert 400 <= resp.status_code < 500, (path, str(body)[:60], resp.status_code)
            message = resp.get_json()["error"]["message"]
            assert any("\u4e00" <= ch <= "\u9fff" for ch in message), message
