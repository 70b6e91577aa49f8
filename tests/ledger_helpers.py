"""Helpers for the money tests: a shop with staff, a customer and cards; keys; invariants."""
import importlib.util
import uuid
from dataclasses import dataclass

from crm.db import MIGRATIONS_DIR
from crm.models import Card, CardRecord, ConsumeRecord
from crm.services import SYSTEM, Actor, cards, customer_types, customers, ledger
from crm.services import users as user_service
from tests.conftest import PASSWORD


def key():
    """A fresh idempotency key."""
    return uuid.uuid4().hex


def run(app, fn):
    """Run fn inside the app with a database connection."""
    with app.app_context(), app.extensions["crm_db"].connection_context():
        return fn()


@dataclass
class Shop:
    """Staff and a customer, ready for money."""

    app: object
    operator: Actor
    admin: Actor
    customer_id: int

    def do(self, fn):
        """Run fn in the app with a connection."""
        return run(self.app, fn)

    def open_card(self, amount=None, bonus=0, customer_id=None, **kwargs):
        """Open a card (optionally with money); returns the card id."""
        return self.do(lambda: cards.open_card(self.operator, customer_id or self.customer_id,
                                               key(), amount=amount, bonus=bonus,
                                               **kwargs)).card_id

    def card(self, card_id):
        """The card as stored now."""
        return self.do(lambda: Card.get_by_id(card_id))

    def counts(self):
        """Row counts and balances: what "nothing changed" compares."""
        return self.do(lambda: (CardRecord.select().count(), ConsumeRecord.select().count(),
                                [(c.id, c.status, c.money, c.paid_money, c.bonus_money)
                                 for c in Card.select().order_by(Card.id)]))

    def verify(self):
        """The ledger verification report."""
        return self.do(ledger.verify)


def make_shop(app, discount=None):
    """A shop with an operator, an admin and one customer (of a type with `discount`)."""

    def setup():
        operator = user_service.create_user(SYSTEM, "ann", PASSWORD, display_name="安安")
        admin = user_service.create_user(SYSTEM, "boss", PASSWORD, role="admin")
        type_id = None
        if discount:
            type_id = customer_types.create_type(SYSTEM, {"name": "VIP客户",
                                                          "discount": discount}).id
        customer = customers.create_customer(SYSTEM, {"name": "张三", "phone": "13800138000",
                                                      "type_id": type_id})
        return Shop(app, Actor(operator, "127.0.0.1"), Actor(admin, "127.0.0.1"), customer.id)

    return run(app, setup)


def furnished_shop(app, amount=10000):
    """make_shop plus a card holding `amount`, a customer type and one consumption on the card:
    returns the shop and an id for each route argument (customer, card, type, record, user;
    recharge_record_id: the card's first recharge, for the 充值凭证)."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=amount, bonus=0)

    def more():
        ctype = customer_types.create_type(shop.admin, {"name": "普通客户"})
        record = cards.consume(shop.operator, card_id, key(), 100)
        recharged = CardRecord.get((CardRecord.card == card_id)
                                   & (CardRecord.business_type == "recharge"))
        return {"customer_id": shop.customer_id, "card_id": card_id, "type_id": ctype.id,
                "record_id": record.record_id, "user_id": shop.operator.user.id,
                "recharge_record_id": recharged.id}

    return shop, run(app, more)


def _migration(name):
    spec = importlib.util.spec_from_file_location(name, MIGRATIONS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def guard_sql(database, table, event):
    """The migrations' own CREATE TRIGGER statement for an append-only guard."""
    if event == "DELETE":
        return _migration("0006_restore_mode")._delete_guard(database, table)
    return _migration("0001_initial")._guard_sql(database, table, event)
