"""Card pages: the consume counter (flow one), card detail, open, recharge, consume, receipts,
status changes, reissue, close, reversal; recharge rules and the ledger check for admins."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from crm.errors import CrmError
from crm.http import actor, admin_required, int_arg, int_form, receipt_file, requires
from crm.money import format_yuan, parse_amount, parse_optional, typed
from crm.services import cards, ledger, receipts, recharge_rules
from crm.web import flash_error

bp = Blueprint("cards", __name__)


def _amount(name="amount"):
    return parse_amount(typed(request.form.get(name)), ledger.Settings.max_amount, name)


def _bonus():
    return parse_optional(typed(request.form.get("bonus")), ledger.Settings.max_amount, "bonus")


def _key():
    return request.form.get("idempotency_key", "")


@bp.route("/consume")
@requires("consume")
def counter():
    """消费收银: find the customer by name, phone, number or card number and pick one of their
    cards. A card number typed whole (or scanned: a reader types it and presses Enter) goes
    straight to that card's consumption form."""
    q = request.args.get("q", "").strip()[:50]
    card = cards.card_by_number(q)
    if card is not None:
        return redirect(url_for("cards.consume", card_id=card.id, customer_id=card.customer_id))
    return render_template("cards/counter.html", q=q, results=cards.counter_search(q))


def _card_page(card_id, status=200, **context):
    card = cards.get_card(card_id)
    records, page, pages = cards.records_page(card, int_arg("page", 1))
    return render_template("cards/detail.html", card=card, records=records, page=page, pages=pages,
                           bonus_with=cards.bonus_with(records),
                           methods=ledger.PAYMENT_METHODS, types=ledger.BUSINESS_TYPES,
                           rules_text=recharge_rules.describe(recharge_rules.active_rules()),
                           **context), status


@bp.route("/cards/<int:card_id>")
def detail(card_id):
    """A card: balances, recharge form, actions, and its entries."""
    return _card_page(card_id)


@bp.route("/customers/<int:customer_id>/cards", methods=["POST"])
@requires("recharge")
def open_card(customer_id):
    """开卡, optionally with a first recharge."""
    form = request.form
    try:
        amount = _amount() if form.get("amount", "").strip() else None
        result = cards.open_card(actor(), customer_id, _key(), card_no=form.get("card_no", ""),
                                 amount=amount, bonus=_bonus(),
                                 payment_method=form.get("payment_method", "cash"),
                                 remark=form.get("remark", ""))
    except CrmError as error:
        flash_error(error)
        return redirect(url_for("customers.detail", customer_id=customer_id)), 303
    flash(f"已开卡 {result.card_no}，卡内余额 {format_yuan(result.balance)}", "success")
    if result.record_id:  # money was put on the card: its 充值凭证
        return redirect(url_for("cards.recharge_receipt", record_id=result.record_id))
    return redirect(url_for("cards.detail", card_id=result.card_id))


@bp.route("/cards/<int:card_id>/recharge", methods=["POST"])
@requires("recharge")
def recharge(card_id):
    """充值."""
    form = request.form
    try:
        result = cards.recharge(actor(), card_id, _key(), _amount(), bonus=_bonus(),
                                payment_method=form.get("payment_method", "cash"),
                                remark=form.get("remark", ""))
    except CrmError as error:
        return _card_page(card_id, error.status, error=error, form=form)
    return redirect(url_for("cards.recharge_receipt", record_id=result.record_id))


def _consume_form(card_id, status=200, **context):
    card = cards.get_card(card_id)
    return render_template("cards/consume.html", card=card,
                           discount=cards.customer_discount(card.customer_id), **context), status


@bp.route("/cards/<int:card_id>/consume", methods=["GET", "POST"])
@requires("consume")
def consume(card_id):
    """消费: amount and remark; one transaction; then the result with its receipt."""
    if request.method == "GET":
        return _consume_form(card_id, form={})
    form = request.form
    try:
        customer_id = int_form(form, "customer_id")
        result = cards.consume(actor(), card_id, _key(), _amount(), remark=form.get("remark", ""),
                               customer_id=customer_id)
    except CrmError as error:
        return _consume_form(card_id, error.status, error=error, form=form)
    return redirect(url_for("cards.receipt", record_id=result.record_id), 303)


@bp.route("/cards/records/<int:record_id>/receipt")
def receipt(record_id):
    """The consumption's result: new balance and the receipt, printable on 80 mm paper."""
    return render_template("cards/receipt.html", row=cards.receipt(record_id),
                           reversal=receipts.reversal_of(record_id))


@bp.route("/cards/records/<int:record_id>/recharge-receipt")
def recharge_receipt(record_id):
    """充值凭证: a recharge's (or card opening's) paid and bonus money, payment method and the
    new balance, printable on 80 mm paper."""
    return render_template("cards/recharge_receipt.html",
                           facts=receipts.recharge_receipt(record_id))


@bp.route("/cards/records/<int:record_id>/recharge-receipt.pdf")
def recharge_receipt_pdf(record_id):
    """The 充值凭证 as PDF."""
    return receipt_file(record_id, recharge=True)


@bp.route("/cards/records/<int:record_id>/receipt.pdf")
def receipt_pdf(record_id):
    """The receipt as PDF."""
    return receipt_file(record_id)


@bp.route("/cards/<int:card_id>/status", methods=["POST"])
@requires("manage_cards")
def change_status(card_id):
    """冻结 / 恢复正常 / 挂失."""
    try:
        cards.change_status(actor(), card_id, request.form.get("action", ""),
                            request.form.get("reason", ""))
    except CrmError as error:
        return _card_page(card_id, error.status, error=error, form=request.form)
    flash("卡状态已更新", "success")
    return redirect(url_for("cards.detail", card_id=card_id))


@bp.route("/cards/<int:card_id>/reissue", methods=["POST"])
@requires("manage_cards")
def reissue(card_id):
    """补卡: move the money to a new card."""
    try:
        result = cards.reissue(actor(), card_id, _key(), request.form.get("reason", ""),
                               request.form.get("new_card_no", ""))
    except CrmError as error:
        return _card_page(card_id, error.status, error=error, form=request.form)
    flash(f"已补卡 {result.card_no}，余额 {format_yuan(result.balance)} 已转入新卡", "success")
    return redirect(url_for("cards.detail", card_id=result.card_id))


@bp.route("/cards/<int:card_id>/close", methods=["POST"])
@requires("manage_cards")
def close(card_id):
    """注销: refund the paid part, void the bonus, close."""
    try:
        result = cards.close(actor(), card_id, _key(), request.form.get("reason", ""),
                             request.form.get("payment_method", "cash"))
    except CrmError as error:
        return _card_page(card_id, error.status, error=error, form=request.form)
    flash(f"卡已注销：退还本金 {format_yuan(result.refunded)}，赠送金额 "
          f"{format_yuan(result.bonus_voided)} 清零", "success")
    return redirect(url_for("cards.detail", card_id=card_id))


@bp.route("/cards/records/<int:record_id>/reverse", methods=["POST"])
@requires("reverse")
def reverse(record_id):
    """冲正 (admin)."""
    card_id = int_form(request.form, "card_id", 0)
    try:
        result = cards.reverse(actor(), record_id, _key(), request.form.get("reason", ""))
    except CrmError as error:
        flash_error(error)
        return redirect(url_for("cards.detail", card_id=card_id) if card_id else "/"), 303
    flash(f"已冲正，卡内余额 {format_yuan(result.balance)}", "success")
    return redirect(url_for("cards.detail", card_id=result.card_id))


@bp.route("/recharge-rules", methods=["GET", "POST"])
@admin_required
def rules():
    """充值赠送规则 (admin): 充 X 送 Y."""
    status, error = 200, None
    if request.method == "POST":
        try:
            rule = recharge_rules.create_rule(actor(), _amount("min_amount"), _amount("bonus"))
        except CrmError as failure:
            status, error = failure.status, failure
        else:
            flash(f"已添加：充 {format_yuan(rule.min_amount)} 送 {format_yuan(rule.bonus)}", "success")
            return redirect(url_for("cards.rules"))
    return render_template("cards/rules.html", rules=recharge_rules.active_rules(), error=error,
                           form=request.form), status


@bp.route("/recharge-rules/<int:rule_id>/delete", methods=["POST"])
@admin_required
def delete_rule(rule_id):
    """Switch a recharge rule off."""
    recharge_rules.retire_rule(actor(), rule_id)
    flash("规则已停用", "success")
    return redirect(url_for("cards.rules"))


@bp.route("/ledger/verify", methods=["GET", "POST"])
@admin_required
def verify():
    """账本校验 (admin): recompute every card's chain and balance."""
    report = ledger.verify_and_audit(actor()) if request.method == "POST" else None
    return render_template("cards/verify.html", report=report,
                           last=ledger.last_verification(), user=current_user)
