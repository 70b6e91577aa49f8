"""Statement reach (issue 19.7): the customer page and the card page link to the statement; the
statement offers 全部（开卡以来） beside today / this week / this month / last month — on the page,
its exports and the API."""
import datetime

import pytest
from playwright.sync_api import expect

from crm import clock
from crm.models import Card, CardRecord
from tests.conftest import PASSWORD
from tests.ledger_helpers import make_shop, run
from tests.test_browser import log_in


def _card_opened_years_ago(app, shop, years=6):
    """A card (with its entries) opened `years` ago: longer than any other period allows."""
    card_id = shop.open_card(amount=10000)
    then = clock.now() - datetime.timedelta(days=366 * years)
    run(app, lambda: Card.update(created_at=then).where(Card.id == card_id).execute())
    return card_id, then.date()


def test_all_since_the_first_card_on_page_exports_and_api(app, client, auth, api_token):
    shop = make_shop(app)
    _, since = _card_opened_years_ago(app, shop)
    auth.login("ann", PASSWORD)
    page = client.get(f"/customers/{shop.customer_id}/statement?preset=all").get_data(
        as_text=True)
    assert "全部（开卡以来）" in page and f"{since} 至 {clock.today()}" in page
    assert "preset=all" in page.split('id="export-xlsx"')[1].split(">")[0]
    assert client.get(f"/customers/{shop.customer_id}/statement.xlsx?preset=all").status_code == 200
    headers = api_token("api-ann")
    answer = client.get(f"/api/v1/customers/{shop.customer_id}/statement?preset=all",
                        headers=headers).get_json()
    assert answer["start"] == since.isoformat() and answer["total_entries"] == run(
        app, lambda: CardRecord.select().count())
    # Six years by dates is still refused: only "all" reaches past five.
    assert client.get(f"/customers/{shop.customer_id}/statement?start={since}").status_code == 422


def test_a_customer_without_cards_has_an_empty_statement_for_all(app, client, auth):
    shop = make_shop(app)
    auth.login("ann", PASSWORD)
    page = client.get(f"/customers/{shop.customer_id}/statement?preset=all").get_data(
        as_text=True)
    assert f"{clock.today()} 至 {clock.today()}" in page and "这段时间没有交易" in page


@pytest.mark.backends("sqlite")
def test_the_customer_and_card_pages_lead_to_the_statement_in_a_browser(app, page):
    shop = make_shop(app)
    card_id = shop.open_card(amount=5000)
    log_in(page, "ann")
    for start in (f"/customers/{shop.customer_id}", f"/cards/{card_id}"):
        page.goto(start)
        page.click("#statement-link")
        expect(page.locator("#statement-customer")).to_have_text("张三")
    page.click("[data-preset=all]")
    expect(page.locator("[data-preset=all]")).to_have_class("btn btn-sm btn-secondary")
    expect(page.locator("#statement-table")).to_contain_text("¥50.00")
