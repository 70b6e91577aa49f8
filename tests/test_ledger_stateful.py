"""The money service against a plain-Python model of the cards, step by step (Hypothesis stateful
testing), on SQLite and MariaDB.

Each example gets a fresh customer (of a type with or without a discount) and tracks only that
customer's cards, so the examples share the test's database without deleting anything (the
ledger is append-only). The steps: open a card (with or without money), recharge (a bonus by
hand or by the recharge rules), consume (with the discount; with the right, another or no
customer), reverse any entry, freeze / report lost / unfreeze, close; the same key again (the
first answer, replayed, nothing moves); the same key for a changed request (409
idempotency_key_reused, nothing moves); bad amounts and unknown cards. The model predicts each
answer, refusals included (too little money, a frozen, lost or closed card, an entry already
reversed), and a refusal must leave every table as it was. Any money step may also have a failure
injected inside its transaction (after the balance UPDATE, at the seal, after the entry, the
parts, the consume record, the status change, the audit row or the key row): nothing may stay
behind, and the same request with the same key then succeeds. After every step the customer's
cards, entries, consume records and stored keys equal the model, every balance is the sum of its
entries and never negative, and the ledger verifies.

Replaying a failure: Hypothesis shrinks it (up to five minutes per backend: every try runs real
transactions), then prints the shortest failing program (every step, with what it drew) and
"You can reproduce this example by temporarily adding @reproduce_failure('<version>', b'...')".
Put that decorator above `class LedgerMachine` (the machine the test binds to the app inherits
it) and rerun: that example runs first and fails at once. The failing example is also kept in
.hypothesis/ and tried first on the next run. When Hypothesis cannot replay a failure reliably,
or stops shrinking after five minutes, it also prints the run's seed: rerun with
`python -m pytest tests/test_ledger_stateful.py --hypothesis-seed=N` (or `@seed(N)` above the
class). CRM_STATEFUL_EXAMPLES and CRM_STATEFUL_STEPS raise the bounds for a longer local run.
"""
import itertools
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from peewee import OperationalError, fn

from crm.errors import Conflict, NotFound, ValidationError
from crm.models import (
    AuditLog,
    Card,
    CardRecord,
    ConsumeRecord,
    Counter,
    Customer,
    IdempotencyKey,
)
from crm.services import SYSTEM, cards, customer_types, customers, ledger, recharge_rules
from tests.ledger_helpers import key, make_shop, run

SETTINGS = settings(
    max_examples=int(os.environ.get("CRM_STATEFUL_EXAMPLES", "25")),
    stateful_step_count=int(os.environ.get("CRM_STATEFUL_STEPS", "30")),
    deadline=None,
    print_blob=True,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

LIMIT = 5_000_000  # MAX_AMOUNT_FEN, the per-operation maximum
DISCOUNTS = (None, 95, 80)  # the customer type's percentage charged
RULES = ((10_000, 1_000), (15_000, 2_500))  # recharge rules: (from fen, bonus fen)
MISSING = 2_000_000_000  # an id no card or entry has
MAX_CARDS = 3  # per customer: few cards, so that steps meet on the same card
REVERSIBLE = ("recharge", "bonus", "consume", "opening")
TRANSITIONS = {"freeze": (("active",), "frozen"), "unfreeze": (("frozen", "lost"), "active"),
               "report_lost": (("active", "frozen"), "lost")}
MONEY_POINTS = ("move", "seal", "entry", "parts")
WRITTEN = (Card, CardRecord, ConsumeRecord, IdempotencyKey, AuditLog)

AMOUNTS = st.integers(1, 20_000)
OPENING = st.one_of(AMOUNTS, AMOUNTS, st.none())  # most cards are opened with money
BONUSES = st.sampled_from((None, 0)) | st.integers(1, 5_000)
METHODS = st.sampled_from(("cash", "wechat", "alipay", "card", "other"))
REMARKS = ("", "剪发", "会员日")
REASONS = ("客户要求", "收错了")
FAULT = st.sampled_from((False, False, False, True))  # one money step in four fails inside


class Fault(OperationalError):
    """The database error injected inside a money transaction."""


# Where a fault is raised: right after the first statement matching the pattern has run (so its
# change is inside the open transaction), or at "seal", when the first entry is sealed.
POINT_SQL = {
    "move": r"UPDATE t_card SET money = money \+",  # the conditional balance UPDATE
    "entry": r"INSERT INTO t_card_record\b",
    "parts": r"UPDATE t_card SET paid_money\b",  # the parts and the chain head
    "consume_record": r"INSERT INTO [`\"]?t_consume_record\b",
    "status": r"UPDATE [`\"]t_card[`\"] SET .*\bstatus\b",  # close, freeze, unfreeze
    "audit": r"INSERT INTO [`\"]?t_audit_log\b",
    "key": r"INSERT INTO [`\"]?t_idempotency_key\b",  # the transaction's last statement
}


@contextmanager
def injected(database, point):
    """Raise Fault once at `point` while inside; yields a probe counting the faults raised."""
    probe = SimpleNamespace(fired=0)
    if point == "seal":
        real_seal = ledger.seal

        def failing_seal(*args, **kwargs):
            probe.fired += 1
            raise Fault("injected at seal")

        ledger.seal = failing_seal
        try:
            yield probe
        finally:
            ledger.seal = real_seal
        return
    pattern = re.compile(POINT_SQL[point], re.IGNORECASE | re.DOTALL)
    real_execute = database.execute_sql

    def execute_sql(sql, params=None):
        cursor = real_execute(sql, params)
        if not probe.fired and pattern.match(sql.lstrip()):
            probe.fired += 1
            raise Fault(f"injected after {point}")
        return cursor

    database.execute_sql = execute_sql  # the proxy `db` and the ORM both call the instance's
    try:
        yield probe
    finally:
        del database.execute_sql


# --- the model ---------------------------------------------------------------------------------

@dataclass
class Entry:
    """A ledger entry as the model expects it."""

    id: int
    card_id: int
    kind: str
    paid_delta: int
    bonus_delta: int
    paid_after: int
    bonus_after: int
    request_id: str
    reverses: int | None = None
    reversed: bool = False


@dataclass
class ModelCard:
    """A card as the model expects it."""

    status: str = "active"
    paid: int = 0
    bonus: int = 0
    entries: list = field(default_factory=list)

    @property
    def money(self):
        return self.paid + self.bonus


@dataclass(frozen=True)
class Request:
    """A keyed money request: the service, its keyword arguments and its idempotency key."""

    op: str
    key: str
    args: tuple  # (name, value) pairs

    @property
    def kwargs(self):
        return dict(self.args)

    @property
    def what(self):
        """What the fingerprint covers: the same request ⇔ the same `what`."""
        return self.op, self.args

    def but(self, op=None, **changes):
        """The same key for another request."""
        return Request(op or self.op, self.key, tuple(sorted({**self.kwargs, **changes}.items())))


class Refused(NamedTuple):
    """The CrmError subclass and code the service must answer with."""

    error: type
    code: str


class Replay(NamedTuple):
    """The first answer given for the key, to come back again."""

    answer: dict


@dataclass
class Plan:
    """A request the model expects to succeed: its entries, the card's new status, the answer's
    fields and where in its transaction a fault can be injected."""

    card_id: int | None  # None: a card to be opened
    lines: list  # (business type, paid delta, bonus delta, reversed entry id)
    expect: dict
    points: tuple
    status: str | None = None
    consume: tuple | None = None  # the consume record: (original amount, discount, amount)


class Model:
    """Plain-Python cards of one customer, and the rules of crm.services.cards."""

    def __init__(self, customer_id, discount, consume_order):
        self.customer_id = customer_id
        self.discount = discount
        self.consume_order = consume_order
        self.cards = {}  # card id → ModelCard
        self.entries = {}  # entry id → Entry
        self.consumes = []  # (card, entry, original amount, discount, amount, balance after)
        self.answers = {}  # stored key → (what, first answer)

    def _bad(self, amount, optional=False):
        """The code of an amount's refusal, or None; a bonus may be None or 0."""
        if optional and amount in (None, 0):
            return None
        if amount <= 0:
            return "invalid_amount"
        return "amount_too_large" if amount > LIMIT else None

    def predict(self, req):
        """Refused, Replay or Plan: what the service must do with `req` now."""
        a = req.kwargs
        # Amounts are checked before the key is looked up; open checks them only with money.
        if req.op == "consume" or (req.op in ("open", "recharge") and a["amount"] is not None):
            code = self._bad(a["amount"]) or (req.op != "consume"
                                              and self._bad(a["bonus"], optional=True))
            if code:
                return Refused(ValidationError, code)
        if req.key in self.answers:
            what, answer = self.answers[req.key]
            return Replay(answer) if what == req.what else Refused(Conflict,
                                                                  "idempotency_key_reused")
        return getattr(self, f"_{req.op}")(req.key, **a)

    @staticmethod
    def _parts(paid, bonus, lines):
        for _, paid_delta, bonus_delta, _ in lines:
            paid, bonus = paid + paid_delta, bonus + bonus_delta
        return {"balance": paid + bonus, "paid_balance": paid, "bonus_balance": bonus}

    @staticmethod
    def _recharge_lines(amount, bonus):
        """A recharge and its bonus: by hand, or the best recharge rule reached when None."""
        given = max([b for least, b in RULES if least <= amount], default=0) if bonus is None \
            else bonus
        return given, [("recharge", amount, 0, None)] + ([("bonus", 0, given, None)] if given
                                                          else [])

    def _open(self, key, customer_id, card_no, amount, bonus, payment_method, remark):
        if amount is None:
            return Plan(None, [], {"record_id": None, "record_ids": [], "balance": 0,
                                   "paid_balance": 0, "bonus_balance": 0}, ("audit", "key"))
        given, lines = self._recharge_lines(amount, bonus)
        return Plan(None, lines, {**self._parts(0, 0, lines), "bonus": given},
                    ("audit", *MONEY_POINTS, "key"))

    def _recharge(self, key, card_id, amount, bonus, payment_method, remark):
        card = self.cards.get(card_id)
        if card is None:
            return Refused(NotFound, "card_not_found")
        if card.status != "active":
            return Refused(Conflict, "card_not_active")
        given, lines = self._recharge_lines(amount, bonus)
        return Plan(card_id, lines, {"card_id": card_id, **self._parts(card.paid, card.bonus, lines),
                                     "bonus": given}, (*MONEY_POINTS, "key"))

    def _consume(self, key, card_id, amount, remark, customer_id):
        card = self.cards.get(card_id)
        if card is None:
            return Refused(NotFound, "card_not_found")
        if customer_id is not None and customer_id != self.customer_id:
            return Refused(Conflict, "card_not_of_customer")
        charged = max(1, (amount * self.discount + 50) // 100) if self.discount else amount
        if card.status != "active":
            return Refused(Conflict, "card_not_active")
        if card.money < charged:
            return Refused(Conflict, "insufficient_balance")
        if self.consume_order == "bonus_first":
            from_bonus = min(card.bonus, charged)
            from_paid = charged - from_bonus
        else:
            from_paid = min(card.paid, charged)
            from_bonus = charged - from_paid
        lines = [("consume", -from_paid, -from_bonus, None)]
        return Plan(card_id, lines, {"card_id": card_id, **self._parts(card.paid, card.bonus, lines),
                                     "amount": charged, "original_amount": amount,
                                     "discount": self.discount},
                    (*MONEY_POINTS, "consume_record", "key"),
                    consume=(amount, self.discount, charged))

    def _reverse(self, key, record_id, reason):
        original = self.entries.get(record_id)
        if original is None:
            return Refused(NotFound, "record_not_found")
        if original.kind not in REVERSIBLE:
            return Refused(Conflict, "not_reversible")
        card_id, card = original.card_id, self.cards[original.card_id]
        partner_kind = "recharge" if original.kind == "bonus" else "bonus"
        partners = [e for e in card.entries if original.request_id and e.kind == partner_kind
                    and e.request_id == original.request_id]
        if original.kind == "bonus" and partners:
            return Refused(Conflict, "reverse_with_recharge")
        if original.reversed:
            return Refused(Conflict, "already_reversed")
        targets = [original] + [e for e in partners if original.kind == "recharge"
                                and not e.reversed]
        if card.status == "closed":
            return Refused(Conflict, "card_not_active")
        lines = [("reversal", -t.paid_delta, -t.bonus_delta, t.id) for t in targets]
        paid, bonus = card.paid, card.bonus
        if paid + bonus - sum(t.paid_delta + t.bonus_delta for t in targets) < 0:
            return Refused(Conflict, "insufficient_balance")
        for _, paid_delta, bonus_delta, _ in lines:  # each part, entry by entry
            paid, bonus = paid + paid_delta, bonus + bonus_delta
            if paid < 0 or bonus < 0:
                return Refused(Conflict, "insufficient_balance")
        consume = None
        points = (*MONEY_POINTS, "audit", "key")
        if original.kind == "consume":
            first = next(c for c in self.consumes if c[1] == original.id)
            consume = (-first[2], first[3], -first[4])
            points += ("consume_record",)
        return Plan(card_id, lines, {"card_id": card_id, **self._parts(card.paid, card.bonus, lines),
                                     "reversed_ids": [t.id for t in targets]},
                    points, consume=consume)

    def _close(self, key, card_id, reason, payment_method):
        card = self.cards.get(card_id)
        if card is None:
            return Refused(NotFound, "card_not_found")
        if card.status == "closed":  # closed by a close: the model makes no reissues
            return Refused(Conflict, "card_closed")
        lines = ([("refund", -card.paid, 0, None)] if card.paid else []) + \
            ([("bonus_void", 0, -card.bonus, None)] if card.bonus else [])
        return Plan(card_id, lines, {"card_id": card_id, "balance": 0, "refunded": card.paid,
                                     "bonus_voided": card.bonus},
                    (*(MONEY_POINTS if lines else ()), "status", "audit", "key"), status="closed")

    def predict_status(self, card_id, action):
        """Refused, or the card's new status."""
        card = self.cards.get(card_id)
        if card is None:
            return Refused(NotFound, "card_not_found")
        allowed, target = TRANSITIONS[action]
        return target if card.status in allowed else Refused(Conflict, "invalid_card_status")

    def commit(self, req, plan, answer):
        """Check the service's answer against the plan, then apply the plan."""
        assert answer["replayed"] is False
        first = {k: v for k, v in answer.items() if k != "replayed"}
        for name, value in plan.expect.items():
            assert answer[name] == value, (name, answer)
        ids = answer["record_ids"]
        assert len(ids) == len(plan.lines), answer
        if "record_id" in answer:
            assert answer["record_id"] == (ids[0] if ids else None)
        card_id = answer["card_id"]
        if plan.card_id is None:
            assert card_id not in self.cards
            self.cards[card_id] = ModelCard()
        card = self.cards[card_id]
        for record_id, (kind, paid_delta, bonus_delta, reverses) in zip(ids, plan.lines,
                                                                        strict=True):
            card.paid += paid_delta
            card.bonus += bonus_delta
            entry = Entry(record_id, card_id, kind, paid_delta, bonus_delta, card.paid, card.bonus,
                          req.key, reverses)
            card.entries.append(entry)
            self.entries[record_id] = entry
            if reverses:
                self.entries[reverses].reversed = True
        if plan.status:
            card.status = plan.status
        if plan.consume:
            self.consumes.append((card_id, ids[0], *plan.consume,
                                  self.entries[ids[0]].paid_after + self.entries[ids[0]].bonus_after))
        self.answers[req.key] = (req.what, first)

    def view(self, used_keys):
        """What the database must hold for this customer (see `database_view`)."""
        held = {i: (c.status, c.money, c.paid, c.bonus, len(c.entries))
                for i, c in self.cards.items()}
        entries = [(card_id, seq, e.id, e.kind, e.paid_delta + e.bonus_delta, e.paid_delta,
                    e.bonus_delta, e.paid_after, e.bonus_after, e.paid_after + e.bonus_after,
                    e.reverses, e.request_id)
                   for card_id in sorted(self.cards)
                   for seq, e in enumerate(self.cards[card_id].entries, start=1)]
        return held, entries, self.consumes, set(self.answers) & used_keys


def database_view(customer_id, used_keys):
    """A customer's cards, entries (by card and seq), consume records and the stored keys among
    `used_keys`, as stored now. Call inside a connection."""
    held = {c.id: (c.status, c.money, c.paid_money, c.bonus_money, c.entry_count)
            for c in Card.select().where(Card.customer == customer_id)}
    entries = [(r.card_id, r.seq, r.id, r.business_type, r.amount, r.paid_delta, r.bonus_delta,
                r.paid_after, r.bonus_after, r.balance_after, r.reverses_id, r.request_id)
               for r in CardRecord.select().where(CardRecord.customer == customer_id)
               .order_by(CardRecord.card, CardRecord.seq)]
    consumes = [(r.card_id, r.card_record_id, r.original_amount, r.discount, r.amount,
                 r.balance_after)
                for r in ConsumeRecord.select().where(ConsumeRecord.customer == customer_id)
                .order_by(ConsumeRecord.id)]
    stored = {k.key for k in IdempotencyKey.select(IdempotencyKey.key)
              .where(IdempotencyKey.key.in_(sorted(used_keys) or [""]))}
    return held, entries, consumes, stored


# --- the machine -------------------------------------------------------------------------------

@dataclass
class World:
    """What the examples of one test share: the app, its staff, the customer types and rules."""

    shop: object
    type_ids: dict
    phones: object
    consume_order: str

    @property
    def database(self):
        return self.shop.app.extensions["crm_db"]


def make_world(app):
    """A shop with staff, one customer type per discount and the recharge rules."""
    assert app.config["MAX_AMOUNT_FEN"] == LIMIT
    shop = make_shop(app)

    def setup():
        type_ids = {d: customer_types.create_type(SYSTEM, {"name": f"折扣{d}", "discount": d}).id
                    for d in DISCOUNTS if d}
        for least, bonus in RULES:
            recharge_rules.create_rule(shop.admin, least, bonus)
        return type_ids

    return World(shop, run(app, setup), itertools.count(1), app.config["CONSUME_ORDER"])


class LedgerMachine(RuleBasedStateMachine):
    """Steps on one fresh customer's cards; the database must follow the model."""

    world = None  # set on the subclass the test makes

    cards = Bundle("cards")

    def __init__(self):
        super().__init__()
        self.model = None
        self.requests = []  # every keyed request sent, for the same key again
        self.used_keys = set()

    # helpers

    @property
    def shop(self):
        return self.world.shop

    def request(self, op, **args):
        """A new keyed request."""
        return Request(op, key(), tuple(sorted(args.items())))

    def call(self, req):
        """Send `req` to the service; its typed outcome as plain data (amounts in fen)."""
        self.used_keys.add(req.key)
        actor = self.shop.admin if req.op == "reverse" else self.shop.operator
        service = {"open": cards.open_card, "recharge": cards.recharge, "consume": cards.consume,
                   "reverse": cards.reverse, "close": cards.close}[req.op]
        return self.shop.do(lambda: service(actor, key=req.key, **req.kwargs)).as_dict()

    def snapshot(self):
        """Everything a refused or failed step must leave as it was."""
        customer_id, used = self.model.customer_id, set(self.used_keys)

        def read():
            # The newest row of every table written in a money transaction (rows are never
            # deleted, so a new one shows here), the counters, the customer's last visit.
            newest = tuple(m.select(fn.MAX(m.id)).scalar() for m in WRITTEN)
            counters = sorted((c.name, c.value) for c in Counter.select())
            visit = Customer.get_by_id(customer_id).last_visit_at
            return newest, counters, visit, database_view(customer_id, used)

        return self.shop.do(read)

    def refused(self, send, expected):
        """`send()` must raise exactly the expected refusal and change nothing."""
        before = self.snapshot()
        with pytest.raises(expected.error) as info:
            send()
        assert type(info.value) is expected.error and info.value.code == expected.code
        assert self.snapshot() == before
        event(f"refused: {expected.code}")

    def fails_cleanly(self, send, point):
        """`send()` with a fault at `point` raises it and leaves nothing behind."""
        before = self.snapshot()
        with injected(self.world.database, point) as probe, pytest.raises(Fault):
            send()
        assert probe.fired == 1
        assert self.snapshot() == before
        event(f"fault at {point}")

    def submit(self, req, fault=False, data=None):
        """Send `req` and check the answer and the database against the model. With `fault`,
        send it first with a failure injected, then again with the same key. Returns the answer,
        or None when refused."""
        if req not in self.requests:
            self.requests.append(req)
        expected = self.model.predict(req)
        if isinstance(expected, Refused):
            self.refused(lambda: self.call(req), expected)
            return None
        if fault and isinstance(expected, Plan):
            point = data.draw(st.sampled_from(expected.points), label="fault point")
            self.fails_cleanly(lambda: self.call(req), point)
        before = self.snapshot() if isinstance(expected, Replay) else None
        answer = self.call(req)
        if isinstance(expected, Replay):
            assert answer == {**expected.answer, "replayed": True}
            assert self.snapshot() == before
            event(f"replayed: {req.op}")
        else:
            self.model.commit(req, expected, answer)
            event(f"done: {req.op}")
        return answer

    # rules

    @initialize(target=cards, discount=st.sampled_from(DISCOUNTS), amount=AMOUNTS, bonus=BONUSES)
    def new_customer(self, discount, amount, bonus):
        """A fresh customer (of a type with `discount`) with a first card holding money."""
        phone = f"139{next(self.world.phones):08d}"
        customer = self.shop.do(lambda: customers.create_customer(
            SYSTEM, {"name": "测试", "phone": phone, "type_id": self.world.type_ids.get(discount)}))
        self.model = Model(customer.id, discount, self.world.consume_order)
        return self.submit(self.request("open", customer_id=customer.id, card_no="", amount=amount,
                                        bonus=bonus, payment_method="cash", remark=""))["card_id"]

    @precondition(lambda self: self.model and len(self.model.cards) < MAX_CARDS)
    @rule(target=cards, amount=OPENING, bonus=BONUSES, method=METHODS,
          remark=st.sampled_from(REMARKS), fault=FAULT, data=st.data())
    def open_card(self, amount, bonus, method, remark, fault, data):
        """Open another card, with a first recharge or empty (amount None)."""
        req = self.request("open", customer_id=self.model.customer_id, card_no="", amount=amount,
                           bonus=None if amount is None else bonus, payment_method=method,
                           remark=remark)
        answer = self.submit(req, fault, data)
        return multiple(answer["card_id"]) if answer else multiple()

    @rule(card=cards, amount=AMOUNTS, bonus=BONUSES, method=METHODS,
          remark=st.sampled_from(REMARKS), fault=FAULT, data=st.data())
    def recharge(self, card, amount, bonus, method, remark, fault, data):
        """Recharge, with a bonus by hand (0 for none) or by the rules (None)."""
        self.submit(self.request("recharge", card_id=card, amount=amount, bonus=bonus,
                                 payment_method=method, remark=remark), fault, data)

    @rule(card=cards, amount=AMOUNTS | st.integers(1, 300),
          holder=st.sampled_from(("any", "own", "other")), remark=st.sampled_from(REMARKS),
          fault=FAULT, data=st.data())
    def consume(self, card, amount, holder, remark, fault, data):
        """Consume, naming no customer, the card's holder or another customer."""
        customer_id = {"any": None, "own": self.model.customer_id,
                       "other": self.shop.customer_id}[holder]
        self.submit(self.request("consume", card_id=card, amount=amount, remark=remark,
                                 customer_id=customer_id), fault, data)

    @rule(card=cards, share=st.integers(1, 100), remark=st.sampled_from(REMARKS), fault=FAULT,
          data=st.data())
    def consume_share(self, card, share, remark, fault, data):
        """Consume `share` percent of the card's balance (all of it at 100)."""
        amount = max(1, self.model.cards[card].money * share // 100)
        self.submit(self.request("consume", card_id=card, amount=amount, remark=remark,
                                 customer_id=None), fault, data)

    @precondition(lambda self: self.model and self.model.entries)
    @rule(reason=st.sampled_from(REASONS), fault=FAULT, data=st.data())
    def reverse(self, reason, fault, data):
        """Reverse any entry of the customer's cards (the service decides which it allows)."""
        record_id = data.draw(st.sampled_from(sorted(self.model.entries)), label="entry")
        self.submit(self.request("reverse", record_id=record_id, reason=reason), fault, data)

    @rule(card=cards, reason=st.sampled_from(REASONS), fault=FAULT, data=st.data())
    def reverse_newest(self, card, reason, fault, data):
        """Reverse the card's newest entry that is not a reversal (the usual "charged wrongly")."""
        entries = [e for e in self.model.cards[card].entries if e.kind != "reversal"]
        if entries:
            self.submit(self.request("reverse", record_id=entries[-1].id, reason=reason), fault,
                        data)

    @rule(card=cards, action=st.sampled_from(sorted(TRANSITIONS)), fault=FAULT, data=st.data())
    def change_status(self, card, action, fault, data):
        """Freeze, report lost or unfreeze (no key: a retry is simply the same change again)."""
        expected = self.model.predict_status(card, action)

        def send():
            return self.shop.do(lambda: cards.change_status(self.shop.operator, card, action,
                                                            "客户要求"))

        if isinstance(expected, Refused):
            self.refused(send, expected)
            return
        if fault:
            self.fails_cleanly(send, data.draw(st.sampled_from(("status", "audit")),
                                               label="fault point"))
        assert send().status == expected
        self.model.cards[card].status = expected

    @rule(card=cards, reason=st.sampled_from(REASONS), method=METHODS, fault=FAULT,
          data=st.data())
    def close(self, card, reason, method, fault, data):
        """Close: refund the paid part, void the bonus part."""
        self.submit(self.request("close", card_id=card, reason=reason, payment_method=method),
                    fault, data)

    @rule(op=st.sampled_from(("open", "recharge", "consume", "close")), card=cards,
          wrong=st.sampled_from(("amount", "bonus", "card")),
          amount=st.sampled_from((0, -1, -10_000)) | st.integers(LIMIT + 1, 10**9))
    def bad_request(self, op, card, wrong, amount):
        """A zero, negative or too large amount or bonus (422), or an unknown card (404):
        refused, nothing moves."""
        args = {"open": dict(customer_id=self.model.customer_id, card_no="", amount=100, bonus=0,
                             payment_method="cash", remark=""),
                "recharge": dict(card_id=card, amount=100, bonus=0, payment_method="cash",
                                 remark=""),
                "consume": dict(card_id=card, amount=100, remark="", customer_id=None),
                "close": dict(card_id=MISSING, reason=REASONS[0], payment_method="cash")}[op]
        if op == "close" or (wrong == "card" and op != "open"):
            args["card_id"] = MISSING
        elif wrong == "bonus" and op != "consume":
            args["bonus"] = amount or -1  # a bonus of 0 is allowed
        else:
            args["amount"] = amount
        self.submit(self.request(op, **args))

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def same_key_again(self, data):
        """A retry: the first answer again if it was stored, else the request runs now."""
        self.submit(data.draw(st.sampled_from(self.requests), label="request"))

    @precondition(lambda self: self.requests)
    @rule(change=st.sampled_from(("amount", "text", "target", "other_op")), data=st.data())
    def same_key_other_request(self, change, data):
        """The key of an earlier request for a changed one: refused when the key was stored."""
        req = data.draw(st.sampled_from(self.requests), label="request")
        a = req.kwargs
        text = "remark" if "remark" in a else "reason"
        target = next((t for t in ("card_id", "record_id") if a.get(t, MISSING) != MISSING), None)
        if change == "amount" and a.get("amount") is not None:
            other = req.but(amount=a["amount"] + 1)
        elif change == "target" and target:
            other = req.but(**{target: MISSING})
        elif change == "other_op" and req.op == "consume":
            other = Request("recharge", req.key, ()).but(
                card_id=a["card_id"], amount=a["amount"], bonus=0, payment_method="cash",
                remark=a["remark"])
        elif change == "other_op" and req.op == "recharge":
            other = Request("consume", req.key, ()).but(
                card_id=a["card_id"], amount=a["amount"], remark=a["remark"], customer_id=None)
        else:  # the remark or the reason
            texts = REMARKS if text == "remark" else REASONS
            other = req.but(**{text: texts[(texts.index(a[text]) + 1) % len(texts)]})
        assert other.what != req.what
        self.submit(other)

    @invariant()
    def database_equals_model(self):
        """Cards, entries, consume records and keys equal the model; balances are the sum of
        their entries and never negative; the customer's cards verify."""
        model, customer_id, used = self.model, self.model.customer_id, set(self.used_keys)

        def read():
            view = database_view(customer_id, used)
            return view, ledger.verify(card_ids=sorted(view[0]))

        view, report = self.shop.do(read)
        assert view == model.view(used)
        held, entries = view[0], view[1]
        for card_id, (_, money, paid, bonus, count) in held.items():
            own = [e for e in entries if e[0] == card_id]
            assert money == paid + bonus == sum(e[4] for e in own) and count == len(own)
            assert paid >= 0 and bonus >= 0
        assert report.ok, report.problems
        assert (report.cards_checked, report.entries_checked) == (len(held), len(entries))


def test_money_service_follows_the_model(app):
    """Random sequences of money steps, refusals, retries and injected failures on fresh
    customers: the database always equals the model and the ledger verifies."""
    world = make_world(app)
    machine = type("BoundLedgerMachine", (LedgerMachine,), {"world": world})
    run_state_machine_as_test(machine, settings=SETTINGS)
    report = run(app, ledger.verify)  # every example's cards, together
    assert report.ok and report.cards_checked > 0, report.problems
