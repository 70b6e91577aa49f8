"""消费凭证: the receipt of a consumption, as an 80 mm wide PDF for receipt printers."""
from crm.money import format_yuan
from crm.services import cards, pdf


def receipt_pdf(record_id, shop_name):
    """The receipt of the consumption whose ledger entry is `record_id`, as PDF bytes."""
    row = cards.receipt(record_id)
    entry = row.card_record
    lines = [
        ("时间", entry.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("客户", row.customer.name),
        ("卡号", row.card.card_no),
        ("消费金额", format_yuan(row.original_amount)),
    ]
    if row.discount:
        lines.append(("会员折扣", f"{row.discount}%"))
    lines += [("实扣金额", format_yuan(row.amount)), ("卡内余额", format_yuan(row.balance_after)),
              ("操作员", row.operator.name), ("备注", row.remark or "—"), ("流水号", str(entry.id))]
    doc = pdf.document(width_mm=80, height_mm=60 + 7 * len(lines), margin_mm=4)
    doc.add_page()
    doc.set_font("text", "B", 12)
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
