"""Tables (issue 19.4): one pager everywhere (共 N 条, 上一页 / 下一页, the pages around this one,
a jump to any page), click-to-sort on the customer list's sortable columns, each customer's
total balance and card count in the list."""
import re

import pytest
from playwright.sync_api import expect

from crm.services import cards, customers, page_window
from tests.conftest import PASSWORD
from tests.ledger_helpers import key, make_shop
from tests.test_browser import log_in


def test_the_pager_shows_the_first_last_and_nearby_pages():
    assert page_window(1, 1) == [1]
    assert page_window(1, 3) == [1, 2, 3]
    assert page_window(5, 20) == [1, None, 3, 4, 5, 6, 7, None, 20]
    assert page_window(20, 20) == [1, None, 18, 19, 20]
    assert page_window(3, 6) == [1, 2, 3, 4, 5, 6]


def _many_customers(shop, count):
    def make():
        for n in range(count):
            customers.create_customer(shop.operator, {"name": f"客户{n:03d}",
                                                      "phone": f"1390000{n:04d}"})
    shop.do(make)


def test_the_customer_list_pages_with_count_neighbours_and_a_jump(app, client, auth):
    shop = make_shop(app)
    _many_customers(shop, 44)  # 45 with 张三: three pages of 20
    auth.login("ann", PASSWORD)
    page = client.get("/customers?page=2&q=1").get_data(as_text=True)
    assert "共 45 位客户，第 2 / 3 页" in page
    pager = page.split('id="customer-pages"')[1].split("</nav>")[0]
    links = dict((label, href) for href, label in
                 re.findall(r'<a class="page-link" href="([^"]+)"[^>]*>([^<]+)</a>', pager))
    assert sorted(links["上一页"].split("?")[1].split("&amp;")) == ["page=1", "q=1"]
    assert sorted(links["下一页"].split("?")[1].split("&amp;")) == ["page=3", "q=1"]
    assert 'aria-current="page"><span class="page-link">2</span>' in pager
    assert '<input type="hidden" name="q" value="1">' in pager and 'max="3"' in pager
    last = client.get("/customers?page=3").get_data(as_text=True)
    assert '<span class="page-link">下一页</span>' in last  # disabled on the last page


def test_the_customer_list_shows_each_customers_balance_and_cards(app, client, auth):
    shop = make_shop(app)
    shop.open_card(amount=10000)
    second = shop.open_card(amount=5050)
    shop.do(lambda: cards.consume(shop.operator, second, key(), 50))
    auth.login("ann", PASSWORD)
    page = client.get("/customers").get_data(as_text=True)
    row = page.split("张三")[1].split("</tr>")[0]
    assert '<td class="text-end customer-balance">¥150.00</td><td class="text-end">2</td>' in row


def test_card_records_and_the_audit_log_page_too(app, client, auth):
    shop = make_shop(app)
    _many_customers(shop, 50)  # each audited: more than one page of 50
    card_id = shop.open_card(amount=100000)
    for _ in range(cards.RECORDS_PER_PAGE + 2):
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))
    auth.login("boss", PASSWORD)
    page = client.get(f"/cards/{card_id}").get_data(as_text=True)
    pager = page.split('id="records-pages"')[1].split("</nav>")[0]
    assert "下一页" in pager and f"/cards/{card_id}?page=2" in pager
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert 'id="audit-pages"' in audit and "下一页" in audit.split('id="audit-pages"')[1]


@pytest.mark.backends("sqlite")
def test_click_to_sort_and_jump_to_a_page_in_a_browser(app, page):
    """In chromium: clicking 姓名 sorts by name (the first row is the first name); typing a page
    number into the jump box and pressing 确定 opens that page."""
    shop = make_shop(app)
    _many_customers(shop, 44)
    log_in(page, "ann")
    page.goto("/customers")
    page.click("#customer-table [data-sort=name]")
    expect(page).to_have_url(re.compile(r"sort=name"))
    expect(page.locator("#customer-table tbody tr").first).to_contain_text("客户000")
    expect(page.locator("#sort")).to_have_value("name")  # the form shows the list's order
    expect(page.locator("#sort")).to_have_count(1)
    page.fill("#customer-pages-page", "3")
    page.click("#customer-pages button[type=submit]")
    expect(page).to_have_url(re.compile(r"page=3"))
    expect(page.locator("#result-count")).to_contain_text("第 3 / 3 页")
    page.click("#customer-pages >> text=上一页")
    expect(page.locator("#result-count")).to_contain_text("第 2 / 3 页")


@pytest.mark.parametrize("url", ["/customers?_method=PUT&q=1", "/admin/audit?_external=1",
                                 "/closing?_anchor=x", "/cards/1?_scheme=javascript&page=2"])
def test_query_names_url_for_takes_as_its_own_are_left_out(app, client, auth, url):
    """?_method=PUT made every pager link a 500 (url_for's own argument); ?_external=1 made
    every link absolute: names starting with _ are not carried into links."""
    shop = make_shop(app)
    shop.open_card(amount=1000)
    auth.login("boss", PASSWORD)
    resp = client.get(url)
    assert resp.status_code == 200, url
    page = resp.get_data(as_text=True)
    assert not re.search(r"[?&;]_(method|external|anchor|scheme)=", page)
    assert "http://localhost" not in page
