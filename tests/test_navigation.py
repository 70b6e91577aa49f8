"""Navigation like the back offices staff know (issue 19.3): the sidebar in four groups with
icons, exactly one item active on every page, a breadcrumb on inner pages, error pages inside
the layout with a way back, and a form's error shown once, at its field."""
import pytest
from playwright.sync_api import expect

from crm.web import menu
from tests.conftest import PASSWORD
from tests.test_browser import log_in


def test_every_page_belongs_to_one_menu_item(app):
    """Every page that draws the layout (a GET route, or a POST that re-draws its form) has its
    item; the groups are the four staff know."""
    assert [group for group, _ in menu.GROUPS] == ["收银", "会员", "报表", "系统"]
    outside = {"auth.login", "auth.setup", "auth.logout", "healthz", "static"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.endpoint in outside or \
                rule.rule.endswith((".xlsx", ".pdf", "/download")):  # files, not pages
            continue
        group, item = menu.current(rule.endpoint)
        assert item is not None, rule.endpoint
    assert menu.current("cards.consume")[1].label == "消费收银"
    assert menu.current("cards.detail")[1].label == "客户管理"
    assert menu.current("reports.statement")[1].label == "对账查询"
    assert menu.current("nothing.here") == (None, None)


def test_an_operator_sees_only_the_groups_and_items_they_may_use(app, client, make_user, auth):
    make_user("ann")
    auth.login("ann", PASSWORD)
    page = client.get("/").get_data(as_text=True)
    side = page.split('id="side-menu"')[1].split("</nav>")[0]
    for label in ("工作台", "消费收银", "客户管理", "对账查询", "修改密码"):
        assert label in side, label
    for label in ("系统用户", "备份恢复", "充值规则", "客户类型"):
        assert label not in side, label
    assert side.count('class="bi bi-') == side.count("nav-link")


@pytest.mark.parametrize("url,status", [("/no-such-page", 404), ("/admin/users", 403)])
def test_error_pages_keep_the_layout_and_a_way_back(app, client, make_user, auth, url, status):
    make_user("ann")
    auth.login("ann", PASSWORD)
    resp = client.get(url)
    assert resp.status_code == status
    page = resp.get_data(as_text=True)
    assert 'id="side-menu"' in page and 'id="error-page"' in page
    assert "返回工作台" in page and 'data-action="back"' in page


def test_an_error_page_without_a_login_is_the_bare_page(app, client):
    resp = client.get("/static/no-such-file.css")
    assert resp.status_code == 404 and 'id="side-menu"' not in resp.get_data(as_text=True)


def test_a_field_error_is_shown_once_at_its_field(app, client, make_user, auth):
    """A bad amount: the message beside the amount field, not again above the form."""
    from tests.ledger_helpers import make_shop

    shop = make_shop(app)
    card_id = shop.open_card(amount=1000)
    auth.login("ann", PASSWORD)
    form = client.get(f"/cards/{card_id}/consume").get_data(as_text=True)
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    key = form.split('name="idempotency_key" value="')[1].split('"')[0]
    page = client.post(f"/cards/{card_id}/consume", data={
        "csrf_token": token, "idempotency_key": key, "amount": "12.345"}).get_data(as_text=True)
    assert page.count("金额最多两位小数") == 1
    assert 'id="form-error"' not in page and "invalid-feedback" in page


def test_the_back_button_of_an_error_page_goes_back_in_a_browser(app, page, make_user):
    """Clicked in chromium: 返回上一页 returns to the page the clerk came from."""
    make_user("ann")
    log_in(page, "ann")
    page.goto("/customers")
    page.goto("/customers/999999")
    expect(page.locator("#error-page")).to_be_visible()
    page.click("[data-action=back]")
    page.wait_for_url("**/customers")
    expect(page.locator("h1")).to_contain_text("客户")
