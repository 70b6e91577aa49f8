"""Readable admin pages (issue 19.9): the audit log in Chinese (field names, old → new, yuan,
the object by its name with a link), durability in words on the monitoring page, and the
recovery key shown and printable once the admin has typed the password again."""
import re

import pytest
from playwright.sync_api import expect

from crm.models import AuditLog
from crm.services import cards, customers, ledger, recharge_rules
from tests.conftest import PASSWORD, csrf_token
from tests.ledger_helpers import key, make_shop, run
from tests.test_browser import log_in


def _audit_table(client):
    page = client.get("/admin/audit").get_data(as_text=True)
    return page.split('id="audit-table"')[1].split("</table>")[0]


def test_the_audit_log_reads_in_chinese(app, client, auth):
    """A customer edit, a recharge rule and a reversal: Chinese field names, yuan amounts, the
    object by its name or number with its page; no stored JSON or English keys."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, card_no="AU-0001")
    shop.do(lambda: customers.update_customer(shop.operator, shop.customer_id,
                                              {"phone": "13900139000", "remark": "老客户"}))
    shop.do(lambda: recharge_rules.create_rule(shop.admin, 50000, 5000))
    sale = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 1250)).record_id
    shop.do(lambda: cards.reverse(shop.admin, sale, key(), "收错金额"))
    auth.login("boss", PASSWORD)
    table = _audit_table(client)
    assert "电话：13800138000 → 13900139000" in table and "备注：（空） → 老客户" in table
    assert f'<a href="/customers/{shop.customer_id}">客户 张三（000001）</a>' in table
    assert "充值满：¥500.00" in table and "赠送：¥50.00" in table
    assert "充值规则 充 ¥500.00 送 ¥50.00" in table
    assert f"流水 #{sale}（消费 -¥12.50）" in table and "原因：收错金额" in table
    assert f'<a href="/cards/{card_id}">会员卡 AU-0001</a>' in table
    for raw in ("min_amount", "phone", '{"', "changes", "50000"):
        assert raw not in table, raw


def test_the_monitoring_page_says_durability_in_words(app, client, auth):
    make_shop(app)
    auth.login("boss", PASSWORD)
    cell = client.get("/admin/monitor").get_data(as_text=True).split('id="durability"')[1]
    assert "已开启" in cell.split("</td>")[0] and "突然停电也不会丢失" in cell


def test_the_recovery_key_needs_the_password_again(app, client, auth, make_user):
    shop = make_shop(app)
    auth.login("boss", PASSWORD)
    token = csrf_token(client, "/admin/backups")
    wrong = client.post("/admin/backups/recovery-key", data={"csrf_token": token,
                                                             "password": "not-it"})
    assert wrong.status_code == 303
    page = client.get(wrong.headers["Location"]).get_data(as_text=True)
    expected = run(app, lambda: ledger.current_key().decode())
    assert "密码不正确" in page and expected not in page
    right = client.post("/admin/backups/recovery-key", data={"csrf_token": token,
                                                             "password": PASSWORD})
    assert right.status_code == 200 and right.headers["Cache-Control"] == "no-store"
    assert re.search(r'id="recovery-key">([0-9a-f]{64})<', right.get_data(as_text=True)).group(1) \
        == expected
    assert run(app, lambda: AuditLog.select().where(
        AuditLog.action == "backup.recovery_key").count()) == 1
    auth.logout()
    auth.login("ann", PASSWORD)
    assert client.post("/admin/backups/recovery-key", data={
        "csrf_token": csrf_token(client, "/"), "password": PASSWORD}).status_code == 403
    assert shop.admin


def test_guessing_the_password_for_the_key_locks_like_a_login(app, client, auth):
    make_shop(app)
    auth.login("boss", PASSWORD)
    token = csrf_token(client, "/admin/backups")
    for _ in range(5):
        client.post("/admin/backups/recovery-key", data={"csrf_token": token, "password": "x"})
    locked = client.post("/admin/backups/recovery-key", data={"csrf_token": token,
                                                              "password": PASSWORD})
    assert locked.status_code == 303
    assert "锁定" in client.get(locked.headers["Location"]).get_data(as_text=True)


@pytest.mark.backends("sqlite")
def test_showing_the_recovery_key_in_a_browser(app, page):
    make_shop(app)
    log_in(page, "boss")
    page.goto("/admin/backups")
    page.fill("#recovery-key-form input[name=password]", PASSWORD)
    page.click("#recovery-key-form button[type=submit]")
    expect(page.locator("#recovery-key")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(page.locator("[data-action=print]")).to_be_visible()
