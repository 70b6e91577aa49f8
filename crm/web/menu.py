"""The sidebar: the pages in the four groups staff know from back offices (收银 / 会员 / 报表 /
系统), each with its icon (Bootstrap Icons, vendored), who may see it, and which pages belong to
it — so every page marks exactly one item active and shows its breadcrumb (group › item)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    endpoint: str
    label: str
    icon: str  # a Bootstrap Icons name: static/vendor/bootstrap-icons-*/
    access: str | None = None  # None: everyone; "admin"; "can:<permission>"
    owns: tuple = ()  # further endpoints (or "blueprint." prefixes) whose pages are this item's


HOME = Item("main.index", "工作台", "house-door")
GROUPS = (
    ("收银", (
        Item("cards.counter", "消费收银", "upc-scan", "can:consume",
             ("cards.consume", "cards.receipt")),
        Item("reports.closing", "日结交班", "cash-coin", "can:statistics"),
    )),
    ("会员", (
        Item("customers.index", "客户管理", "people", None,
             ("customers.", "cards.detail", "cards.open_card", "cards.recharge",
              "cards.change_status", "cards.reissue", "cards.close", "cards.reverse",
              "cards.recharge_receipt")),
        Item("customer_types.index", "客户类型", "tags", "admin", ("customer_types.",)),
        Item("cards.rules", "充值规则", "gift", "admin", ("cards.delete_rule",)),
    )),
    ("报表", (
        Item("reports.find", "对账查询", "journal-text", None, ("reports.statement",)),
        Item("reports.dashboard", "统计分析", "bar-chart-line", "can:statistics"),
    )),
    ("系统", (
        Item("cards.verify", "账本校验", "shield-check", "admin"),
        Item("admin.monitor", "数据监控", "activity", "admin"),
        Item("backups.index", "备份恢复", "hdd-stack", "admin", ("backups.",)),
        Item("admin.users", "系统用户", "person-gear", "admin",
             ("admin.create_user", "admin.edit_user", "admin.reset_password")),
        Item("admin.audit_log", "操作日志", "list-check", "admin"),
        Item("admin.tokens", "登录令牌", "key", "admin", ("admin.revoke_token",)),
        Item("admin.api_docs", "接口文档", "code-slash", "admin"),
        Item("auth.password", "修改密码", "lock", None),
    )),
)


def allowed(item, is_admin, can):
    """May this user see the item? `can(permission)` tells their permissions."""
    return item.access is None or is_admin or (item.access.startswith("can:")
                                               and can(item.access[4:]))


def for_user(is_admin, can):
    """The groups with the items this user may see; a group with none left out."""
    shown = [(group, [i for i in members if allowed(i, is_admin, can)]) for group, members in GROUPS]
    return [(group, members) for group, members in shown if members]


def items():
    """(group or None, item) for every item, the home page first."""
    return [(None, HOME)] + [(group, item) for group, members in GROUPS for item in members]


def current(endpoint):
    """(group, item) the page of `endpoint` belongs to: its own item, else the item that names
    it, else the item that names its blueprint; (None, None) for pages outside the menu."""
    endpoint = endpoint or ""
    every = items()
    for group, item in every:
        if item.endpoint == endpoint:
            return group, item
    for group, item in every:
        if endpoint in item.owns:
            return group, item
    for group, item in every:
        if any(own.endswith(".") and endpoint.startswith(own) for own in item.owns):
            return group, item
    return None, None
