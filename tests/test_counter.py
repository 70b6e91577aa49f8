"""Counter details (issue 19.5): 实扣 shown live by the ledger's discount rule, the discount as
8.8 折, the amount's format explained, no form or button an operator may not use, and 注销 /
冲正 confirmed with their amounts."""
import pytest
from playwright.sync_api import expect

from crm.models import Card, ConsumeRecord
from crm.services import ledger
from crm.services import users as user_service
from tests.conftest import PASSWORD
from tests.ledger_helpers import make_shop, run
from tests.test_browser import log_in


@pytest.mark.backends("sqlite")
def test_the_consumption_form_shows_what_is_charged_as_the_clerk_types(app, page):
    """A type with 88 %: 100 → 实扣 ¥88.00, 12.34 → ¥10.86 (half up, the ledger's rule), full-width
    digits too; what is charged on 确认消费 is what the form showed."""
    shop = make_shop(app, discount=88)
    card_id = shop.open_card(amount=50000)
    log_in(page, "ann")
    page.goto(f"/cards/{card_id}/consume?customer_id={shop.customer_id}")
    expect(page.locator("#charged-line")).to_contain_text("8.8 折")
    for typed, shown in (("100", "¥88.00"), ("12.34", "¥10.86"), ("１２.３４", "¥10.86"),
                         ("0.01", "¥0.01"), ("12.345", "金额格式：数字，最多两位小数"), ("", "—"),
                         ("￥100", "¥88.00"), ("0", "金额必须大于 0")):
        page.fill("#amount", typed)
        expect(page.locator("#charged")).to_contain_text(shown)
    page.fill("#amount", "12.34")
    assert ledger.discounted(1234, 88) == 1086
    page.click("#consume-form button[type=submit]")
    expect(page.locator("#new-balance")).to_be_visible()
    charged = run(app, lambda: ConsumeRecord.select().get().amount)
    assert charged == 1086


def test_an_operator_sees_no_form_or_button_they_may_not_use(app, client, auth):
    shop = make_shop(app)
    card_id = shop.open_card(amount=1000)
    auth.login("ann", PASSWORD)
    page = client.get(f"/cards/{card_id}").get_data(as_text=True)
    assert 'id="recharge-form"' in page and 'id="close-form"' in page and ">消费</a>" in page
    shop.do(lambda: user_service.update_user(shop.admin, shop.operator.user.id, permissions={
        "recharge": False, "manage_cards": False, "consume": False}))
    page = client.get(f"/cards/{card_id}").get_data(as_text=True)
    for hidden in ('id="recharge-form"', 'id="status-form"', 'id="close-form"',
                   'id="reissue-form"', ">消费</a>", "reverse-form"):
        assert hidden not in page, hidden


@pytest.mark.backends("sqlite")
def test_closing_and_reversing_ask_first_naming_the_amount(app, page):
    """注销 and 冲正 in chromium: the confirmation names the money; 取消 leaves everything as it
    was, 确定 does it."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=12000, bonus=1500)
    log_in(page, "boss")
    page.goto(f"/cards/{card_id}")
    asked = []

    def answer(dialog, accept):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.fill("#close-form input[name=reason]", "客人退卡")
    page.click("#close-form button[type=submit]")
    expect(page.locator("#card-status")).to_have_text("正常")
    assert "退还本金 ¥120.00" in asked[0] and "赠送 ¥15.00 作废" in asked[0]
    assert run(app, lambda: Card.get_by_id(card_id).status) == "active"

    row = page.locator("#card-records .reverse-form").first
    page.once("dialog", lambda d: answer(d, True))
    row.locator("input[name=reason]").fill("录错")
    row.locator("button[type=submit]").click()
    expect(page.locator("#card-records")).to_contain_text("已冲正")
    # The recharge goes back with its bonus: the confirmation names both.
    assert asked[1].startswith("确定冲正这笔充值 ¥120.00")
    assert "余额将减少 ¥135.00（含同一次充值的赠送 ¥15.00）" in asked[1]

    page.once("dialog", lambda d: answer(d, True))
    page.fill("#close-form input[name=reason]", "客人退卡")
    page.click("#close-form button[type=submit]")
    expect(page.locator("#card-status")).to_have_text("注销")
    assert "确定注销会员卡" in asked[2]


def test_pages_show_no_export_edit_or_open_card_without_the_permission(app, client, auth):
    """Without export: no Excel/PDF buttons on the statement, closing and dashboard; without
    recharge: no 开卡 form; without edit_customers: no 编辑 or 归档."""
    shop = make_shop(app)
    auth.login("ann", PASSWORD)
    statement = f"/customers/{shop.customer_id}/statement"
    customer = f"/customers/{shop.customer_id}"
    before = {url: client.get(url).get_data(as_text=True)
              for url in (statement, "/closing", "/stats", customer)}
    assert 'id="export-xlsx"' in before[statement] and "导出 Excel" in before["/closing"]
    assert "下载 Excel" in before["/stats"] and 'id="open-card-form"' in before[customer]
    assert ">编辑</a>" in before[customer]
    shop.do(lambda: user_service.update_user(shop.admin, shop.operator.user.id, permissions={
        "export": False, "recharge": False, "edit_customers": False}))
    after = {url: client.get(url).get_data(as_text=True) for url in before}
    assert 'id="export-xlsx"' not in after[statement] and 'id="export-pdf"' not in after[statement]
    assert "导出 Excel" not in after["/closing"] and "下载 Excel" not in after["/stats"]
    assert 'id="open-card-form"' not in after[customer] and ">编辑</a>" not in after[customer]
    assert ">归档</button>" not in after[customer]
