"""Find by card number everywhere (issue 19.1): the counter, the customer list and the statement
finder take a card number as well as a name, phone, last four digits or customer number; a card
number typed whole (or scanned: the reader types it and presses Enter) at the counter opens that
card's consumption form. Card numbers are pieces of the search index, kept by every writer of a
card under the customer's row lock, as phones and names are."""
import re
import threading

import pytest
from playwright.sync_api import expect

from crm import db as crm_db
from crm.models import Card, Customer
from crm.search_index import CustomerGram
from crm.services import backups, cards, customer_import, customers
from tests.conftest import PASSWORD
from tests.ledger_helpers import key, make_shop
from tests.test_browser import log_in
from tests.test_customer_import import sheet_bytes
from tests.test_search_index import _expected_index, _found, _index_rows, shop_before


def _second_customer(shop, name="李四", phone="13900139000"):
    return shop.do(lambda: customers.create_customer(shop.operator, {"name": name,
                                                                     "phone": phone}).id)


def test_a_card_number_finds_its_holder_in_every_search(app, client, auth):
    """Whole, partial (3+ characters) and in either case: the service, the customer list, the
    statement finder and the counter's list all find the card's holder, and only them."""
    shop = make_shop(app)
    other = _second_customer(shop)
    shop.open_card(card_no="VIP-Card-7781")
    shop.open_card(customer_id=other, card_no="55550001")
    for q in ("VIP-Card-7781", "vip-card-7781", "7781", "card-77", "CARD"):
        assert _found(shop, q) == [shop.customer_id], q
    assert _found(shop, "55550001") == _found(shop, "5555") == [other]
    assert _found(shop, "99999999") == []
    auth.login("ann", PASSWORD)
    for url in ("/customers?q=card-77", "/statements?q=card-77", "/consume?q=card-77"):
        page = client.get(url).get_data(as_text=True)
        assert "张三" in page and "李四" not in page, url


def test_a_whole_card_number_at_the_counter_opens_its_consumption_form(app, client, auth):
    """The exact number (as a scanner types it) goes to the card's form; a frozen card's form
    shows its state and no enabled 确认消费 button; an unknown number is a search as before."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=5000, card_no="88001234")
    auth.login("ann", PASSWORD)
    resp = client.get("/consume?q=88001234")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(
        f"/cards/{card_id}/consume?customer_id={shop.customer_id}")
    form = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "确认消费" in form and "disabled" not in form.split("确认消费")[0].rsplit("<button", 1)[1]
    shop.do(lambda: cards.change_status(shop.operator, card_id, "freeze", "客人要求"))
    frozen = client.get(client.get("/consume?q=88001234").headers["Location"]).get_data(as_text=True)
    assert "该卡状态为“冻结”" in frozen
    assert "disabled" in frozen.split("确认消费")[0].rsplit("<button", 1)[1]
    assert client.get("/consume?q=8800123").status_code == 200  # a part lists the matches


def test_scanning_a_card_at_the_counter_in_a_browser(app, page):
    """In chromium: a scan (the number typed, then Enter) opens the consumption form, ready for
    the amount; a partial number lists the holder with the card."""
    shop = make_shop(app)
    shop.open_card(amount=5000, card_no="66001234")
    log_in(page, "ann")
    page.click("#side-menu >> text=消费收银")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("66001234")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/cards/\d+/consume\?customer_id=\d+$"))
    expect(page.locator("#amount")).to_be_focused()
    expect(page.locator("#consume-form button[type=submit]")).to_be_enabled()
    page.goto("/consume")
    page.fill("#q", "6600")
    page.press("#q", "Enter")
    expect(page.locator("#counter-results")).to_contain_text("66001234")
    expect(page.locator("#counter-results")).to_contain_text("张三")


def test_cards_opened_while_the_phone_is_edited_keep_the_index_right(app):
    """A phone edit and a card opening for one customer at the same moment, 60 times, with card
    numbers that share pieces with the old phone (shops use the phone as the card number):
    afterwards every card number finds its holder and the index holds exactly the pieces of
    what every customer and card now has. An edit that re-indexed the phone without the cards'
    numbers dropped the pieces they share with the old phone; the customer's row lock (taken by
    both, and on MariaDB by the card's foreign key as well) keeps the two in order."""
    shop = make_shop(app)
    database = app.extensions["crm_db"]
    customer_id = shop.customer_id
    misses = []
    for trial in range(60):
        old_phone = shop.do(lambda: Customer.get_by_id(customer_id).phone)
        new_phone = f"137{trial:04d}{trial % 10}{trial % 10}00"
        number = f"{old_phone[:8]}{trial:03d}"  # shares the old phone's pieces
        barrier, errors = threading.Barrier(2), []

        def edit(barrier=barrier, errors=errors, new_phone=new_phone):
            try:
                with app.app_context(), database.connection_context():
                    barrier.wait(timeout=10)
                    customers.update_customer(shop.operator, customer_id, {"phone": new_phone})
            except Exception as error:  # noqa: BLE001 — collected, asserted below
                errors.append(repr(error))

        def open_card(barrier=barrier, errors=errors, number=number):
            try:
                with app.app_context(), database.connection_context():
                    barrier.wait(timeout=10)
                    cards.open_card(shop.operator, customer_id, key(), card_no=number)
            except Exception as error:  # noqa: BLE001 — collected, asserted below
                errors.append(repr(error))

        threads = [threading.Thread(target=edit), threading.Thread(target=open_card)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [], errors
        if customer_id not in _found(shop, number):
            misses.append(number)
    assert misses == [], f"{len(misses)} of 60 cards not found by their number: {misses[:5]}"
    assert _index_rows(shop) == _expected_index(shop)
    assert shop.do(lambda: Card.select().count()) == 60


def test_import_and_restore_index_card_numbers(app):
    """Cards arriving with an import are found by number; a restore re-indexes a customer whose
    card pieces were lost."""
    shop = make_shop(app)
    sheet = sheet_bytes([("孔令辉", "男", "13512340001", "", "", None, "", "K-00091", "10.00")],
                        header=("姓名", "性别", "电话", "地址", "客户类型", "生日", "备注", "卡号",
                                "期初余额"))
    done = shop.do(lambda: customer_import.run(shop.admin, sheet, filename="名单.xlsx",
                                               create_types=True))
    assert done.cards == 1
    kong = shop.do(lambda: Customer.get(Customer.name == "孔令辉").id)
    assert _found(shop, "k-00091") == [kong]
    folder = app.config["BACKUP_DIR"]
    info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    shop.do(lambda: CustomerGram.delete().where((CustomerGram.customer_id == kong)
                                                & (CustomerGram.gram == "091")).execute())
    assert _found(shop, "k-00091") == []
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert _found(shop, "k-00091") == [kong]
    assert _index_rows(shop) == _expected_index(shop)


@pytest.mark.backends("sqlite")
def test_the_upgrade_indexes_the_cards_already_there(scratch):
    """A shop upgraded from before card numbers were searchable finds its cards at once."""
    database = crm_db.database_from_url(scratch.url("sqlite"))
    try:
        shop_before(database, "0012_login_pending",
                    "INSERT INTO t_card (card_no, customer_id, status, money, paid_money, "
                    "bonus_money, entry_count, chain_head, remark, owner_seal, created_at, "
                    "updated_at) VALUES ('OLD-4321', 1, 'active', 0, 0, 0, 0, '', '', '', "
                    "'2025-01-01 10:00:00', '2025-01-01 10:00:00')")
        assert crm_db.migrate(database)[0] == "0013_card_numbers_searchable"
        with database.connection_context(), database.bind_ctx([Customer, CustomerGram, Card]):
            for q in ("OLD-4321", "old-43", "4321"):
                assert [c.name for c in Customer.search(q)] == ["老顾客"], q
    finally:
        crm_db.close_all(database)
