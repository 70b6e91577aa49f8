"""The main flows in a real browser (Debian's chromium through Playwright)."""
import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD


def log_in(page, username):
    """Log in through the login page, by keyboard (Enter submits the plain form)."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")


def test_first_run_setup_login_home_logout(page):
    """First-run setup → logout → login → the home page shows the user's name → logout."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.fill("#username", "boss")
    page.fill("#display_name", "王店长")
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#welcome-name")).to_have_text("王店长")
    page.click("text=退出")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".alert")).to_contain_text("您已安全退出")

    page.fill("#username", "boss")
    page.fill("#password", "wrong-password")
    page.press("#password", "Enter")
    expect(page.locator(".alert")).to_contain_text("用户名或密码错误")
    page.fill("#username", "boss")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")  # Enter submits a plain form
    expect(page.locator("#welcome-name")).to_have_text("王店长")
    expect(page.locator("#current-user")).to_contain_text("管理员")
    expect(page.locator("#side-menu")).to_contain_text("系统用户")
    page.click("text=退出")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))


def test_phone_width_menu(page, make_user):
    """At phone width the side menu folds behind a button and still opens."""
    make_user("ann", display_name="安安")
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, "ann")
    expect(page.locator("#welcome-name")).to_have_text("安安")
    expect(page.locator("#side-menu")).not_to_be_visible()
    page.click(".navbar-toggler")
    expect(page.locator("#side-menu")).to_be_visible()
    expect(page.locator("#side-menu")).not_to_contain_text("系统用户")  # operator


def test_customer_flow(page, make_user):
    """Admin: create a type → create a customer with it → find by the phone's last four digits
    with live search (no page reload) → edit → the history shows the change."""
    make_user("boss", role="admin", display_name="王店长")
    log_in(page, "boss")
    expect(page.locator("#welcome-name")).to_have_text("王店长")

    page.click("#side-menu >> text=客户类型")
    page.fill("#name", "VIP客户")
    page.fill("#discount", "95")
    page.click("#type-form button[type=submit]")
    expect(page.locator("#type-table")).to_contain_text("9.5 折")

    page.click("#side-menu >> text=客户管理")
    page.click("text=新建客户")
    page.fill("#name", "<b>李小龙</b>")
    page.select_option("#gender", "男")
    page.fill("#phone", "139 1234 5678")
    page.select_option("#type_id", label="VIP客户")
    page.fill("#birthday", "1990-05-01")
    page.press("#phone", "Enter")  # Enter submits
    expect(page.locator("#customer-name")).to_contain_text("<b>李小龙</b>")  # shown as text
    expect(page.locator("#customer-profile")).to_contain_text("13912345678")

    page.click("#side-menu >> text=客户管理")
    marker = page.evaluate("() => (window.__noReload = 1)")
    assert marker == 1
    page.fill("#q", "5678")
    expect(page.locator("#result-count")).to_have_text("共 1 位客户")
    expect(page.locator("#customer-table")).to_contain_text("<b>李小龙</b>")
    assert page.evaluate("() => window.__noReload") == 1  # live search did not reload the page
    expect(page).to_have_url(re.compile(r"q=5678"))
    page.fill("#q", "9999")
    expect(page.locator("#result-count")).to_have_text("共 0 位客户")
    page.fill("#q", "5678")
    page.click("#customer-table >> text=查看")

    page.click("text=编辑")
    page.fill("#name", "李小龙")
    page.fill("#phone", "13900001111")
    page.click("#customer-form button[type=submit]")
    expect(page.locator(".alert")).to_contain_text("已保存")
    expect(page.locator("#customer-history")).to_contain_text("13912345678")
    expect(page.locator("#customer-history")).to_contain_text("13900001111")
    expect(page.locator("#customer-name")).to_have_text("李小龙")


def test_flow_one_consume_by_keyboard_and_double_click(app, page):
    """Flow one: search by phone → the card → consume (keyboard only) → the result shows the
    new balance → receipt; a double-click on submit charges once."""
    from crm.models import ConsumeRecord
    from tests.ledger_helpers import make_shop, run

    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0, card_no="F-0001")
    log_in(page, "ann")
    page.click("#side-menu >> text=消费收银")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("8000")
    page.keyboard.press("Enter")
    expect(page.locator("#counter-results")).to_contain_text("F-0001")
    expect(page.locator(".card-balance")).to_have_text("¥100.00")
    page.click(".consume-link")
    expect(page.locator("#amount")).to_be_focused()
    expect(page.locator("#amount")).to_have_attribute("inputmode", "decimal")
    page.keyboard.type("12.50")
    page.keyboard.press("Tab")
    page.keyboard.type("剪发")
    page.keyboard.press("Enter")
    expect(page.locator("#new-balance")).to_have_text("¥87.50")
    expect(page.locator("#receipt")).to_contain_text("张三")
    expect(page.locator("#receipt")).to_contain_text("¥12.50")
    page.reload()  # a refresh of the result page moves no money
    expect(page.locator("#new-balance")).to_have_text("¥87.50")

    page.goto(f"/cards/{card_id}/consume?customer_id={shop.customer_id}")
    page.fill("#amount", "20")
    page.dblclick("#consume-form button[type=submit]")
    expect(page.locator("#new-balance")).to_have_text("¥67.50")
    assert shop.card(card_id).money == 6750
    assert run(app, lambda: ConsumeRecord.select().count()) == 2
    page.emulate_media(media="print")  # what the receipt printer gets: the receipt alone
    expect(page.locator("#receipt")).to_be_visible()
    for hidden in (".navbar", "#side-menu", "#consume-result", "[data-action=print]"):
        expect(page.locator(hidden).first).to_be_hidden()


def test_flow_two_statement_and_exports(app, page, tmp_path):
    """Flow two: find the customer → the statement for a period → list and totals match the
    entries made → export both files."""

    import openpyxl

    from crm.services import cards
    from tests.ledger_helpers import key, make_shop

    shop = make_shop(app)
    card_id = shop.open_card(amount=20000, bonus=2000, card_no="B-0001")
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 3550, remark="美甲"))
    log_in(page, "ann")
    page.click("#side-menu >> text=对账查询")
    page.fill("#q", "张三")
    page.press("#q", "Enter")
    page.click("#statement-results >> text=张三")
    expect(page.locator("#statement-customer")).to_have_text("张三")
    page.click("text=今天")
    rows = page.locator("#statement-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text("美甲")
    expect(page.locator("[data-total=recharge]")).to_have_text("¥200.00")
    expect(page.locator("[data-total=consume]")).to_have_text("-¥35.50")
    expect(page.locator("[data-total=closing_balance]")).to_have_text("¥184.50")
    with page.expect_download() as download:
        page.click("#export-xlsx")
    path = tmp_path / "s.xlsx"
    download.value.save_as(path)
    values = [r for r in openpyxl.load_workbook(path).active.iter_rows(values_only=True)]
    assert any(r[0] == "期末余额" and float(r[3]) == 184.5 for r in values if r)
    pdf = page.request.get(page.locator("#export-pdf").get_attribute("href"))
    assert pdf.status == 200 and pdf.body()[:4] == b"%PDF"


def test_restore_page(app, page):
    """The restore page: pick a backup, type the confirmation, restore, see the restored data."""
    from crm.models import Card
    from crm.services import backups
    from tests.ledger_helpers import make_shop, run

    shop = make_shop(app)
    shop.open_card(amount=8800, bonus=0, card_no="KEEP-1")
    run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "我的小店", None))
    shop.open_card(amount=100, bonus=0, card_no="GONE-1")
    log_in(page, "boss")
    page.click("#side-menu >> text=备份恢复")
    row = page.locator("#backup-table tbody tr").first
    expect(row).to_contain_text("已核对")
    row.locator("input[name=confirm]").fill("我的小店")
    row.locator("button[type=submit]").click()
    expect(page.locator(".alert")).to_contain_text("已恢复")
    page.fill("#username", "boss")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.goto("/consume?q=8000")
    expect(page.locator("#counter-results")).to_contain_text("KEEP-1")
    expect(page.locator("#counter-results")).not_to_contain_text("GONE-1")
    assert run(app, lambda: Card.select().where(Card.card_no == "GONE-1").count()) == 0


def test_restore_page_asks_before_an_unsigned_old_backup(app, page):
    """An old backup without a signature (made before backups were signed) is marked 未签名; its
    restore form needs the 确认恢复未签名的旧备份 box ticked (the browser will not send it
    otherwise), then it restores."""
    import json
    import zipfile
    from pathlib import Path

    from crm.models import Card
    from crm.services import backups
    from tests.ledger_helpers import make_shop, run

    shop = make_shop(app)
    shop.open_card(amount=8800, bonus=0, card_no="OLD-1")
    made = run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "我的小店", None))
    path = Path(app.config["BACKUP_DIR"]) / made["name"]
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    del manifest["signature"]
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    shop.open_card(amount=100, bonus=0, card_no="NEW-1")
    log_in(page, "boss")
    page.click("#side-menu >> text=备份恢复")
    row = page.locator("#backup-table tbody tr").first
    expect(row.locator(".unsigned-badge")).to_have_text("未签名")
    row.locator("input[name=confirm]").fill("我的小店")
    row.locator("button[type=submit]").click()
    expect(row.locator("input[name=accept_unsigned]")).to_be_visible()
    assert run(app, lambda: Card.select().where(Card.card_no == "NEW-1").count()) == 1
    row.locator("input[name=accept_unsigned]").check()
    row.locator("button[type=submit]").click()
    expect(page.locator(".alert")).to_contain_text("已恢复")
    assert run(app, lambda: Card.select().where(Card.card_no == "NEW-1").count()) == 0


# The ids of forms with several submit buttons (on any page) that a browser test clicks through:
# status-form by test_card_status_buttons_send_their_action.
CLICKED_FORMS = {"status-form"}
SEVERAL_SUBMITS = """() => [...document.forms].filter(f => f.querySelectorAll(
    'button:not([type=button]):not([type=reset]), input[type=submit], input[type=image]'
).length > 1).map(f => f.id || f.getAttribute('action'))"""


def _every_page(app, page):
    """Open every page a person can open (GET routes that answer HTML), as the admin, with real
    ids; yields each URL once it has loaded (200)."""
    from werkzeug.routing import IntegerConverter

    from tests.ledger_helpers import furnished_shop

    _, ids = furnished_shop(app)
    ids.update(token_id=1, rule_id=1, chart="daily", name="x")
    log_in(page, "boss")
    expect(page.locator("#side-menu")).to_be_attached()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        path = rule.rule
        if ("GET" not in rule.methods or path.startswith(("/api/", "/static", "/healthz"))
                or path.endswith((".xlsx", ".pdf", "/download")) or path in ("/login", "/setup")):
            continue
        assert all(isinstance(rule._converters[a], IntegerConverter) for a in rule.arguments), path
        values = {a: ids[a] for a in rule.arguments}
        if rule.endpoint == "cards.recharge_receipt":
            values["record_id"] = ids["recharge_record_id"]
        url = rule.build(values, append_unknown=False)[1]
        response = page.goto(url)
        page.wait_for_load_state("networkidle")
        assert response.status == 200, (url, response.status)
        yield url


@pytest.mark.backends("sqlite")  # the policy and the pages do not depend on the database
def test_every_page_loads_under_the_csp_without_console_errors(app, page):
    """Every page loads without a console error, so the CSP holds everywhere (a blocked inline
    script or style is a console error, which the `page` fixture turns into a failure). The
    forms with several submit buttons found on the way are exactly those a click test covers.
    Each page marks exactly one sidebar item active, the one its breadcrumb names (issue 19.3)."""
    visited, several = [], set()
    for url in _every_page(app, page):
        visited.append(url)
        several.update(page.evaluate(SEVERAL_SUBMITS))
        active = page.locator("#side-menu .nav-link.active")
        assert active.count() == 1, (url, active.all_inner_texts())
        assert "<" not in page.title() and page.title().endswith("· 客户关系管理系统"), url
        if url != "/":
            assert page.locator("#breadcrumb .breadcrumb-item").nth(2).inner_text() == \
                active.inner_text().strip(), url
    assert len(visited) >= 25, visited
    # A form whose buttons send different values needs a browser test that clicks each one.
    assert several == CLICKED_FORMS, several


PHONE = {"width": 390, "height": 844}
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("body *")].filter(el => {
    if (el.closest(".table-responsive") || el.closest(".offcanvas-lg")) return false;
    const box = el.getBoundingClientRect();
    // Content wider than its box (a long path) that reaches past the screen's edge.
    const spills = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 &&
      getComputedStyle(el).overflowX === "visible" && box.left + el.scrollWidth > width + 1;
    return box.width > 0 && (box.right > width + 1 || spills);
  }).map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + el.className);
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
}"""


@pytest.mark.backends("sqlite")
def test_every_page_fits_a_phone(app, page):
    """At 390 px (a phone), no page is wider than the screen: wide tables scroll inside their
    own box (.table-responsive), nothing else sticks out (issue 19.4)."""
    page.set_viewport_size(PHONE)
    for url in _every_page(app, page):
        found = page.evaluate(OVERFLOW)
        assert found["scroll"] <= found["width"] and not found["wide"], (url, found)


def test_card_status_buttons_send_their_action(app, page):
    """Every button of the card page's status form, clicked in a real browser, does what it
    says (冻结, 解冻, 挂失 from active and from frozen, 解除挂失): the clicked button's name and value
    reach the server although the form guards against a second submit. A second click on the
    same submit sends nothing more (one audit row per click)."""
    from crm.models import AuditLog
    from tests.ledger_helpers import make_shop, run

    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0, card_no="BTN-0001")
    log_in(page, "ann")
    expect(page.locator("#welcome-name")).to_be_visible()
    page.goto(f"/cards/{card_id}")
    steps = [("冻结", "frozen", "冻结"), ("解冻", "active", "正常"), ("挂失", "lost", "挂失"),
             ("解除挂失", "active", "正常"), ("冻结", "frozen", "冻结"), ("挂失", "lost", "挂失")]
    for label, status, shown in steps:
        form = page.locator("#status-form")
        form.locator("input[name=reason]").fill(f"测试{label}")
        button = form.get_by_role("button", name=label, exact=True)
        button.dblclick() if status == "frozen" else button.click()  # a double-click sends once
        expect(page.locator(".alert-success")).to_contain_text("卡状态已更新")
        expect(page.locator("#card-status")).to_have_text(shown)
        assert shop.card(card_id).status == status, (label, shop.card(card_id).status)
    actions = run(app, lambda: [a.action for a in AuditLog.select().where(
        AuditLog.action.in_(("card.freeze", "card.unfreeze", "card.report_lost"))
        & (AuditLog.object_id == str(card_id))).order_by(AuditLog.id)])
    assert actions == ["card.freeze", "card.unfreeze", "card.report_lost", "card.unfreeze",
                       "card.freeze", "card.report_lost"]
