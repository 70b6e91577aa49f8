"""The money ledger through its services: exact, atomic, idempotent, append-only, verifiable."""
import dataclasses

import pytest

from crm.errors import Conflict, NotFound, ValidationError
from crm.models import AuditLog, CardRecord, ConsumeRecord, Customer, IdempotencyKey, RechargeRule
from crm.services import cards, ledger
from tests.ledger_helpers import guard_sql, key, make_shop


@pytest.fixture
def shop(app):
    """A shop with staff and a customer."""
    return make_shop(app)


def test_open_recharge_consume_keeps_parts_and_chain(shop):
    """Open with 100.00 + 20.00 bonus, recharge 50.00, consume 130.00 (paid first): exact fen."""
    card_id = shop.open_card(amount=10000, bonus=2000)
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money) == (12000, 10000, 2000)
    shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 5000, bonus=0,
                                   payment_method="wechat", remark="微信充值"))
    result = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 13000, remark="剪发"))
    assert result.balance == 4000 and result.amount == 13000
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money, card.entry_count) == (4000, 2000, 2000, 4)
    entries = shop.do(lambda: list(CardRecord.select().order_by(CardRecord.seq)))
    assert [(e.business_type, e.amount, e.balance_after) for e in entries] == [
        ("recharge", 10000, 10000), ("bonus", 2000, 12000), ("recharge", 5000, 17000),
        ("consume", -13000, 4000)]
    assert entries[2].payment_method == "wechat" and entries[3].operator_id == shop.operator.user.id
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert card.chain_head == entries[-1].hash
    consume = shop.do(lambda: ConsumeRecord.get())
    assert (consume.amount, consume.balance_after, consume.card_record_id) == (13000, 4000,
                                                                               entries[3].id)
    assert shop.do(lambda: Customer.get_by_id(shop.customer_id).last_visit_at) is not None
    report = shop.verify()
    assert report.ok and (report.cards_checked, report.entries_checked) == (1, 4)


def test_bonus_first_order_is_configurable(shop, monkeypatch):
    """CONSUME_ORDER=bonus_first draws the bonus part before the paid part."""
    card_id = shop.open_card(amount=10000, bonus=3000)
    monkeypatch.setattr(ledger.Settings, "consume_order", "bonus_first")
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 5000))
    card = shop.card(card_id)
    assert (card.paid_money, card.bonus_money) == (8000, 0)


def test_recharge_rules_give_the_best_bonus_reached(shop):
    """充500送50, 充1000送150: a 1200 recharge gets 150; an explicit bonus overrides the rules."""
    def rules():
        RechargeRule.create(min_amount=50000, bonus=5000)
        RechargeRule.create(min_amount=100000, bonus=15000)
        RechargeRule.create(min_amount=20000, bonus=99999, active=False)

    shop.do(rules)
    card_id = shop.open_card()
    result = shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 120000))
    assert result.bonus == 15000 and result.balance == 135000
    result = shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 60000, bonus=0))
    assert result.bonus == 0
    assert shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 30000)).bonus == 0


def test_discount_of_the_customer_type(app):
    """A 95% type pays 95.00 for 100.00; the record keeps original, discount and charged."""
    shop = make_shop(app, discount=95)
    card_id = shop.open_card(amount=10000, bonus=0)
    result = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 3333))
    assert result.amount == 3166 and result.original_amount == 3333  # 3166.35 → 3166
    record = shop.do(lambda: ConsumeRecord.get())
    assert (record.original_amount, record.discount, record.amount) == (3333, 95, 3166)
    assert cards.discounted(1, 95) == 1 and cards.discounted(10, 95) == 10  # 9.5 → 10
    assert cards.discounted(200, 95) == 190 and cards.discounted(200, None) == 200


@pytest.mark.parametrize("status,action", [("frozen", "freeze"), ("lost", "report_lost")])
def test_frozen_or_lost_card_refuses_money(shop, status, action):
    """A frozen or lost card refuses recharge and consumption (409 card_not_active)."""
    card_id = shop.open_card(amount=5000, bonus=0)
    shop.do(lambda: cards.change_status(shop.operator, card_id, action, "客户要求"))
    before = shop.counts()
    for op in (lambda: cards.consume(shop.operator, card_id, key(), 100),
               lambda: cards.recharge(shop.operator, card_id, key(), 100)):
        with pytest.raises(Conflict) as info:
            shop.do(op)
        assert info.value.code == "card_not_active" and info.value.status == 409
    assert shop.counts() == before
    shop.do(lambda: cards.change_status(shop.operator, card_id, "unfreeze", "找到了"))
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))
    actions = shop.do(lambda: [a.action for a in AuditLog.select().where(
        AuditLog.object_type == "card").order_by(AuditLog.id)])
    assert actions == ["card.open", f"card.{action}", "card.unfreeze"]


def test_status_changes_need_a_reason_and_a_valid_state(shop):
    """No reason, or a change the state does not allow: refused, nothing changes."""
    card_id = shop.open_card()
    with pytest.raises(ValidationError, match="请填写原因"):
        shop.do(lambda: cards.change_status(shop.operator, card_id, "freeze", " "))
    with pytest.raises(Conflict, match="不能恢复正常"):
        shop.do(lambda: cards.change_status(shop.operator, card_id, "unfreeze", "x"))
    assert shop.card(card_id).status == "active"


@pytest.mark.parametrize("amount,code", [
    (0, "invalid_amount"), (-100, "invalid_amount"), (5_000_001, "amount_too_large"),
    ("100", "invalid_amount"), (1.5, "invalid_amount"), (True, "invalid_amount"),
])
def test_bad_amounts_move_nothing(shop, amount, code):
    """Zero, negative, over the limit, not whole fen: 422 and nothing written."""
    card_id = shop.open_card(amount=5000, bonus=0)
    before = shop.counts()
    for op in (lambda: cards.consume(shop.operator, card_id, key(), amount),
               lambda: cards.recharge(shop.operator, card_id, key(), amount)):
        with pytest.raises(ValidationError) as info:
            shop.do(op)
        assert info.value.code == code and info.value.status == 422
    assert shop.counts() == before


def test_insufficient_balance_and_unknown_card(shop):
    """Too little money: 409 with the balance named; an unknown card: 404; nothing written."""
    card_id = shop.open_card(amount=5000, bonus=0)
    before = shop.counts()
    with pytest.raises(Conflict) as info:
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 5001))
    assert info.value.code == "insufficient_balance" and "¥50.00" in info.value.message
    with pytest.raises(NotFound):
        shop.do(lambda: cards.consume(shop.operator, 9999, key(), 100))
    assert shop.counts() == before
    assert shop.do(lambda: IdempotencyKey.select().count()) == 1  # the opening only


def test_card_of_another_customer_is_refused(shop):
    """Consuming with a customer id that does not hold the card: 409, nothing written."""
    card_id = shop.open_card(amount=5000, bonus=0)
    other = shop.do(lambda: Customer.create(customer_no="X1", name="李四", phone="13900139000",
                                            search_text="李四|13900139000|X1"))
    before = shop.counts()
    with pytest.raises(Conflict) as info:
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100, customer_id=other.id))
    assert info.value.code == "card_not_of_customer"
    assert shop.counts() == before


def test_same_key_twice_moves_money_once(shop):
    """A double-click or a retry: the same key returns the first answer and charges once."""
    card_id = shop.open_card(amount=5000, bonus=0)
    k = key()
    first = shop.do(lambda: cards.consume(shop.operator, card_id, k, 1000, remark="x"))
    again = shop.do(lambda: cards.consume(shop.operator, card_id, k, 1000, remark="x"))
    assert first.replayed is False and again.replayed is True
    assert dataclasses.replace(first, replayed=None) == dataclasses.replace(again, replayed=None)
    assert shop.card(card_id).money == 4000
    assert shop.do(lambda: ConsumeRecord.select().count()) == 1


@pytest.mark.parametrize("change", [
    lambda card_id: dict(card_id=card_id, amount=2000, remark="x"),
    lambda card_id: dict(card_id=card_id, amount=1000, remark="y"),
    lambda card_id: dict(card_id=card_id + 1, amount=1000, remark="x"),
])
def test_same_key_for_a_different_request_is_refused(shop, change):
    """The same key with another amount, remark or card: 409 idempotency_key_reused, not applied."""
    card_id = shop.open_card(amount=5000, bonus=0)
    shop.open_card(amount=5000, bonus=0)
    k = key()
    shop.do(lambda: cards.consume(shop.operator, card_id, k, 1000, remark="x"))
    before = shop.counts()
    args = change(card_id)
    if args == dict(card_id=card_id, amount=1000, remark="x"):
        return
    with pytest.raises(Conflict) as info:
        shop.do(lambda: cards.consume(shop.operator, args["card_id"], k, args["amount"],
                                      remark=args["remark"]))
    assert info.value.code == "idempotency_key_reused"
    assert shop.counts() == before


@pytest.mark.parametrize("bad", ["", "short", "has space in it", "x" * 65, None, 12345678])
def test_bad_idempotency_keys(shop, bad):
    """A missing or malformed key is refused before anything happens (400)."""
    card_id = shop.open_card(amount=5000, bonus=0)
    with pytest.raises(ValidationError) as info:
        shop.do(lambda: cards.consume(shop.operator, card_id, bad, 100))
    assert info.value.status == 400


def test_reverse_consumption_and_recharge_with_its_bonus(shop):
    """Reversal entries point at the originals, restore the same parts, and verify."""
    card_id = shop.open_card(amount=10000, bonus=1000)
    consumed = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 3000))
    shop.do(lambda: cards.reverse(shop.admin, consumed.record_id, key(), "收错了"))
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money) == (11000, 10000, 1000)
    net = shop.do(lambda: sum(c.amount for c in ConsumeRecord.select()))
    assert net == 0  # the consume record of the reversal cancels the original
    first = shop.do(lambda: CardRecord.get(CardRecord.business_type == "recharge"))
    result = shop.do(lambda: cards.reverse(shop.admin, first.id, key(), "充错卡"))
    assert len(result.reversed_ids) == 2  # the recharge and its bonus
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money) == (0, 0, 0)
    reversals = shop.do(lambda: list(CardRecord.select().where(
        CardRecord.business_type == "reversal").order_by(CardRecord.id)))
    assert [r.reverses_id for r in reversals][0] == consumed.record_id
    assert shop.verify().ok
    assert shop.do(lambda: AuditLog.select().where(AuditLog.action == "ledger.reverse").count()) == 2


def test_second_reversal_and_negative_reversal_are_refused(shop):
    """An entry is reversed once; a reversal that would overdraw the card is refused."""
    card_id = shop.open_card(amount=10000, bonus=0)
    consumed = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 1000))
    shop.do(lambda: cards.reverse(shop.admin, consumed.record_id, key(), "错"))
    before = shop.counts()
    with pytest.raises(Conflict) as info:
        shop.do(lambda: cards.reverse(shop.admin, consumed.record_id, key(), "再错"))
    assert info.value.code == "already_reversed"
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 9000))
    recharge = shop.do(lambda: CardRecord.get(CardRecord.business_type == "recharge"))
    before = shop.counts()
    with pytest.raises(Conflict) as info:
        shop.do(lambda: cards.reverse(shop.admin, recharge.id, key(), "退"))
    assert info.value.code == "insufficient_balance"
    assert shop.counts() == before
    reversal = shop.do(lambda: CardRecord.get(CardRecord.business_type == "reversal"))
    with pytest.raises(Conflict, match="不能冲正"):
        shop.do(lambda: cards.reverse(shop.admin, reversal.id, key(), "冲正的冲正"))


def test_close_refunds_paid_part_and_voids_bonus(shop):
    """注销 with money: refund the paid part, void the bonus; the card ends closed at zero."""
    card_id = shop.open_card(amount=10000, bonus=2000)
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 3000))
    result = shop.do(lambda: cards.close(shop.operator, card_id, key(), "客户搬家"))
    assert (result.refunded, result.bonus_voided) == (7000, 2000)
    card = shop.card(card_id)
    assert (card.status, card.money, card.paid_money, card.bonus_money) == ("closed", 0, 0, 0)
    kinds = shop.do(lambda: [(r.business_type, r.amount) for r in
                             CardRecord.select().order_by(CardRecord.seq)][-2:])
    assert kinds == [("refund", -7000), ("bonus_void", -2000)]
    with pytest.raises(Conflict):
        shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 100))
    assert shop.verify().ok


def test_reissue_moves_the_money_to_a_new_card(shop):
    """补卡: a transfer pair moves paid and bonus parts; the old card ends closed."""
    card_id = shop.open_card(amount=10000, bonus=500, card_no="A0001")
    shop.do(lambda: cards.change_status(shop.operator, card_id, "report_lost", "丢了"))
    result = shop.do(lambda: cards.reissue(shop.operator, card_id, key(), "补办", "A0002"))
    old, new = shop.card(card_id), shop.card(result.card_id)
    assert (old.status, old.money) == ("closed", 0)
    assert (new.card_no, new.status, new.paid_money, new.bonus_money) == ("A0002", "active",
                                                                          10000, 500)
    assert shop.verify().ok
    with pytest.raises(Conflict, match="已存在"):
        shop.open_card(card_no="A0002")


def test_verify_names_the_tampered_card_and_entry(app, shop, backend, runner):
    """Editing one amount or deleting one row in the database (triggers off) fails verify,
    naming that card and entry."""
    first = shop.open_card(amount=10000, bonus=0, card_no="T0001")
    second = shop.open_card(amount=5000, bonus=0, card_no="T0002")
    for card_id in (first, second):
        shop.do(lambda c=card_id: cards.consume(shop.operator, c, key(), 1000))
    assert shop.verify().ok
    database = app.extensions["crm_db"]
    target = shop.do(lambda: CardRecord.get((CardRecord.card == first)
                                            & (CardRecord.business_type == "recharge")))

    def tamper(sql, event):
        database.execute_sql(f"DROP TRIGGER t_card_record_no_{event.lower()}")
        try:
            database.execute_sql(sql)
        finally:
            database.execute_sql(guard_sql(database, "t_card_record", event))

    shop.do(lambda: tamper(f"UPDATE t_card_record SET amount = 20000, paid_delta = 20000 "
                           f"WHERE id = {target.id}", "UPDATE"))
    report = shop.verify()
    assert not report.ok and len(report.problems) == 1
    problem = report.problems[0]
    assert (problem["card_no"], problem["record_id"], problem["seq"]) == ("T0001", target.id, 1)
    assert "签名不符" in problem["problem"]

    last = shop.do(lambda: CardRecord.select().where(CardRecord.card == second)
                   .order_by(CardRecord.seq.desc()).first())
    def drop_last():
        database.execute_sql("DROP TRIGGER t_consume_record_no_delete")
        database.execute_sql(f"DELETE FROM t_consume_record WHERE card_record_id = {last.id}")
        database.execute_sql(guard_sql(database, "t_consume_record", "DELETE"))
        tamper(f"DELETE FROM t_card_record WHERE id = {last.id}", "DELETE")

    shop.do(drop_last)
    report = shop.verify()
    by_card = {p["card_no"]: p for p in report.problems}
    assert set(by_card) == {"T0001", "T0002"}
    assert "不符" in by_card["T0002"]["problem"]
    result = runner.invoke(args=["verify"])
    assert result.exit_code == 1
    assert f"卡 T0001 流水 {target.id} (序号 1)：记录内容与其签名不符" in result.output
    assert "发现 2 处问题" in result.output


def _edit_consume_records(database, sql):
    """An attacker with the database: the append-only guard dropped, an edit, the guard back."""
    database.execute_sql("DROP TRIGGER t_consume_record_no_update")
    try:
        database.execute_sql(sql)
    finally:
        database.execute_sql(guard_sql(database, "t_consume_record", "UPDATE"))


@pytest.mark.parametrize("edit", [
    "UPDATE t_card SET customer_id = {other} WHERE id = {card}",
    "UPDATE t_card SET card_no = 'SWAP-A' WHERE id = {card}",
    "UPDATE t_card SET customer_id = {other}, card_no = 'SWAP-A' WHERE id = {card}",
    "UPDATE t_card SET owner_seal = '' WHERE id = {card}",
    "UPDATE t_card SET card_no = 'SWAP-B' WHERE id = {empty}",  # a card without entries
])
def test_verify_names_a_card_moved_to_another_customer(app, shop, runner, edit):
    """A card re-pointed in the database (another customer, another number, its seal wiped):
    `crm verify` names that card, and so does the monitoring page after the check."""
    from crm.services import customers, monitor

    other = shop.do(lambda: customers.create_customer(shop.operator, {
        "name": "李四", "phone": "13900000003"})).id
    card = shop.open_card(amount=10000, bonus=0, card_no="OWN-0001")
    empty = shop.open_card(card_no="OWN-0002")
    shop.do(lambda: cards.consume(shop.operator, card, key(), 1000))
    assert shop.verify().ok
    database = app.extensions["crm_db"]
    shop.do(lambda: database.execute_sql(edit.format(other=other, card=card, empty=empty)))
    report = shop.verify()
    assert len(report.problems) == 1, report.problems
    assert report.problems[0]["card_id"] == (empty if "{empty}" in edit else card)
    assert "归属" in report.problems[0]["problem"]
    result = runner.invoke(args=["verify"])
    assert result.exit_code == 1 and "归属" in result.output
    named = f"卡 {report.problems[0]['card_no']}："  # the number the card has now
    status = shop.do(lambda: monitor.status(app.config))
    assert any("账本校验发现问题" in p and named in p and "归属" in p
               for p in status["problems"]), status["problems"]


@pytest.mark.parametrize("edit", [
    "amount = amount + 100",
    "original_amount = original_amount + 100",
    "discount = 50",
    "customer_id = {other}",
    "card_id = {empty}",
    "balance_after = balance_after + 1",
    "operator_id = {admin}",
    "remark = '改过'",
    "created_at = '2020-01-01 10:00:00'",
    "card_record_id = {recharge}",
    "request_id = UPPER(request_id)",  # the same text to MariaDB's collation, not to the seal
])
def test_verify_names_an_edited_consumption_record(app, shop, edit):
    """t_consume_record edited in the database (the guard dropped): every field that the ledger
    entry also holds, or that determines the amount charged, is checked against it."""
    from crm.services import customers

    other = shop.do(lambda: customers.create_customer(shop.operator, {
        "name": "李四", "phone": "13900000003"})).id
    card = shop.open_card(amount=10000, bonus=0, card_no="CON-0001")
    empty = shop.open_card(card_no="CON-0002")
    sold = shop.do(lambda: cards.consume(shop.operator, card, key(), 1234, remark="剪发"))
    recharge = shop.do(lambda: CardRecord.get((CardRecord.card == card)
                                              & (CardRecord.business_type == "recharge"))).id
    assert shop.verify().ok
    database = app.extensions["crm_db"]
    shop.do(lambda: _edit_consume_records(database, "UPDATE t_consume_record SET " + edit.format(
        other=other, empty=empty, admin=shop.admin.user.id, recharge=recharge)
        + f" WHERE id = {sold.consume_id}"))
    report = shop.verify()
    assert report.problems, edit
    assert any("消费记录" in p["problem"] for p in report.problems), report.problems


def test_verify_names_a_missing_consumption_record(app, shop):
    """A sale whose consumption record is deleted."""
    card = shop.open_card(amount=10000, bonus=0, card_no="CON-0003")
    sold = shop.do(lambda: cards.consume(shop.operator, card, key(), 500))
    database = app.extensions["crm_db"]

    def delete():
        database.execute_sql("DROP TRIGGER t_consume_record_no_delete")
        database.execute_sql(f"DELETE FROM t_consume_record WHERE id = {sold.consume_id}")
        database.execute_sql(guard_sql(database, "t_consume_record", "DELETE"))

    shop.do(delete)
    problems = shop.verify().problems
    assert [p["record_id"] for p in problems] == [sold.record_id], problems
    assert "消费记录" in problems[0]["problem"]


@pytest.mark.backends("sqlite")  # the test drops a unique index; MariaDB's database is shared
def test_verify_names_a_second_consumption_record_for_one_sale(app, shop):
    """With the unique index dropped, a copy of a sale's record (which agrees with the entry in
    every field) is still named: one sale, one record."""
    card = shop.open_card(amount=10000, bonus=0, card_no="CON-0004")
    database = app.extensions["crm_db"]
    other = shop.do(lambda: cards.consume(shop.operator, card, key(), 300))
    shop.do(lambda: database.execute_sql("DROP INDEX t_consume_record_card_record_id"))
    shop.do(lambda: database.execute_sql(
        "INSERT INTO t_consume_record (card_id, customer_id, card_record_id, original_amount, "
        "discount, amount, balance_after, operator_id, request_id, remark, created_at) "
        "SELECT card_id, customer_id, card_record_id, original_amount, discount, amount, "
        "balance_after, operator_id, request_id, remark, created_at FROM t_consume_record "
        f"WHERE id = {other.consume_id}"))
    doubled = [p for p in shop.verify().problems if p["record_id"] == other.record_id]
    assert len(doubled) == 1 and "同一笔账本记录" in doubled[0]["problem"], doubled


def test_reversals_in_any_order_leave_no_money_stuck(app, shop, client, api_token):
    """A recharge's bonus cannot be reversed on its own (409 reverse_with_recharge, naming the
    recharge): reversing the recharge takes its bonus with it. A bonus reversed alone before
    this rule (made here through the ledger, as the old code did) no longer blocks the
    recharge: its own money goes back, and nothing stays on the card."""
    from crm.services import ledger

    card_id = shop.open_card(amount=10000, bonus=1000)
    recharge, bonus = shop.do(lambda: [
        CardRecord.get((CardRecord.card == card_id) & (CardRecord.business_type == kind))
        for kind in ("recharge", "bonus")])
    headers = {**api_token("owner", role="admin"), "Idempotency-Key": key()}
    resp = client.post(f"/api/v1/records/{bonus.id}/reverse", json={"reason": "先冲赠送"},
                       headers=headers)
    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["error"]["code"] == "reverse_with_recharge"
    assert f"#{recharge.id}" in resp.get_json()["error"]["message"]
    assert shop.card(card_id).money == 11000

    def old_bonus_reversal():  # what the previous release allowed
        with app.extensions["crm_db"].atomic():
            ledger.post(card_id, shop.customer_id, -1000, lambda paid, bonus_: [ledger.Line(
                "reversal", bonus_delta=-1000, remark="冲正赠送", reverses=bonus.id)],
                shop.admin, key(), allowed=ledger.NOT_CLOSED, verb="冲正")

    shop.do(old_bonus_reversal)
    result = shop.do(lambda: cards.reverse(shop.admin, recharge.id, key(), "充错卡"))
    assert result.reversed_ids == [recharge.id]
    card = shop.card(card_id)
    assert (card.money, card.paid_money, card.bonus_money) == (0, 0, 0)
    with pytest.raises(Conflict, match="已冲正"):
        shop.do(lambda: cards.reverse(shop.admin, recharge.id, key(), "再来"))
    assert shop.verify().ok
