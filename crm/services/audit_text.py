"""The audit log in words (issue 19.9): each row's object by its name or number (with the page
that shows it) and each change in Chinese — field names, old → new, money in yuan — instead of
the stored JSON with English keys and fen. The stored rows are unchanged; this only reads them."""
import json
from dataclasses import dataclass, field

from crm.models import Card, CardRecord, Customer, CustomerType, RechargeRule, User
from crm.money import format_yuan
from crm.services.ledger import BUSINESS_TYPES, PAYMENT_METHODS

FIELDS = {
    "name": "名称", "gender": "性别", "phone": "电话", "address": "地址", "type": "客户类型",
    "birthday": "生日", "remark": "备注", "archived": "已归档", "description": "说明",
    "discount": "会员折扣", "min_amount": "充值满", "bonus": "赠送", "reason": "原因",
    "card_no": "卡号", "new_card": "新卡号", "refunded": "退还本金", "bonus_voided": "作废赠送",
    "customer": "客户", "role": "角色", "active": "启用", "display_name": "姓名",
    "permissions": "权限", "username": "用户名", "kind": "类型", "verified": "已核对",
    "ok": "结果正确", "cards_checked": "核对卡数", "entries_checked": "核对流水笔数",
    "problems": "问题", "safety_backup": "恢复前的安全备份", "ledger_ok": "账本校验通过",
    "counts": "行数", "renamed": "改名", "size": "大小（字节）", "copy": "副本",
    "reversal_ids": "冲正流水", "user_id": "用户", "failures": "失败次数",
    "window_minutes": "时段（分钟）", "source": "来源文件", "imported": "导入行数",
    "cards": "开卡数", "parts": "批数", "opening_total": "期初余额合计", "lines": "行",
    "old": "原名", "new": "新名", "file": "文件", "endpoint": "页面", "ip": "地址",
    "rows": "行数", "stopped": "停止于", "skipped": "跳过", "fingerprint": "密钥指纹",
    "reversed_ids": "被冲正流水",
}
MONEY = {"min_amount", "bonus", "refunded", "bonus_voided", "opening_total", "amount"}
ROLES = {"admin": "管理员", "operator": "操作员"}
KINDS = {"manual": "手动", "daily": "每日", "safety": "恢复前", "upload": "上传"}
OBJECTS = {"customer": "客户", "card": "会员卡", "card_record": "流水", "customer_type": "客户类型",
           "user": "用户", "recharge_rule": "充值规则", "backup": "备份", "auth_token": "登录令牌",
           "ledger": "账本"}


@dataclass
class Described:
    """One audit row for people: its object (label and, when there is one, the page showing
    it: an endpoint and its arguments) and its facts as lines of text."""

    object_label: str
    link: tuple | None = None  # (endpoint, {argument: value})
    lines: list = field(default_factory=list)


def _value(name, value):
    if isinstance(value, bool):
        return "是" if value else "否"
    if value is None or value == "":
        return "（空）"
    if name in MONEY and isinstance(value, int):
        return format_yuan(value)
    if name == "discount" and isinstance(value, int):
        return f"{value}%（{value / 10:g} 折）" if value < 100 else f"{value}%（不打折）"
    if name == "role":
        return ROLES.get(value, value)
    if name == "kind":
        return KINDS.get(value, value)
    if name == "payment_method":
        return PAYMENT_METHODS.get(value, value)
    if name == "permissions" and isinstance(value, dict):
        return "、".join(f"{k}{'开' if v else '关'}" for k, v in value.items()) or "（无）"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)[:200]
    return str(value)


# What a field is called for one kind of object where the shared name would mislead.
OWN_FIELDS = {"customer": {"name": "姓名"}}


def _lines(detail, object_type=""):
    """The facts of a row's stored detail, in words."""
    own = OWN_FIELDS.get(object_type, {})

    def _label(name):
        return own.get(name) or FIELDS.get(name, name)

    lines = []
    for name, value in detail.items():
        if name == "changes" and isinstance(value, dict):
            lines += [f"{_label(k)}：{_value(k, v[0])} → {_value(k, v[1])}"
                      for k, v in value.items() if isinstance(v, list) and len(v) == 2]
        elif name in ("before", "after") and isinstance(value, dict):
            prefix = "删除前" if name == "before" else ""
            lines += [f"{prefix}{_label(k)}：{_value(k, v)}" for k, v in value.items()
                      if v not in ("", None, False)]
        else:
            lines.append(f"{_label(name)}：{_value(name, value)}")
    return lines


def _names(rows):
    """The objects the rows point at, looked up once per kind: {(type, id): (label, link)}."""
    wanted = {}
    for row in rows:
        if row.object_id and row.object_id.isdigit():
            wanted.setdefault(row.object_type, set()).add(int(row.object_id))
    found = {}
    ids = wanted.get("customer", set())
    for c in Customer.select(Customer.id, Customer.name, Customer.customer_no).where(
            Customer.id.in_(list(ids) or [0])):
        found[("customer", c.id)] = (f"客户 {c.name}（{c.customer_no}）",
                                     ("customers.detail", {"customer_id": c.id}))
    for c in Card.select(Card.id, Card.card_no).where(Card.id.in_(list(wanted.get("card", ())) or [0])):
        found[("card", c.id)] = (f"会员卡 {c.card_no}", ("cards.detail", {"card_id": c.id}))
    records = CardRecord.select(CardRecord.id, CardRecord.card, CardRecord.business_type,
                                CardRecord.amount).where(
        CardRecord.id.in_(list(wanted.get("card_record", ())) or [0]))
    for r in records:
        found[("card_record", r.id)] = (
            f"流水 #{r.id}（{BUSINESS_TYPES.get(r.business_type, r.business_type)} "
            f"{format_yuan(r.amount)}）", ("cards.detail", {"card_id": r.card_id}))
    for t in CustomerType.select(CustomerType.id, CustomerType.name).where(
            CustomerType.id.in_(list(wanted.get("customer_type", ())) or [0])):
        found[("customer_type", t.id)] = (f"客户类型 {t.name}",
                                          ("customer_types.edit", {"type_id": t.id}))
    for u in User.select(User.id, User.username).where(
            User.id.in_(list(wanted.get("user", ())) or [0])):
        found[("user", u.id)] = (f"用户 {u.username}", ("admin.edit_user", {"user_id": u.id}))
    for r in RechargeRule.select().where(
            RechargeRule.id.in_(list(wanted.get("recharge_rule", ())) or [0])):
        found[("recharge_rule", r.id)] = (
            f"充值规则 充 {format_yuan(r.min_amount)} 送 {format_yuan(r.bonus)}", None)
    return found


def describe(rows):
    """{row id: Described} for a page of audit rows."""
    names = _names(rows)
    out = {}
    for row in rows:
        key = (row.object_type, int(row.object_id)) if row.object_id.isdigit() else None
        label, link = names.get(key, (None, None)) if key else (None, None)
        if label is None:
            kind = OBJECTS.get(row.object_type, row.object_type)
            label = f"{kind} {row.object_id}".strip() if row.object_id else kind
        try:
            detail = json.loads(row.detail) if row.detail else {}
        except ValueError:
            detail = {"": row.detail}
        out[row.id] = Described(label, link, _lines(detail, row.object_type)
                                if isinstance(detail, dict) else [str(detail)])
    return out
