"""Amounts and ids are plain ASCII (issue 16.7): Python's \\d and int() take any script's digits
("１２", "٣", "𝟏𝟐", "²"); the API takes only ASCII digits, the pages turn full-width digits that an
input method typed into ASCII (and show what they booked), and nothing else is a number."""
import pytest

from crm.models import CardRecord
from tests.conftest import AuthActions, csrf_token
from tests.ledger_helpers import make_shop, run

NOT_ASCII_AMOUNTS = ["１２.００", "٣.٣٣", "𝟏𝟐", "12.0０", "١٢", "12.５", "²"]


@pytest.fixture
def shop(app):
    """A shop with a card holding 100.00."""
    shop = make_shop(app)
    shop.card_id = shop.open_card(amount=10000, bonus=0, card_no="ASC-0001")
    return shop


@pytest.mark.parametrize("amount", NOT_ASCII_AMOUNTS)
@pytest.mark.parametrize("operation", ["consume", "recharge"])
def test_amounts_and_ids_are_plain_ascii(client, api_token, shop, amount, operation):
    """An API amount of other scripts' digits is a 422 and books nothing."""
    import uuid

    headers = {**api_token("cashier"), "Idempotency-Key": uuid.uuid4().hex}
    before = shop.counts()
    resp = client.post(f"/api/v1/cards/{shop.card_id}/{operation}", json={"amount": amount},
                       headers=headers)
    assert resp.status_code == 422, (amount, resp.get_json())
    assert shop.counts() == before


@pytest.mark.parametrize("path", ["/api/v1/customers/%EF%BC%91", "/api/v1/cards/%D9%A1",
                                  "/api/v1/customers/%F0%9D%9F%8F", "/customers/%EF%BC%91",
                                  "/cards/%C2%B9"])
def test_ids_in_routes_are_ascii_digits_only(client, api_token, shop, path):
    """Full-width, Arabic-Indic, mathematical or superscript digits in a route are no id: 404."""
    AuthActions(client).login("ann")
    headers = api_token("cashier") if path.startswith("/api/") else {}
    assert client.get(path, headers=headers).status_code == 404


@pytest.mark.parametrize("query", ["page=²", "page=１", "customer_id=٣", "operator_id=²"])
def test_ids_in_page_queries_are_ascii_digits_only(client, shop, query):
    """A hand-edited address with other digits falls back to the default, never a 500."""
    AuthActions(client).login("boss")
    for path in ("/customers", "/closing", "/admin/audit", "/statements"):
        assert client.get(f"{path}?{query}").status_code in (200, 302, 422), path


def test_a_form_turns_full_width_digits_into_ascii_and_shows_what_it_booked(app, client, shop):
    """The consume page: "１２.５０" typed in full width (a Chinese input method) is booked as
    12.50 and the receipt says ¥12.50; Arabic-Indic digits are refused with the format hint."""
    AuthActions(client).login("ann")
    page = f"/cards/{shop.card_id}/consume?customer_id={shop.customer_id}"
    html = client.get(page).get_data(as_text=True)
    import re

    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', html).group(1)
    resp = client.post(f"/cards/{shop.card_id}/consume", data={
        "csrf_token": csrf_token(client, page), "idempotency_key": key, "amount": "１２.５０",
        "customer_id": str(shop.customer_id)}, follow_redirects=True)
    assert resp.status_code == 200 and "¥12.50" in resp.get_data(as_text=True)
    assert shop.card(shop.card_id).money == 10000 - 1250
    html = client.get(page).get_data(as_text=True)
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', html).group(1)
    resp = client.post(f"/cards/{shop.card_id}/consume", data={
        "csrf_token": csrf_token(client, page), "idempotency_key": key, "amount": "٣.٣٣",
        "customer_id": str(shop.customer_id)})
    assert resp.status_code == 422 and "请输入数字" in resp.get_data(as_text=True)
    assert run(app, lambda: CardRecord.select().count()) == 2


def test_a_phone_typed_in_full_width_is_stored_in_ascii(client, api_token, shop):
    """A phone in full-width digits is stored (and found) as ASCII; other scripts' digits are
    refused (they would never be found by the number a clerk types)."""
    headers = api_token("cashier")
    resp = client.post("/api/v1/customers", json={"name": "王五", "gender": "男",
                                                  "phone": "１３９００００１２３４"}, headers=headers)
    assert resp.status_code == 201 and resp.get_json()["phone"] == "13900001234"
    found = client.get("/api/v1/customers?q=1234", headers=headers).get_json()
    assert [c["name"] for c in found["items"]] == ["王五"]
    resp = client.post("/api/v1/customers", json={"name": "赵六", "gender": "男",
                                                  "phone": "١٣٩٠٠٠٠٥٦٧٨"}, headers=headers)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "invalid_phone"
