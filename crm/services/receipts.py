"""凭证: what the receipt of a consumption (消费凭证) or of a recharge or card opening with
money (充值凭证) shows, and the same as an 80 mm wide PDF for receipt printers (the API answers
the consumption's facts, the PDFs print them). A receipt of an entry that was reversed says so,
with the reversal's time and reason."""
from crm.errors import NotFound
from crm.models import Card, CardRecord, Customer, User
from crm.money import format_yuan
from crm.services import cards, pdf
from crm.services.ledger import PAYMENT_METHODS


def reversal_of(record_id):
    """The entry's reversal as {"time", "reason"}, or None when it was not reversed."""
    undo = CardRecord.get_or_none(CardRecord.reverses == record_id)
    if undo is None:
        return None
    reason = undo.remark.split("：", 1)[1] if "：" in undo.remark else undo.remark
    return {"time": undo.created_at, "reason": reason, "record_id": undo.id}


def receipt(record_id):
    """The facts of the receipt of the consumption whose ledger entry is `record_id` (amounts
    in fen); 404 when that entry is not a consumption (or its reversal)."""
    row = cards.receipt(record_id)
    entry = row.card_record
    return {"record_id": entry.id, "time": entry.created_at, "customer_id": row.customer.id,
            "customer_no": row.customer.customer_no, "customer_name": row.customer.name,
            "card_id": row.card.id, "card_no": row.card.card_no,
            "original_amount": row.original_amount, "discount": row.discount,
            "amount": row.amount, "balance": row.balance_after, "operator": row.operator.name,
            "remark": row.remark}


def recharge_receipt(record_id):
    """The facts of the 充值凭证 of the recharge whose ledger entry is `record_id`: paid, the
    bonus of the same request, payment method, the balance after both (fen); 404 otherwise."""
    entry = (CardRecord.select(CardRecord, Card, Customer, User)
             .join(Card, on=(CardRecord.card == Card.id))
             .switch(CardRecord).join(Customer, on=(CardRecord.customer == Customer.id))
             .switch(CardRecord).join(User, on=(CardRecord.operator == User.id))
             .where((CardRecord.id == record_id) & (CardRecord.business_type == "recharge"))
             .first())
    if entry is None:
        raise NotFound("没有这笔充值记录", code="record_not_found")
    # The bonus is posted right after its recharge, in the same request and transaction.
    bonus = cards.bonus_with([entry]).get(entry.id, 0)
    return {"record_id": entry.id, "time": entry.created_at, "customer_id": entry.customer.id,
            "customer_name": entry.customer.name, "card_id": entry.card.id,
            "card_no": entry.card.card_no, "paid": entry.amount, "bonus": bonus,
            "payment_method": PAYMENT_METHODS.get(entry.payment_method, entry.payment_method),
            "balance": entry.balance_after + bonus, "operator": entry.operator.name,
            "remark": entry.remark, "reversal": reversal_of(entry.id)}


def _lines_with_reversal(lines, reversal):
    if reversal:
        lines.append(("状态", f"已冲正（{reversal['time']:%Y-%m-%d %H:%M:%S}，"
                              f"原因：{reversal['reason']}）"))
    return lines


def _print(shop_name, title, lines):
    doc = pdf.document(width_mm=80, height_mm=60 + 7 * len(lines), margin_mm=4)
    doc.add_page()
    doc.set_font("text", "", 13)
    doc.cell(0, 7, shop_name, align="C", new_x="LMARGIN", new_y="NEXT")
    doc.set_font("text", "", 10)
    doc.cell(0, 6, title, align="C", new_x="LMARGIN", new_y="NEXT")
    doc.ln(2)
    for label, value in lines:
        doc.cell(22, 6, label)
        doc.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
    doc.ln(4)
    doc.cell(0, 6, "客户签名：", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


def receipt_pdf(record_id, shop_name):
    """The receipt of the consumption whose ledger entry is `record_id`, as PDF bytes."""
    facts = receipt(record_id)
    lines = [
        ("时间", facts["time"].strftime("%Y-%m-%d %H:%M:%S")),
        ("客户", facts["customer_name"]),
        ("卡号", facts["card_no"]),
        ("消费金额", format_yuan(facts["original_amount"])),
    ]
    if facts["discount"]:
        lines.append(("会员折扣", f"{facts['discount']}%（{facts['discount'] / 10:g} 折）"))
    lines += [("实扣金额", format_yuan(facts["amount"])), ("卡内余额", format_yuan(facts["balance"])),
              ("操作员", facts["operator"]), ("备注", facts["remark"] or "—"),
              ("流水号", str(facts["record_id"]))]
    return _print(shop_name, "消费凭证", _lines_with_reversal(lines, reversal_of(record_id)))


def recharge_receipt_pdf(record_id, shop_name):
    """The 充值凭证 of the recharge whose ledger entry is `record_id`, as PDF bytes."""
    facts = recharge_receipt(record_id)
    lines = [("时间", facts["time"].strftime("%Y-%m-%d %H:%M:%S")), ("客户", facts["customer_name"]),
             ("卡号", facts["card_no"]), ("充值金额", format_yuan(facts["paid"])),
             ("赠送金额", format_yuan(facts["bonus"])), ("支付方式", facts["payment_method"]),
             ("卡内余额", format_yuan(facts["balance"])), ("操作员", facts["operator"]),
             ("备注", facts["remark"] or "—"), ("流水号", str(facts["record_id"]))]
    return _print(shop_name, "充值凭证", _lines_with_reversal(lines, facts["reversal"]))
