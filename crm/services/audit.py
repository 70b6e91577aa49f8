"""The audit log: who did what, when, from where. Rows are only ever added."""
import json

from crm.models import AuditLog
from crm.services import paging


def record(actor, action, object_type="", object_id="", **detail):
    """Append one audit row; `detail` is stored as JSON (e.g. before=…, after=…)."""
    return AuditLog.create(
        user=actor.user,
        username=actor.username,
        ip=actor.ip or "",
        action=action,
        object_type=object_type,
        object_id=str(object_id or ""),
        detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else "",
    )


def record_many(actor, action, object_type, items, stamp=None):
    """Append one audit row per (object id, detail dict) in one bulk statement (an import's
    thousands of new customers); the same rows record() would write."""
    from crm.clock import now

    stamp = stamp or now()
    AuditLog.insert_rows([
        {"created_at": stamp, "user": actor.user.id if actor.user else None,
         "username": actor.username, "ip": actor.ip or "", "action": action,
         "object_type": object_type, "object_id": str(object_id),
         "detail": json.dumps(detail, ensure_ascii=False, default=str) if detail else ""}
        for object_id, detail in items])


def diff(before, after):
    """Field-by-field changes between two dicts: {field: [old, new]} for the fields that differ."""
    return {k: [before.get(k), after.get(k)] for k in after if before.get(k) != after.get(k)}


ACTIONS = {
    "login.success": "登录", "login.failed": "登录失败", "login.locked": "登录锁定",
    "user.create": "新建用户", "user.update": "修改用户", "user.reset_password": "重设密码",
    "user.change_password": "修改自己的密码",
    "customer.create": "新建客户", "customer.update": "修改客户", "customer.archive": "归档客户",
    "customer.restore": "恢复客户", "customer.import": "导入客户",
    "customer_type.create": "新建客户类型", "customer_type.update": "修改客户类型",
    "customer_type.delete": "删除客户类型",
    "card.open": "开卡", "card.freeze": "冻结", "card.unfreeze": "解冻/解挂",
    "card.report_lost": "挂失", "card.reissue": "补卡", "card.close": "注销",
    "ledger.reverse": "冲正", "ledger.verify": "账本校验",
    "recharge_rule.create": "新建充值规则", "recharge_rule.retire": "停用充值规则",
    "token.revoke": "注销登录令牌",
    "backup.create": "备份", "backup.restore": "恢复备份", "backup.download": "下载备份",
    "export": "导出", "user.rename": "用户改名", "customer_type.rename": "客户类型改名",
    "backup.recovery_key": "查看恢复密钥",
}
PER_PAGE = 50


def search(username="", action="", start=None, end=None, page=1):
    """Audit rows, newest first, filtered by user name, action and period; (rows, total)."""
    import datetime

    query = AuditLog.select()
    if username:
        from crm.services.names import username_key

        query = query.where(AuditLog.username == username_key(username))
    if action:
        query = query.where(AuditLog.action == action)
    if start:
        query = query.where(AuditLog.created_at >= datetime.datetime.combine(start,
                                                                             datetime.time()))
    if end:
        query = query.where(AuditLog.created_at < datetime.datetime.combine(
            end + datetime.timedelta(days=1), datetime.time()))
    total = query.count()
    rows = list(query.order_by(AuditLog.id.desc()).paginate(paging(total, page, PER_PAGE)[0],
                                                            PER_PAGE))
    return rows, total
