"""API: cards and money. Amounts are yuan strings with two decimals; every money call needs an
Idempotency-Key header."""
from flask import Response, current_app, jsonify, request

from crm.api import bp, json_body, text_field
from crm.http import actor, admin_required, requires
from crm.money import format_fen, parse_amount, parse_optional
from crm.services import cards, customers, ledger, receipts, recharge_rules


def card_json(card):
    """A card as the API shows it."""
    return {"id": card.id, "card_no": card.card_no, "customer_id": card.customer_id,
            "status": card.status, "balance": format_fen(card.money),
            "paid_balance": format_fen(card.paid_money),
            "bonus_balance": format_fen(card.bonus_money)}


def record_json(record):
    """A ledger entry as the API shows it (signed amount: money in positive)."""
    return {"id": record.id, "card_id": record.card_id, "seq": record.seq,
            "business_type": record.business_type, "amount": format_fen(record.amount),
            "balance": format_fen(record.balance_after),
            "payment_method": record.payment_method or None,
            "reverses_id": record.reverses_id, "operator_id": record.operator_id,
            "remark": record.remark, "time": record.created_at.isoformat(" "),
            "reversed_by": getattr(record, "reversed_by", None)}


def result_json(result):
    """A money operation's answer with its amounts in yuan."""
    money = ("balance", "paid_balance", "bonus_balance", "bonus", "amount", "original_amount",
             "refunded", "bonus_voided")
    return {k: (format_fen(v) if k in money and isinstance(v, int) else v)
            for k, v in result.items()}


def _key():
    return request.headers.get("Idempotency-Key", "")


def _amount(data, name="amount"):
    return parse_amount(data.get(name), ledger.Settings.max_amount, name)


def _bonus(data):
    return parse_optional(data.get("bonus"), ledger.Settings.max_amount, "bonus")


@bp.route("/v1/customers/<int:customer_id>/cards")
def list_customer_cards(customer_id):
    """A customer's cards (404 for a customer that does not exist, not an empty list)."""
    customers.get_customer(customer_id)
    return jsonify(items=[card_json(c) for c in cards.cards_of(customer_id)])


@bp.route("/v1/customers/<int:customer_id>/cards", methods=["POST"])
@requires("recharge")
def open_card(customer_id):
    """Open a card (card_no optional), optionally with a first recharge (amount, bonus?)."""
    data = json_body()
    amount = _amount(data) if data.get("amount") not in (None, "") else None
    result = cards.open_card(actor(), customer_id, _key(),
                             card_no=text_field(data, "card_no", required=False),
                             amount=amount, bonus=_bonus(data) if amount else None,
                             payment_method=text_field(data, "payment_method", required=False),
                             remark=text_field(data, "remark", required=False))
    card = cards.get_card(result["card_id"])
    return jsonify({**card_json(card), **result_json(result), "id": card.id}), 201


@bp.route("/v1/cards/<int:card_id>")
def get_card(card_id):
    """One card with its balances."""
    return jsonify(card_json(cards.get_card(card_id)))


@bp.route("/v1/cards/<int:card_id>/records")
def card_records(card_id):
    """A card's entries, newest first."""
    cards.get_card(card_id)
    return jsonify(items=[record_json(r) for r in cards.records(card_id)])


@bp.route("/v1/cards/<int:card_id>/recharge", methods=["POST"])
@requires("recharge")
def recharge(card_id):
    """充值: amount, bonus? (absent: by the recharge rules), payment_method?, remark?."""
    data = json_body()
    result = cards.recharge(actor(), card_id, _key(), _amount(data), bonus=_bonus(data),
                            payment_method=text_field(data, "payment_method", required=False),
                            remark=text_field(data, "remark", required=False))
    return jsonify(result_json(result)), 201


@bp.route("/v1/cards/<int:card_id>/consume", methods=["POST"])
@requires("consume")
def consume(card_id):
    """消费: amount (before the member discount), remark?, customer_id? (must hold the card)."""
    data = json_body()
    customer_id = data.get("customer_id")
    if customer_id is not None and (isinstance(customer_id, bool) or not isinstance(customer_id, int)):
        customer_id = -1  # never matches: "not this customer's card"
    result = cards.consume(actor(), card_id, _key(), _amount(data),
                           remark=text_field(data, "remark", required=False),
                           customer_id=customer_id)
    return jsonify(result_json(result)), 201


def _status(card_id, action):
    data = json_body()
    card = cards.change_status(actor(), card_id, action, text_field(data, "reason"))
    return jsonify(card_json(card))


@bp.route("/v1/cards/<int:card_id>/freeze", methods=["POST"])
@requires("manage_cards")
def freeze(card_id):
    """冻结 (reason)."""
    return _status(card_id, "freeze")


@bp.route("/v1/cards/<int:card_id>/unfreeze", methods=["POST"])
@requires("manage_cards")
def unfreeze(card_id):
    """解冻 / 解除挂失 (reason)."""
    return _status(card_id, "unfreeze")


@bp.route("/v1/cards/<int:card_id>/report-lost", methods=["POST"])
@requires("manage_cards")
def report_lost(card_id):
    """挂失 (reason)."""
    return _status(card_id, "report_lost")


@bp.route("/v1/cards/<int:card_id>/reissue", methods=["POST"])
@requires("manage_cards")
def reissue(card_id):
    """补卡 (reason, card_no?): the money moves to a new card, the old one closes."""
    data = json_body()
    result = cards.reissue(actor(), card_id, _key(), text_field(data, "reason"),
                           text_field(data, "card_no", required=False))
    return jsonify(result_json(result)), 201


@bp.route("/v1/cards/<int:card_id>/close", methods=["POST"])
@requires("manage_cards")
def close(card_id):
    """注销 (reason, payment_method?): refund the paid part, void the bonus, close."""
    data = json_body()
    result = cards.close(actor(), card_id, _key(), text_field(data, "reason"),
                         text_field(data, "payment_method", required=False))
    return jsonify(result_json(result)), 201


@bp.route("/v1/records/<int:record_id>/reverse", methods=["POST"])
@requires("reverse")
def reverse(record_id):
    """冲正 (admin; reason)."""
    data = json_body()
    result = cards.reverse(actor(), record_id, _key(), text_field(data, "reason"))
    return jsonify(result_json(result)), 201


@bp.route("/v1/records/<int:record_id>/receipt")
def receipt(record_id):
    """消费凭证: what the receipt of a consumption (or its reversal) shows."""
    facts = receipts.receipt(record_id)
    money = ("original_amount", "amount", "balance")
    return jsonify({**{k: (format_fen(v) if k in money else v) for k, v in facts.items()},
                    "time": facts["time"].isoformat(" "),
                    "shop_name": current_app.config["SHOP_NAME"]})


@bp.route("/v1/records/<int:record_id>/receipt.pdf")
def receipt_pdf(record_id):
    """The receipt as an 80 mm wide PDF."""
    data = receipts.receipt_pdf(record_id, current_app.config["SHOP_NAME"])
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename=receipt-{record_id}.pdf"})


@bp.route("/v1/recharge-rules")
def list_rules():
    """The recharge rules in force."""
    return jsonify(items=[{"id": r.id, "min_amount": format_fen(r.min_amount),
                           "bonus": format_fen(r.bonus)} for r in recharge_rules.active_rules()])


@bp.route("/v1/recharge-rules", methods=["POST"])
@admin_required
def create_rule():
    """Add a rule (admin): min_amount, bonus."""
    data = json_body()
    rule = recharge_rules.create_rule(actor(), _amount(data, "min_amount"), _amount(data, "bonus"))
    return jsonify(id=rule.id, min_amount=format_fen(rule.min_amount),
                   bonus=format_fen(rule.bonus)), 201


@bp.route("/v1/recharge-rules/<int:rule_id>", methods=["DELETE"])
@admin_required
def retire_rule(rule_id):
    """Switch a rule off (admin)."""
    recharge_rules.retire_rule(actor(), rule_id)
    return jsonify(ok=True)


@bp.route("/v1/ledger/verify")
@admin_required
def verify():
    """Recompute every chain and balance (admin); the run is audited."""
    report = ledger.verify_and_audit(actor())
    return jsonify(ok=report.ok, cards_checked=report.cards_checked,
                   entries_checked=report.entries_checked, problems=report.problems)
