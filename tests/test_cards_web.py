"""Card pages: the consume counter, open, recharge, consume with receipt, states, reversal."""
import re

import pytest

from crm.models import AuditLog, Card, ConsumeRecord
from crm.services import cards
from tests.conftest import PASSWORD, AuthActions, csrf_token, pdf_text
from tests.ledger_helpers import key, make_shop, run


@pytest.fixture
def shop(app):
    """A shop with staff and a customer."""
    return make_shop(app)


@pytest.fixture
def staff(client, shop):
    """The operator, logged in."""
    AuthActions(client).login("ann")
    return client


def _form_key(html):
    return re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', html).group(1)


def test_counter_finds_customer_and_cards(staff, shop):
    """消费收银: the phone's last four digits find the customer with each card and balance."""
    card_id = shop.open_card(amount=8800, bonus=0, card_no="C-1001")
    html = staff.get("/consume?q=8000").get_data(as_text=True)
    assert "张三" in html and "C-1001" in html and "¥88.00" in html
    assert f"/cards/{card_id}/consume?customer_id={shop.customer_id}" in html
    assert "没有找到客户" in staff.get("/consume?q=99999").get_data(as_text=True)


def test_consume_through_the_form_charges_once(app, staff, shop):
    """The consume form: result page with the new balance; the same form sent twice (a
    double-click) charges once and shows the same receipt."""
    card_id = shop.open_card(amount=10000, bonus=0)
    page = staff.get(f"/cards/{card_id}/consume?customer_id={shop.customer_id}")
    html = page.get_data(as_text=True)
    form = {"csrf_token": csrf_token(staff, f"/cards/{card_id}/consume"), "amount": "35.50",
            "remark": "洗剪吹", "customer_id": str(shop.customer_id),
            "idempotency_key": _form_key(html)}
    first = staff.post(f"/cards/{card_id}/consume", data=form)
    second = staff.post(f"/cards/{card_id}/consume", data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    result = staff.get(first.headers["Location"]).get_data(as_text=True)
    assert "消费成功" in result and "¥64.50" in result and "洗剪吹" in result
    assert shop.card(card_id).money == 6450
    assert run(app, lambda: ConsumeRecord.select().count()) == 1


@pytest.mark.parametrize("amount,status,message", [
    ("abc", 422, "金额格式不正确"), ("0", 422, "金额必须大于 0"), ("1.234", 422, "最多两位小数"),
    ("50000.01", 422, "单笔金额不能超过"), ("100.01", 409, "余额不足"), ("", 422, "格式不正确"),
])
def test_bad_consume_form(staff, shop, amount, status, message):
    """Bad amounts and too little money: the form again with the reason, nothing charged."""
    card_id = shop.open_card(amount=10000, bonus=0)
    before = shop.counts()
    resp = staff.post(f"/cards/{card_id}/consume", data={
        "csrf_token": csrf_token(staff, f"/cards/{card_id}/consume"), "amount": amount,
        "idempotency_key": key()})
    assert resp.status_code == status and message in resp.get_data(as_text=True)
    assert shop.counts() == before


def test_frozen_card_and_another_customers_card(app, staff, shop):
    """A frozen card and a card of someone else: refused with a message, nothing charged."""
    card_id = shop.open_card(amount=10000, bonus=0)
    run(app, lambda: cards.change_status(shop.operator, card_id, "freeze", "x"))
    token = csrf_token(staff, f"/cards/{card_id}/consume")
    resp = staff.post(f"/cards/{card_id}/consume", data={"csrf_token": token, "amount": "1",
                                                         "idempotency_key": key()})
    assert resp.status_code == 409 and "不能消费" in resp.get_data(as_text=True)
    run(app, lambda: cards.change_status(shop.operator, card_id, "unfreeze", "x"))
    resp = staff.post(f"/cards/{card_id}/consume", data={
        "csrf_token": token, "amount": "1", "customer_id": "999", "idempotency_key": key()})
    assert resp.status_code == 409 and "不属于此客户" in resp.get_data(as_text=True)
    assert shop.card(card_id).money == 10000


def test_receipt_pdf_has_the_chinese_text_and_amounts(app, staff, shop):
    """The PDF receipt carries the customer's Chinese name, the amount and the new balance."""
    card_id = shop.open_card(amount=10000, bonus=0)
    result = run(app, lambda: cards.consume(shop.operator, card_id, key(), 2345, remark="染发"))
    resp = staff.get(f"/cards/records/{result.record_id}/receipt.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = pdf_text(resp.data)
    for expected in ("消费凭证", "张三", "¥23.45", "¥76.55", "染发", "安安"):
        assert expected in text, expected
    assert staff.get("/cards/records/999999/receipt").status_code == 404


def test_a_bonus_goes_only_with_a_first_recharge(app, staff, shop):
    """One rule for the page and the API, in the service: a bonus typed without an amount opens
    an empty card (no bonus is booked); a bonus that is no amount is refused either way."""
    resp = staff.post(f"/customers/{shop.customer_id}/cards", data={
        "csrf_token": csrf_token(staff, "/"), "card_no": "BN-0001", "amount": "", "bonus": "10",
        "idempotency_key": key()})
    assert resp.status_code == 302
    card = run(app, lambda: Card.get(Card.card_no == "BN-0001"))
    assert (card.money, card.bonus_money) == (0, 0)
    resp = staff.post(f"/customers/{shop.customer_id}/cards", data={
        "csrf_token": csrf_token(staff, "/"), "card_no": "BN-0002", "amount": "", "bonus": "十元",
        "idempotency_key": key()}, follow_redirects=True)
    assert "金额" in resp.get_data(as_text=True)
    assert run(app, lambda: Card.get_or_none(Card.card_no == "BN-0002")) is None
    token = staff.post("/api/v1/login", json={"username": "ann", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    answer = staff.post(f"/api/v1/customers/{shop.customer_id}/cards",
                        json={"card_no": "BN-0003", "bonus": "10.00"},
                        headers={**headers, "Idempotency-Key": key()})
    assert answer.status_code == 201, answer.get_json()
    assert (answer.get_json()["balance"], answer.get_json()["bonus"]) == ("0.00", "0.00")
    answer = staff.post(f"/api/v1/customers/{shop.customer_id}/cards",
                        json={"card_no": "BN-0004", "bonus": "十元"},
                        headers={**headers, "Idempotency-Key": key()})
    assert answer.status_code == 422


def test_open_card_and_recharge_from_the_pages(app, staff, shop):
    """开卡 with a first recharge on the customer page; 充值 on the card page."""
    html = staff.get(f"/customers/{shop.customer_id}").get_data(as_text=True)
    resp = staff.post(f"/customers/{shop.customer_id}/cards", data={
        "csrf_token": csrf_token(staff, "/"), "card_no": "", "amount": "200",
        "payment_method": "wechat", "idempotency_key": _form_key(html)})
    assert resp.status_code == 302
    card = run(app, lambda: Card.get())
    assert card.money == 20000 and card.card_no == "80000001"
    assert "充值凭证" in staff.get(resp.headers["Location"]).get_data(as_text=True)
    page = staff.get(f"/cards/{card.id}").get_data(as_text=True)
    resp = staff.post(f"/cards/{card.id}/recharge", data={
        "csrf_token": csrf_token(staff, "/"), "amount": "100", "bonus": "10",
        "payment_method": "cash", "idempotency_key": _form_key(page)})
    assert resp.status_code == 302
    # The 充值凭证 (issue 19.6) instead of a notice on the card page.
    assert "<dt>卡内余额</dt><dd>¥310.00</dd>" in staff.get(resp.headers["Location"]).get_data(
        as_text=True)
    resp = staff.post(f"/cards/{card.id}/recharge", data={
        "csrf_token": csrf_token(staff, "/"), "amount": "-5", "idempotency_key": key()})
    assert resp.status_code == 422 and "金额必须大于 0" in resp.get_data(as_text=True)


def test_card_actions_from_the_page(app, staff, shop):
    """Freeze needs a reason; report lost; reissue to a new number; the old card is closed."""
    card_id = shop.open_card(amount=5000, bonus=0, card_no="OLD-1")
    token = csrf_token(staff, "/")
    resp = staff.post(f"/cards/{card_id}/status", data={"csrf_token": token, "action": "freeze",
                                                        "reason": ""})
    assert resp.status_code == 422 and "请填写原因" in resp.get_data(as_text=True)
    staff.post(f"/cards/{card_id}/status", data={"csrf_token": token, "action": "report_lost",
                                                 "reason": "丢失"})
    assert shop.card(card_id).status == "lost"
    resp = staff.post(f"/cards/{card_id}/reissue", data={
        "csrf_token": token, "reason": "补办", "new_card_no": "NEW-1", "idempotency_key": key()})
    assert resp.status_code == 302
    new = run(app, lambda: Card.get(Card.card_no == "NEW-1"))
    assert new.money == 5000 and shop.card(card_id).status == "closed"
    resp = staff.post(f"/cards/{new.id}/close", data={"csrf_token": token, "reason": "退卡",
                                                      "idempotency_key": key()})
    assert "退还本金 ¥50.00" in staff.get(resp.headers["Location"]).get_data(as_text=True)


def test_reversal_is_admin_only_and_shown(app, client, shop):
    """Operators get 403; the admin's reversal marks the entry 已冲正."""
    card_id = shop.open_card(amount=5000, bonus=0)
    result = run(app, lambda: cards.consume(shop.operator, card_id, key(), 1000))
    auth = AuthActions(client)
    auth.login("ann")
    form = {"csrf_token": csrf_token(client, "/"), "reason": "收错", "card_id": str(card_id),
            "idempotency_key": key()}
    assert client.post(f"/cards/records/{result.record_id}/reverse",
                       data=form).status_code == 403
    auth.logout()
    auth.login("boss")
    form["csrf_token"] = csrf_token(client, "/")
    resp = client.post(f"/cards/records/{result.record_id}/reverse", data=form)
    assert resp.status_code == 302
    page = client.get(f"/cards/{card_id}").get_data(as_text=True)
    assert "已冲正" in page and "冲正 #" in page
    assert shop.card(card_id).money == 5000


def test_rules_and_verify_pages(app, client, shop):
    """Admin pages: add a recharge rule; run the ledger check (audited)."""
    auth = AuthActions(client)
    auth.login("boss")
    token = csrf_token(client, "/recharge-rules")
    resp = client.post("/recharge-rules", data={"csrf_token": token, "min_amount": "500",
                                                "bonus": "50"})
    assert resp.status_code == 302
    assert "¥500.00" in client.get("/recharge-rules").get_data(as_text=True)
    resp = client.post("/recharge-rules", data={"csrf_token": token, "min_amount": "x",
                                                "bonus": "50"})
    assert resp.status_code == 422
    shop.open_card(amount=100, bonus=0)
    html = client.post("/ledger/verify", data={"csrf_token": token}).get_data(as_text=True)
    assert "校验通过：1 张卡、1 条流水全部正确" in html
    assert run(app, lambda: AuditLog.select().where(AuditLog.action == "ledger.verify").count()) == 1


def test_crm_verify_command(app, runner, shop):
    """`crm verify`: exit 0 and a summary when the ledger is sound."""
    shop.open_card(amount=100, bonus=0)
    result = runner.invoke(args=["verify"])
    assert result.exit_code == 0, result.output
    assert "已检查 1 张卡、1 条流水：全部正确" in result.output


def test_stale_form_with_a_used_key_is_refused(staff, shop):
    """A stale form (its key already used for another amount, e.g. edited after Back): 409 with a
    message; nothing more is charged."""
    card_id = shop.open_card(amount=10000, bonus=0)
    token, used = csrf_token(staff, "/"), key()
    staff.post(f"/cards/{card_id}/consume", data={"csrf_token": token, "amount": "10",
                                                  "idempotency_key": used})
    before = shop.counts()
    resp = staff.post(f"/cards/{card_id}/consume", data={"csrf_token": token, "amount": "20",
                                                         "idempotency_key": used})
    assert resp.status_code == 409
    assert "该请求编号已用于另一笔不同的操作" in resp.get_data(as_text=True)
    assert shop.counts() == before


def test_card_page_shows_the_newest_entries_a_page_at_a_time(staff, shop):
    """A card with 35 entries: its page lists the newest 30 (newest first) and links to the
    older ones; the last page holds the first 5; a page number past the end shows the last."""
    card_id = shop.open_card(amount=100000, bonus=0)  # entry 1
    for _ in range(34):
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))

    def seqs(html):
        table = html.split('id="card-records"')[1].split("</table>")[0]
        return [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", table)]

    first = staff.get(f"/cards/{card_id}").get_data(as_text=True)
    assert seqs(first) == list(range(35, 5, -1))
    assert "共 35 条，第 1 / 2 页" in first and f"/cards/{card_id}?page=2" in first
    older = staff.get(f"/cards/{card_id}?page=2").get_data(as_text=True)
    assert seqs(older) == [5, 4, 3, 2, 1] and f"/cards/{card_id}?page=1" in older
    assert seqs(staff.get(f"/cards/{card_id}?page=99").get_data(as_text=True)) == [5, 4, 3, 2, 1]
    assert seqs(staff.get(f"/cards/{card_id}?page=x").get_data(as_text=True))[0] == 35
