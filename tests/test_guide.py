"""docs/使用说明.md, the staff's guide, says what the pages say: its sections are there, and every
on-screen label it quotes in 「…」 is text the pages really show — so the guide cannot drift from
them unnoticed. A label's "…" stands for a part the page fills in (an amount, the shop's name).

Where page text comes from: the templates (Jinja comments left out), the sidebar (crm/web/menu.py)
and the few label tables the pages render from code (period buttons, payment methods, card
states, roles, permissions, statement totals). Pure: files and constants, no database, no app."""
import re
from pathlib import Path

from crm.models import Card, User
from crm.services.ledger import BUSINESS_TYPES, PAYMENT_METHODS
from crm.services.statement_export import TOTAL_LABELS
from crm.services.statements import STATEMENT_PRESETS
from crm.services.users import PERMISSIONS
from crm.web import menu

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "使用说明.md").read_text(encoding="utf-8")
SECTIONS = ("收银", "充值", "开卡、补卡与挂失", "对账单", "日结", "备份与恢复", "新员工账号", "常见问题")
# The labels the guide must name (menu items and the buttons of the everyday tasks).
REQUIRED = ("工作台", "消费收银", "客户管理", "对账查询", "日结交班", "备份恢复", "系统用户",
            "确认消费", "确认充值", "实扣：", "打印凭证", "消费凭证", "充值凭证", "开卡", "冻结",
            "挂失", "补卡（余额转入新卡，原卡注销）", "注销（退还本金 …，赠送不退）", "今天", "本周",
            "本月", "上月", "全部（开卡以来）", "导出 Excel", "导出 PDF", "打印", "交班人签名：",
            "立即备份", "恢复到此备份", "查看并打印恢复密钥", "创建用户", "重设密码", "冲正")


def _page_text():
    templates = [re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S)
                 for path in sorted((ROOT / "templates").rglob("*.html"))]
    from_code = [item.label for _group, item in menu.items()] + [group for group, _ in menu.GROUPS]
    for table in (STATEMENT_PRESETS, PAYMENT_METHODS, BUSINESS_TYPES, Card.STATUSES, User.ROLES,
                  PERMISSIONS, dict(TOTAL_LABELS)):
        from_code += list(table.values())
    return "\n".join(templates + from_code)


PAGES = _page_text()
LABELS = sorted(set(re.findall(r"「([^「」\n]+)」", GUIDE)))


def test_sections():
    """Each task has its `## ` section, named as the issue names them."""
    headings = re.findall(r"^## (.+?)\s*$", GUIDE, flags=re.M)
    for section in SECTIONS:
        assert section in headings, section


def test_guide_quotes_labels():
    """The guide quotes the pages' labels in 「」 (a guide without them would check nothing)."""
    assert len(LABELS) >= 80, LABELS
    missing = [label for label in REQUIRED if label not in LABELS]
    assert not missing, missing


def _on_a_page(label):
    parts = [part.strip() for part in label.split("…") if part.strip()]
    return bool(parts) and all(part in PAGES for part in parts)


def test_labels_are_on_the_pages():
    """Every quoted label is page text, word for word ("…": a part the page fills in)."""
    missing = [label for label in LABELS if not _on_a_page(label)]
    assert not missing, f"quoted in docs/使用说明.md but on no page: {missing}"
