"""Demo data: sealed chains and balances that verify, consume records, numbers that go on."""
import datetime

from peewee import fn

from crm.models import Card, CardRecord, ConsumeRecord, Customer
from crm.services import customers, demo, ledger
from tests.ledger_helpers import make_shop


def test_seed_bulk_makes_a_verifiable_ledger(app, clock):
    """100 customers, 3,000 entries (one customer with 800) over the year up to now by the app's
    clock: every chain verifies, balances are the sums of entries, consume records match
    (reversals included), and normal work carries on after it."""
    shop = make_shop(app)

    def seed():
        return demo.seed_bulk(app.extensions["crm_db"], shop.operator.user, customers=100,
                              entries=3000, heavy=(800,))

    assert shop.do(seed) == 3000
    report = shop.verify()
    assert report.ok, report.problems[:3]
    assert report.entries_checked == 3000 and report.cards_checked == 100
    first, last = shop.do(lambda: CardRecord.select(fn.MIN(CardRecord.created_at),
                                                    fn.MAX(CardRecord.created_at)).tuples().get())
    assert clock.now() - datetime.timedelta(days=367) < first <= last <= clock.now()
    heavy = shop.do(lambda: Card.select().order_by(Card.id).first())
    assert heavy.entry_count == 800
    sales = shop.do(lambda: ConsumeRecord.select().count())
    consumes = shop.do(lambda: CardRecord.select().where(
        CardRecord.business_type.in_(("consume", "reversal"))).count())
    reversals = shop.do(lambda: CardRecord.select().where(CardRecord.reverses.is_null(False))
                        .count())
    assert sales == consumes > 0 and reversals > 0  # some sales were undone (冲正)
    assert shop.do(lambda: Card.select().where(Card.money < 0).count()) == 0
    created = shop.do(lambda: customers.create_customer(
        shop.operator, {"name": "新客", "phone": "18899990000"}))
    assert created.customer_no == "000102"  # numbers go on after the demo's
    assert shop.do(lambda: Customer.select().count()) == 102
    assert shop.do(lambda: ledger.verify()).ok


def test_seed_demo_command_refuses_real_data(app, runner, make_user):
    """`crm seed-demo` fills an empty shop and refuses one that has customers (unless --force)."""
    make_user("boss", role="admin")
    result = runner.invoke(args=["seed-demo", "--customers", "20", "--entries", "100"])
    assert result.exit_code == 0, result.output
    assert "已生成 20 位客户、100 笔流水" in result.output
    result = runner.invoke(args=["seed-demo", "--customers", "5", "--entries", "10"])
    assert result.exit_code == 1 and "已经有客户数据" in result.output
    result = runner.invoke(args=["seed-demo", "--customers", "5", "--entries", "10", "--force"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["verify"])
    assert result.exit_code == 0 and "全部正确" in result.output


def test_generator_thread_hands_on_errors_and_stops_when_the_inserts_fail():
    """The rows made ahead in a thread: an error while making them reaches the caller; an error
    while inserting stops the thread (nothing left running, nothing hangs)."""
    import threading

    import pytest

    def broken():
        yield 1
        raise ValueError("坏数据")

    with pytest.raises(ValueError, match="坏数据"):
        list(demo._ahead(broken()))

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    with pytest.raises(RuntimeError):
        for item in demo._ahead(endless(), depth=2):
            if item == 3:
                raise RuntimeError("insert failed")
    assert not [t for t in threading.enumerate() if t.name == "demo-generator"]
    assert len(made) <= 3 + 2 + 2  # it stopped a few batches ahead at most
