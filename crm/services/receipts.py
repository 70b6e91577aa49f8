"""消费凭证: what the receipt of a consumption shows, and the same as an 80 mm wide PDF for
receipt printers (the API answers the facts, the PDF prints them)."""
from crm.money import format_yuan
from crm.services import cards, pdf


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
        lines.append(("会员折扣", f"{facts['discount']}%"))
    lines += [("实扣金额", format_yuan(facts["amount"])), ("卡内余额", format_yuan(facts["balance"])),
              ("操作员", facts["operator"]), ("备注", facts["remark"] or "—"),
              ("流水号", str(facts["record_id"]))]
    doc = pdf.document(width_mm=80, height_mm=60 + 7 * len(lines), margin_mm=4)
    doc.add_page()
    doc.set_font("text", "", 13)
    doc.cell(0, 7, shop_name, align="C", new_x="LMARGIN", new_y="NEXT")
    doc.set_font("text", "", 10)
    doc.cell(0, 6, "消费凭证", align="C", new_x="LMARGIN", new_y="NEXT")
    doc.ln(2)
    for label, value in lines:
        doc.cell(22, 6, label)
        doc.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
    doc.ln(4)
    doc.cell(0, 6, "客户签名：", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())
