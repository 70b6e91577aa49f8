"""Receipts (issue 19.6): a recharge and a card opening with money print a 充值凭证 like the
consumption's (paid, bonus, payment method, new balance); the receipt of an entry that was
reversed is marked 已冲正 with the reversal's time and reason, on the page and in the PDF."""
import pytest
from playwright.sync_api import expect

from crm.models import CardRecord
from crm.services import cards
from tests.conftest import PASSWORD, csrf_token, pdf_text
from tests.ledger_helpers import key, make_shop, run
from tests.test_browser import log_in


def _form_key(page):
    return page.split('name="idempotency_key" value="')[1].split('"')[0]


def test_a_recharge_and_a_card_opening_show_their_receipt(app, client, auth):
    shop = make_shop(app)
    auth.login("ann", PASSWORD)
    html = client.get(f"/customers/{shop.customer_id}").get_data(as_text=True)
    opened = client.post(f"/customers/{shop.customer_id}/cards", data={
        "csrf_token": csrf_token(client, "/"), "amount": "200", "payment_method": "alipay",
        "idempotency_key": _form_key(html)})
    assert "/recharge-receipt" in opened.headers["Location"]
    first = client.get(opened.headers["Location"]).get_data(as_text=True)
    assert "充值凭证" in first and "支付宝" in first and "¥200.00" in first
    card_id = run(app, lambda: CardRecord.get().card_id)
    page = client.get(f"/cards/{card_id}").get_data(as_text=True)
    resp = client.post(f"/cards/{card_id}/recharge", data={
        "csrf_token": csrf_token(client, "/"), "amount": "100", "bonus": "10",
        "payment_method": "wechat", "idempotency_key": _form_key(page)})
    assert resp.status_code == 302
    receipt = client.get(resp.headers["Location"]).get_data(as_text=True)
    section = receipt.split('id="receipt"')[1]
    for text in ("充值凭证", "<dd>¥100.00</dd>", "<dd>¥10.00</dd>", "<dd>微信</dd>",
                 "<dd>¥310.00</dd>", "安安"):
        assert text in section, text
    assert "已冲正" not in section
    record_id = int(resp.headers["Location"].split("/records/")[1].split("/")[0])
    text = pdf_text(client.get(f"/cards/records/{record_id}/recharge-receipt.pdf").data)
    for line in ("充值凭证", "¥100.00", "¥10.00", "微信", "¥310.00"):
        assert line in text, line
    assert client.get("/cards/records/999999/recharge-receipt").status_code == 404


def test_receipts_of_reversed_entries_say_so(app, client, auth):
    """A consumption and a recharge reversed by the boss: both receipts (page and PDF) read
    已冲正 with the reversal's time and reason."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000)
    sale = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 1250)).record_id
    shop.do(lambda: cards.reverse(shop.admin, sale, key(), "收错金额"))
    topped = shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 3000,
                                            bonus=0)).record_id
    shop.do(lambda: cards.reverse(shop.admin, topped, key(), "客人改主意"))
    auth.login("ann", PASSWORD)
    for url, reason in ((f"/cards/records/{sale}/receipt", "收错金额"),
                        (f"/cards/records/{topped}/recharge-receipt", "客人改主意")):
        page = client.get(url).get_data(as_text=True)
        assert 'id="reversed-mark"' in page and f"原因：{reason}" in page, url
        assert "冲正时间 20" in page and "成功" not in page.split('id="receipt"')[0], url
        text = pdf_text(client.get(url + ".pdf").data)
        assert "已冲正" in text and reason in text, url


@pytest.mark.backends("sqlite")
def test_recharging_in_a_browser_shows_the_receipt_and_leads_back(app, page):
    shop = make_shop(app)
    card_id = shop.open_card(amount=1000)
    log_in(page, "ann")
    page.goto(f"/cards/{card_id}")
    page.fill("#recharge-form #amount", "88.8")
    page.click("#recharge-form button[type=submit]")
    expect(page.locator("#receipt")).to_contain_text("充值凭证")
    expect(page.locator("#new-balance")).to_have_text("¥98.80")
    page.click("text=返回会员卡")
    expect(page.locator("#card-balance")).to_have_text("¥98.80")
    page.click("#card-records >> text=凭证")
    expect(page.locator("#receipt")).to_contain_text("¥88.80")
