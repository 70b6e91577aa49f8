"""The 工作台 home page (issue 19.2): today's figures for the shop and for the clerk, shortcuts
to the everyday tasks, and for admins what needs attention — without the whole monitoring
status on every visit."""
import pytest
from playwright.sync_api import expect

from crm.services import cards, customers, monitor, workbench
from crm.services import users as user_service
from tests.conftest import PASSWORD
from tests.ledger_helpers import key, make_shop
from tests.test_browser import log_in


def _trade(shop):
    """ann opens a card with 100.00 (+10.00 bonus, WeChat) and charges 25.00; boss recharges
    another card 50.00 in cash and creates a customer."""
    card = shop.open_card(amount=10000, bonus=1000, payment_method="wechat")
    shop.do(lambda: cards.consume(shop.operator, card, key(), 2500))
    other = shop.do(lambda: customers.create_customer(shop.admin, {"name": "李四",
                                                                   "phone": "13900139000"}).id)
    second = shop.do(lambda: cards.open_card(shop.admin, other, key()).card_id)
    shop.do(lambda: cards.recharge(shop.admin, second, key(), 5000, bonus=0))
    return card


def test_todays_figures_for_the_shop_and_for_the_clerk(app):
    """The shop's figures add everyone's; the clerk's are their own entries and customers."""
    shop = make_shop(app)
    _trade(shop)
    mine = shop.do(lambda: workbench.today(shop.operator.user.id))
    assert (mine.recharge, mine.recharges, mine.bonus) == (10000, 1, 1000)
    assert (mine.consume, mine.consumptions, mine.new_customers) == (2500, 1, 0)
    assert mine.money_in["wechat"] == 10000 and mine.cash == 0
    everyone = shop.do(workbench.today)
    assert (everyone.recharge, everyone.recharges, everyone.consume) == (15000, 2, 2500)
    assert everyone.new_customers == 2 and everyone.cash == 5000
    assert shop.do(lambda: workbench.today(shop.admin.user.id)).new_customers == 1


def test_the_home_page_shows_both_and_hides_the_shop_without_statistics(app, client, auth):
    shop = make_shop(app)
    _trade(shop)
    auth.login("ann", PASSWORD)
    page = client.get("/").get_data(as_text=True)
    mine, shop_part = page.split('id="my-today"')[1].split('id="shop-today"')
    assert "¥100.00" in mine and "¥25.00" in mine and "微信 <strong>¥100.00" in mine
    assert "¥150.00" in shop_part and "钱箱应有现金" in shop_part and "¥50.00" in shop_part
    assert "消费收银" in page and "新建客户" in page and "对账查询" in page
    shop.do(lambda: user_service.update_user(shop.admin, shop.operator.user.id,
                                             permissions={"statistics": False}))
    page = client.get("/").get_data(as_text=True)
    assert 'id="my-today"' in page and 'id="shop-today"' not in page and "日结交班" not in \
        page.split('id="shortcuts"')[1].split("</nav>")[0]


def test_the_admin_home_page_does_not_run_the_monitoring_status(app, client, auth, monkeypatch):
    """What needs attention comes from the cheap facts (no counts or sums of the whole ledger):
    the page works with monitor.status out of reach, and says there is no backup yet."""
    make_shop(app)

    def refuse(*args, **kwargs):
        raise AssertionError("the home page ran the whole monitoring status")

    monkeypatch.setattr(monitor, "status", refuse)
    auth.login("boss", PASSWORD)
    resp = client.get("/")
    assert resp.status_code == 200
    assert "还没有任何备份" in resp.get_data(as_text=True)


@pytest.mark.backends("sqlite")
def test_the_monitoring_page_and_the_home_page_name_the_same_problems(app):
    """One rule: the problems of the home page are those of the monitoring page."""
    make_shop(app)
    with app.app_context(), app.extensions["crm_db"].connection_context():
        assert monitor.problems(app.config) == monitor.status(app.config)["problems"]
        assert monitor.problems(app.config)


def test_the_shortcuts_open_their_pages_in_a_browser(app, page):
    """Each shortcut of the 工作台, clicked in chromium, opens its page."""
    make_shop(app)
    log_in(page, "ann")
    expect(page.locator("h1")).to_have_text("工作台")
    for label, heading in (("消费收银", "消费收银"), ("新建客户", "新建客户"),
                           ("对账查询", "对账查询"), ("日结交班", "日结交班")):
        page.goto("/")
        page.click(f"#shortcuts >> text={label}")
        expect(page.locator("h1")).to_contain_text(heading)


def test_a_reversed_entry_leaves_today_s_counts_too(app):
    """A charge and its reversal: 消费 ¥0.00 and 0 笔 (amounts and counts both net)."""
    shop = make_shop(app)
    card = shop.open_card(amount=10000)
    sale = shop.do(lambda: cards.consume(shop.operator, card, key(), 2500)).record_id
    shop.do(lambda: cards.reverse(shop.admin, sale, key(), "收错"))
    today = shop.do(workbench.today)
    assert (today.consume, today.consumptions) == (0, 0)
    assert (today.recharge, today.recharges) == (10000, 1)
