"""Issue 18.1: the card services return typed outcomes (crm.services.outcomes) — every amount
fen and typed as such — rather than dicts whose money keys the web and API had to guess."""
import dataclasses
import json

import pytest

from crm.models import IdempotencyKey
from crm.services import cards
from crm.services.outcomes import (
    CardOutcome,
    Closed,
    Consumed,
    Posted,
    Recharged,
    Reissued,
    Reversed,
)
from tests.ledger_helpers import key, make_shop


@pytest.fixture
def shop(app):
    return make_shop(app)


def test_every_money_operation_returns_its_typed_outcome(shop):
    """Open, recharge, consume, reverse, reissue and close each say what they did in fen."""
    opened = shop.do(lambda: cards.open_card(shop.operator, shop.customer_id, key(),
                                             amount=10000, bonus=500))
    assert type(opened) is Recharged
    assert (opened.balance, opened.paid_balance, opened.bonus_balance, opened.bonus) == (
        10500, 10000, 500, 500)
    empty = shop.do(lambda: cards.open_card(shop.operator, shop.customer_id, key()))
    assert type(empty) is Recharged and (empty.record_id, empty.record_ids, empty.balance) == (
        None, [], 0)
    topped = shop.do(lambda: cards.recharge(shop.operator, opened.card_id, key(), 2000, bonus=0))
    assert type(topped) is Recharged and topped.balance == 12500
    sold = shop.do(lambda: cards.consume(shop.operator, opened.card_id, key(), 1234))
    assert type(sold) is Consumed and (sold.amount, sold.original_amount, sold.balance) == (
        1234, 1234, 11266)
    undone = shop.do(lambda: cards.reverse(shop.admin, sold.record_id, key(), "收错"))
    assert type(undone) is Reversed and undone.reversed_ids == [sold.record_id]
    assert undone.balance == 12500
    moved = shop.do(lambda: cards.reissue(shop.admin, opened.card_id, key(), "丢卡"))
    assert type(moved) is Reissued and (moved.old_card_id, moved.balance) == (opened.card_id,
                                                                              12500)
    closed = shop.do(lambda: cards.close(shop.admin, moved.card_id, key(), "退卡"))
    assert type(closed) is Closed
    assert (closed.refunded, closed.bonus_voided, closed.balance) == (12000, 500, 0)
    for outcome in (opened, empty, topped, sold, undone, moved, closed):
        assert isinstance(outcome, CardOutcome) and outcome.replayed is False
        assert all(isinstance(v, int) for k, v in outcome.as_dict().items()
                   if k in ("balance", "paid_balance", "bonus_balance", "bonus", "amount",
                            "original_amount", "refunded", "bonus_voided"))


def test_a_replay_is_the_same_typed_outcome(shop):
    """The same key again: the first outcome, of its type, marked replayed; nothing moves."""
    card_id = shop.open_card(amount=5000, bonus=0)
    k = key()
    first = shop.do(lambda: cards.consume(shop.operator, card_id, k, 1000))
    again = shop.do(lambda: cards.consume(shop.operator, card_id, k, 1000))
    assert type(again) is Consumed and again.replayed is True
    assert again == dataclasses.replace(first, replayed=True)
    assert shop.card(card_id).money == 4000


def test_an_answer_stored_by_an_older_version_replays(shop):
    """A key stored before a field existed (here: an opening without money, stored without
    `bonus`, and with a key this version dropped) still answers: the field's default, the
    unknown key left out — the retry of a request made before an upgrade is not a 500."""
    k = key()
    first = shop.do(lambda: cards.open_card(shop.operator, shop.customer_id, k))
    old = {"card_id": first.card_id, "card_no": first.card_no, "record_id": None,
           "record_ids": [], "balance": 0, "paid_balance": 0, "bonus_balance": 0,
           "retired_key": "x"}
    shop.do(lambda: IdempotencyKey.update(response=json.dumps(old))
            .where(IdempotencyKey.key == k).execute())
    again = shop.do(lambda: cards.open_card(shop.operator, shop.customer_id, k))
    assert type(again) is Recharged and again.replayed is True
    assert (again.card_id, again.bonus, again.record_id) == (first.card_id, 0, None)


def test_the_stored_outcome_is_the_deed_not_the_answer(shop):
    """What the key keeps has no `replayed` (that belongs to each answer) and every amount in
    fen, as the outcome's type says."""
    k = key()
    result = shop.do(lambda: cards.open_card(shop.operator, shop.customer_id, k, amount=1230,
                                             bonus=0))
    stored = json.loads(shop.do(lambda: IdempotencyKey.get(IdempotencyKey.key == k).response))
    assert "replayed" not in stored
    assert stored["balance"] == 1230 and stored["record_id"] == result.record_id
    assert Posted.from_json(json.dumps(stored)).balance == 1230


def test_the_api_answer_of_an_outcome_is_in_yuan(client, api_token, shop):
    """The API turns the typed outcome into its declared answer: fen → yuan text, once."""
    card_id = shop.open_card(amount=10000, bonus=0)
    answer = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "12.34"},
                         headers={**api_token("cashier"), "Idempotency-Key": key()})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert (body["amount"], body["original_amount"], body["balance"]) == ("12.34", "12.34",
                                                                          "87.66")
    assert body["replayed"] is False


@pytest.mark.parametrize("outcome", [
    Recharged(card_id=1, card_no="A1", balance=1230, record_id=7, record_ids=[7, 8],
              paid_balance=1000, bonus_balance=230, bonus=230),
    Recharged(card_id=2, card_no="A2", balance=0),
    Consumed(card_id=1, card_no="A1", balance=100, record_id=9, record_ids=[9], consume_id=3,
             original_amount=1250, discount=88, amount=1100),
    Consumed(card_id=1, card_no="A1", balance=100, record_id=9, record_ids=[9], discount=None),
    Reversed(card_id=1, card_no="A1", balance=1230, record_id=10, record_ids=[10, 11],
             reversed_ids=[7, 8]),
    Closed(card_id=1, card_no="A1", balance=0, record_ids=[12, 13], refunded=1000,
           bonus_voided=230),
    Reissued(card_id=5, card_no="B1", balance=1230, old_card_id=1),
], ids=lambda o: type(o).__name__)
def test_every_outcome_comes_back_from_what_its_key_keeps(outcome):
    """What the key keeps (to_json) makes the same outcome again, of its type, for every type:
    a field that JSON cannot carry exactly would fail here, not in a shop's retry."""
    again = type(outcome).from_json(outcome.to_json(), replayed=True)
    assert type(again) is type(outcome)
    assert again == dataclasses.replace(outcome, replayed=True)
