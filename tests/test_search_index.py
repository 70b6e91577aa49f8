"""The customer search index (t_customer_gram): the same answers as reading every customer, and
kept by every path that writes a name, phone or number (form, edit, import, demo data, restore,
the migration that introduced it)."""
import random

import pytest

from crm import db as crm_db
from crm.models import Card, Customer
from crm.search_index import CustomerGram
from crm.services import SYSTEM, backups, customer_import, customers, demo
from tests.ledger_helpers import make_shop
from tests.test_customer_import import sheet_bytes

NAMES = ("张三", "李小四", "王五", "欧阳修文", "Wang Lei", "ANNA", "li", "王", "张伟", "张伟明",
         "100%纯", "a_b", "陈 晨", "Ｌｅｅ")


def _found(shop, q):
    rows, total = shop.do(lambda: customers.search(q, archived=None, per_page=500))
    assert total == len(rows)
    return sorted(c.id for c in rows)


def _scanned(shop, q):
    """What reading every customer's text gives (the search before the index)."""
    q = q.strip().lower().replace("|", "")
    return sorted(c.id for c in shop.do(lambda: list(Customer.select()))
                  if q in c.search_text)


def _index_rows(shop):
    return shop.do(lambda: sorted(CustomerGram.select().tuples()))


def _expected_index(shop):
    """The pieces of every customer's name, phone and number and of their cards' numbers."""
    def read():
        held = {}
        for card in Card.select():
            held.setdefault(card.customer_id, []).append(card.card_no)
        return [(c, held.get(c.id, [])) for c in Customer.select()]

    return sorted({(g, c.id) for c, numbers in shop.do(read)
                   for g in CustomerGram.grams(c.name, c.phone, c.customer_no, *numbers)})


def test_pieces_of_a_query():
    """Three-character pieces from the end (a phone's tail), ideographs alone, else a scan."""
    assert CustomerGram.pieces("5678") == ["678", "567"]
    assert CustomerGram.pieces("13912345678") == ["678", "567", "456"]
    assert CustomerGram.pieces("王") == ["王"] and CustomerGram.pieces("张伟") == ["张伟"]
    assert CustomerGram.pieces("li") is None and CustomerGram.pieces("5") is None
    assert CustomerGram.grams("王小明") == {"王", "小", "明", "王小", "小明", "王小明"}
    assert CustomerGram.grams("13800") == {"138", "380", "800"}


def test_index_answers_as_a_full_read_does(app):
    """Names in Chinese and Latin letters, digits, wildcard characters, archived customers: for
    every piece of every field and for strings nobody has, the index finds exactly the
    customers that reading every row finds."""
    shop = make_shop(app)
    rng = random.Random(5)
    for number, name in enumerate(NAMES):
        made = shop.do(lambda n=name, i=number: customers.create_customer(
            SYSTEM, {"name": n, "phone": f"13{rng.randrange(10**9):09d}"}))
        if number % 4 == 0:
            shop.do(lambda c=made: customers.set_archived(SYSTEM, c.id, True))
    everyone = shop.do(lambda: list(Customer.select()))
    queries = {"不存在", "%", "_", "|", "a|b", "000", "13", "  王  ", "ＬＥＥ"}
    for c in everyone:
        for text in (c.name, c.phone, c.customer_no):
            text = text.lower()
            for size in (1, 2, 3, 4, 6):
                for start in range(0, max(1, len(text) - size + 1), 2):
                    queries.add(text[start:start + size])
    assert len(queries) > 150
    for q in sorted(queries):
        assert _found(shop, q) == _scanned(shop, q), q
    assert _found(shop, "王")  # an ideograph alone goes through the index and finds
    assert _index_rows(shop) == _expected_index(shop)


def test_edits_move_the_index_with_the_customer(app, client, make_user, auth):
    """After a change of name and phone through the form, the new text finds the customer and
    the old one no longer does; the index holds exactly the current pieces."""
    shop = make_shop(app)
    made = shop.do(lambda: customers.create_customer(SYSTEM, {"name": "赵老六",
                                                              "phone": "13611112222"}))
    assert _found(shop, "老六") == _found(shop, "1112222") == [made.id]
    shop.do(lambda: customers.update_customer(SYSTEM, made.id, {"name": "钱小七",
                                                                "phone": "13733334444"}))
    assert _found(shop, "老六") == _found(shop, "1112222") == []
    assert _found(shop, "小七") == _found(shop, "3334444") == [made.id]
    assert _index_rows(shop) == _expected_index(shop)


def test_import_demo_and_restore_keep_the_index(app):
    """Customers that arrive in bulk (an Excel import, demo data) are found by the index; a
    restore rebuilds it to exactly the restored customers."""
    shop = make_shop(app)
    sheet = sheet_bytes([("孔令辉", "男", "13512340001", "", "", None, ""),
                         ("Zhang Yi", "女", "13512340002", "", "", None, "")])
    assert shop.do(lambda: customer_import.run(SYSTEM, sheet, filename="名单.xlsx").imported) == 2
    assert len(_found(shop, "令辉")) == len(_found(shop, "zhang y")) == 1
    folder = app.config["BACKUP_DIR"]
    info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    shop.do(lambda: demo.seed_bulk(app.extensions["crm_db"], shop.operator.user, customers=30,
                                   entries=60))
    seeded = shop.do(lambda: Customer.select().order_by(Customer.id.desc()).first())
    assert seeded.id in _found(shop, seeded.phone[-4:])
    assert seeded.id in _found(shop, seeded.name)
    assert _index_rows(shop) == _expected_index(shop)
    kong = _found(shop, "令辉")[0]
    shop.do(lambda: customers.update_customer(SYSTEM, kong, {"name": "孔德成"}))
    # The restore brings back the old name, drops the demo customers and keeps the rest.
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert _found(shop, seeded.phone[-4:]) == _scanned(shop, seeded.phone[-4:])
    assert _found(shop, "令辉") == [kong] and _found(shop, "德成") == []
    assert _index_rows(shop) == _expected_index(shop)
    # An index that had lost pieces (whatever the cause) is rebuilt whole by the next restore.
    shop.do(lambda: CustomerGram.delete().where(CustomerGram.customer_id == kong).execute())
    assert _found(shop, "令辉") == []
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert _found(shop, "令辉") == [kong]
    assert _index_rows(shop) == _expected_index(shop)
    # So is one whose pieces moved to another customer (the count alone would not tell).
    other = shop.customer_id
    moved = shop.do(lambda: CustomerGram.update(customer_id=other)
                    .where((CustomerGram.customer_id == kong) & (CustomerGram.gram == "令辉"))
                    .execute())
    assert moved == 1 and kong not in _found(shop, "令辉")
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert _found(shop, "令辉") == [kong]
    assert _index_rows(shop) == _expected_index(shop)


def shop_before(database, migration, *statements):
    """`database` migrated up to `migration` only, holding one customer (老顾客, 13800001234,
    000001) as that version stored it, plus `statements` run after it: a shop about to upgrade."""
    from playhouse.migrations import Runner

    runner = Runner(database, str(crm_db.MIGRATIONS_DIR), table_name=crm_db.SCHEMA_TABLE)
    with database.connection_context():
        runner.up(target=migration)
        database.execute_sql(
            "INSERT INTO t_customer (customer_no, name, gender, phone, address, remark, "
            "archived, created_at, updated_at, search_text) VALUES ('000001', '老顾客', '男', "
            "'13800001234', '', '', 0, '2025-01-01 10:00:00', '2025-01-01 10:00:00', "
            "'老顾客|13800001234|000001')")
        for statement in statements:
            database.execute_sql(statement)


@pytest.mark.backends("sqlite")
def test_migration_indexes_the_customers_already_there(scratch):
    """A shop upgraded from the version before the index: its customers are found at once."""
    database = crm_db.database_from_url(scratch.url("sqlite"))
    try:
        shop_before(database, "0007_fewer_indexes")
        assert crm_db.migrate(database)[0] == "0008_customer_grams"
        with database.connection_context(), database.bind_ctx([Customer, CustomerGram]):
            for q in ("顾客", "1234", "000001"):
                assert [c.name for c in Customer.search(q)] == ["老顾客"], q
    finally:
        crm_db.close_all(database)


def test_concurrent_edits_keep_the_search_index_right(app):
    """Two edits of one customer's phone (and name) at the same moment, 200 times: afterwards the
    customer is found by the phone it has, and by its last four digits, and the index holds
    exactly the pieces of what every customer now has."""
    import threading

    shop = make_shop(app)
    database = app.extensions["crm_db"]
    customer_id = shop.customer_id
    misses = 0
    for trial in range(200):
        phones = [f"139{trial:04d}{n}{n}{n}{n}" for n in (1, 2)]
        names = [f"张{trial}甲", f"李{trial}乙"]
        barrier, errors = threading.Barrier(2), []

        def edit(phone, name, barrier=barrier, errors=errors):
            try:
                with app.app_context(), database.connection_context():
                    barrier.wait(timeout=10)
                    customers.update_customer(shop.operator, customer_id,
                                              {"phone": phone, "name": name})
            except Exception as error:  # noqa: BLE001 — collected, asserted below
                errors.append(repr(error))

        threads = [threading.Thread(target=edit, args=pair) for pair in zip(phones, names,
                                                                             strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [], errors
        now = shop.do(lambda: Customer.get_by_id(customer_id))
        if customer_id not in _found(shop, now.phone) or customer_id not in _found(
                shop, now.phone[-4:]) or customer_id not in _found(shop, now.name):
            misses += 1
    assert misses == 0, f"{misses} of 200 edits left the customer unfindable"
    assert _index_rows(shop) == _expected_index(shop)
