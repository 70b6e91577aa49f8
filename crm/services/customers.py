"""Customers (客户信息管理): create, edit, archive, find. Numbers are handed out by t_counter."""
import json
import re
import unicodedata

from peewee import JOIN, SQL, IntegrityError, fn

from crm import clock
from crm.clock import now
from crm.db import beside, db
from crm.errors import Conflict, NotFound, ValidationError
from crm.models import AuditLog, Card, Counter, Customer, CustomerType
from crm.search_index import CustomerGram
from crm.services import audit, excel, ledger, page_number, paging, validate

GENDERS = ("男", "女", "未知")
_GENDER_WORDS = {
    "男": "男", "男性": "男", "先生": "男", "m": "男", "male": "男", "man": "男",
    "女": "女", "女性": "女", "女士": "女", "f": "女", "female": "女", "woman": "女",
    "": "未知", "未知": "未知", "保密": "未知", "u": "未知", "unknown": "未知",
}
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")  # ASCII digits: full-width ones are made plain first
_LANDLINE = re.compile(r"^(0[0-9]{2,3})?[2-9][0-9]{6,7}$")
_PHONE_JUNK = re.compile(r"[\s\-()（）]")

SORTS = {
    "created": "最新建档",
    "name": "姓名",
    "last_visit": "最近到店",
}
PER_PAGE = 20

# Field names as staff read them, for messages and the edit history.
LABELS = {"name": "姓名", "gender": "性别", "phone": "电话", "address": "地址", "type": "客户类型",
          "birthday": "生日", "remark": "备注", "archived": "归档"}


def gender(value):
    """男 / 女 / 未知 from what sheets and forms say ("M", "female", "女士", blank …)."""
    word = str(value if value is not None else "").strip()
    found = _GENDER_WORDS.get(word.lower()) or _GENDER_WORDS.get(word)
    if found is None:
        raise ValidationError(f"性别只能是 男、女 或 未知（收到“{word[:10]}”）",
                              code="invalid_gender", field="gender")
    return found


def phone(value):
    """A mainland mobile number (11 digits) or a landline, as digits only."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a sheet that stored the number as a number
    raw = unicodedata.normalize("NFKC", str(value if value is not None else "")).strip()
    if not raw:
        raise ValidationError("请填写电话", code="missing_phone", field="phone")
    digits = _PHONE_JUNK.sub("", raw)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and _MOBILE.match(digits[len(prefix):]):
            digits = digits[len(prefix):]
    if not (digits.isascii() and digits.isdigit()):
        raise ValidationError(f"电话只能包含数字（收到“{raw[:20]}”）", code="invalid_phone",
                              field="phone")
    if not (_MOBILE.match(digits) or _LANDLINE.match(digits)):
        raise ValidationError(f"电话号码“{raw[:20]}”不正确：请填写 11 位手机号，或带区号的固定电话",
                              code="invalid_phone", field="phone")
    return digits


def clean(data, partial=False):
    """Checked values of a customer form, JSON body or sheet row. With partial, only the keys
    present are checked and returned. `type_id` must name an existing type."""
    checks = {
        "name": lambda v: validate.text(v, "姓名", "name", 50, required=True),
        "gender": gender,
        "phone": phone,
        "address": lambda v: validate.text(v, "地址", "address", 200),
        "type_id": _type_id,
        "birthday": lambda v: validate.date(v, "生日", "birthday"),
        "remark": lambda v: validate.text(v, "备注", "remark", 500),
    }
    keys = [k for k in checks if k in data] if partial else list(checks)
    return {k: checks[k](data.get(k)) for k in keys}


def _type_id(value):
    type_id = validate.record_id(value, "客户类型", "type_id")
    if type_id is not None and not CustomerType.select().where(CustomerType.id == type_id).exists():
        raise ValidationError("所选客户类型不存在", code="invalid_type_id", field="type_id")
    return type_id


def duplicate_phone(existing):
    """The Conflict for a phone number that another customer already has."""
    return Conflict(f"电话 {existing.phone} 已被客户“{existing.name}”（编号 {existing.customer_no}）使用",
                    code="duplicate_phone", field="phone")


def _check_phone_free(number, except_id=None):
    query = Customer.select().where(Customer.phone == number)
    if except_id is not None:
        query = query.where(Customer.id != except_id)
    existing = query.first()
    if existing:
        raise duplicate_phone(existing)


def format_number(number):
    """Customer numbers are six digits and up: 000001."""
    return f"{number:06d}"


def snapshot(customer):
    """The audited fields of a customer, with the type by name."""
    ctype = CustomerType.get_or_none(CustomerType.id == customer.type_id) if customer.type_id else None
    return {"name": customer.name, "gender": customer.gender, "phone": customer.phone,
            "address": customer.address, "type": ctype.name if ctype else "",
            "birthday": customer.birthday.isoformat() if customer.birthday else "",
            "remark": customer.remark, "archived": bool(customer.archived)}


def create_customer(actor, data):
    """Create a customer; a phone already in use is a Conflict naming its holder."""
    values = clean(data)
    try:
        with db.atomic():
            _check_phone_free(values["phone"])
            number = format_number(Counter.take("customer"))
            values["type"] = values.pop("type_id")
            customer = Customer.create(
                customer_no=number, created_by=actor.user,
                search_text=Customer.make_search_text(values["name"], values["phone"], number),
                **values)
            CustomerGram.add([(customer.id, customer.name, customer.phone, number)])
            audit.record(actor, "customer.create", "customer", customer.id,
                         after=snapshot(customer))
    except IntegrityError:  # the same phone saved at the same moment by someone else
        _check_phone_free(values["phone"])
        raise
    return customer


def get_customer(customer_id):
    """The customer with its type, or NotFound."""
    customer = (Customer.select(Customer, CustomerType)
                .join(CustomerType, on=(Customer.type == CustomerType.id), join_type=JOIN.LEFT_OUTER)
                .where(Customer.id == customer_id).first())
    if customer is None:
        raise NotFound("客户不存在", code="customer_not_found")
    return customer


def update_customer(actor, customer_id, data):
    """Change the fields given; the audit log keeps each change, before → after."""
    values = clean(data, partial=True)
    try:
        with db.atomic():
            # Lock the row before reading it: the index change is computed from what it held,
            # and two edits at once must not both start from the same old values.
            ledger.lock_customer(customer_id)
            customer = get_customer(customer_id)
            if "phone" in values:
                _check_phone_free(values["phone"], except_id=customer.id)
            before = snapshot(customer)
            if "type_id" in values:
                values["type"] = values.pop("type_id")
            if values:
                found_by = (values.get("name", customer.name), values.get("phone", customer.phone),
                            customer.customer_no)
                values["search_text"] = Customer.make_search_text(*found_by)
                Customer.update(**values, updated_at=now()).where(Customer.id == customer.id).execute()
                CustomerGram.change(customer.id, (customer.name, customer.phone,
                                                  customer.customer_no), found_by,
                                    CustomerGram.card_numbers(customer.id))
            changes = audit.diff(before, snapshot(get_customer(customer.id)))
            if changes:
                audit.record(actor, "customer.update", "customer", customer.id, changes=changes)
    except IntegrityError:
        _check_phone_free(values["phone"], except_id=customer_id)
        raise
    return get_customer(customer_id)


def set_archived(actor, customer_id, archived):
    """Archive (hide) or restore a customer. Customers are never deleted: their money history stays."""
    with db.atomic():
        customer = get_customer(customer_id)
        if bool(customer.archived) != archived:
            Customer.update(archived=archived, updated_at=now()).where(Customer.id == customer.id).execute()
            audit.record(actor, "customer.archive" if archived else "customer.restore", "customer",
                         customer.id, changes={"archived": [not archived, archived]})
    return get_customer(customer_id)


def search(q="", type_id=None, archived=False, sort="created", page=1, per_page=PER_PAGE):
    """One page of customers matching `q` (part of name, phone or number) and the filters;
    returns (customers, total). archived: False (default), True, or None for both."""
    matching = Customer.search(q, type_id=type_id, archived=archived)
    order = {
        # search_text starts with the lower-cased name: the covering index sorts by name.
        "name": (Customer.search_text, Customer.id),
        # DESC puts NULL (never visited) last on both SQLite and MySQL.
        "last_visit": (Customer.last_visit_at.desc(), Customer.id.desc()),
    }.get(sort, (Customer.id.desc(),))

    def page_ids(number):
        if q:
            # A search reads every index entry anyway: one pass gives the page and, through a
            # window count, the total.
            return list(matching.select(Customer.id, fn.COUNT(SQL("*")).over())
                        .order_by(*order).paginate(number, per_page).tuples())
        # Without one, the index order lets the database stop after the page; counting is cheap.
        return [(row[0], None) for row in matching.select(Customer.id).order_by(*order)
                .paginate(number, per_page).tuples()]

    page = page_number(page)
    found = page_ids(page)
    total = found[0][1] if found and q else None
    if total is None:
        total = matching.count()
        if not found and total:  # past the last page: show the last one
            page, _ = paging(total, page, per_page)
            found = page_ids(page)
    ids = [row[0] for row in found]
    rows = {c.id: c for c in (Customer.select(Customer, CustomerType)
                              .join(CustomerType, JOIN.LEFT_OUTER,
                                    on=(Customer.type == CustomerType.id))
                              .where(Customer.id.in_(ids or [0])))}
    return [rows[i] for i in ids], total


def type_choices():
    """(id, name) of every type, for filter and form drop-downs."""
    return list(CustomerType.select(CustomerType.id, CustomerType.name).order_by(CustomerType.name))


ACTIONS = {"customer.create": "新建", "customer.update": "修改", "customer.archive": "归档",
           "customer.restore": "恢复"}


def history(customer_id, limit=50):
    """The customer's audit trail, newest first: dicts of time, user, action and the changes as
    (field label, before, after)."""
    entries = []
    for row in (AuditLog.select()
                .where((AuditLog.object_type == "customer") & (AuditLog.object_id == str(customer_id)))
                .order_by(AuditLog.id.desc()).limit(limit)):
        detail = json.loads(row.detail) if row.detail else {}
        if "changes" in detail:
            changes = [(LABELS.get(k, k), _shown(v[0]), _shown(v[1]))
                       for k, v in detail["changes"].items()]
        else:
            changes = [(LABELS.get(k, k), "", _shown(v))
                       for k, v in detail.get("after", {}).items() if v not in ("", None, False)]
        entries.append({"time": row.created_at, "user": row.username, "ip": row.ip,
                        "action": ACTIONS.get(row.action, row.action), "changes": changes})
    return entries


def _shown(value):
    if isinstance(value, bool):
        return "是" if value else "否"
    return "" if value is None else str(value)


def card_totals(customer_ids):
    """{customer id: (cards, money in fen across them)} for a page of customers: one grouped
    read of their cards (closed cards count as cards; their balance is 0)."""
    customer_ids = list(customer_ids)
    if not customer_ids:
        return {}
    rows = (Card.select(Card.customer, fn.COUNT(Card.id), fn.COALESCE(fn.SUM(Card.money), 0))
            .where(Card.customer.in_(customer_ids)).group_by(Card.customer).tuples())
    return {customer_id: (int(count), int(money)) for customer_id, count, money in rows}


def parse_filters(args):
    """The list filters from query parameters (web and API alike); bad values fall back to the
    defaults rather than failing, as a hand-edited address bar should."""
    archived = {"": False, "0": False, "1": True, "all": None}.get(args.get("archived", ""), False)
    page = max(1, validate.ascii_int(args.get("page"), 1))
    type_id = validate.ascii_int(args.get("type_id"), 0) or None
    sort = args.get("sort") if args.get("sort") in SORTS else "created"
    return {"q": (args.get("q") or "").strip()[:50], "type_id": type_id, "archived": archived,
            "sort": sort, "page": page}


EXPORT_COLUMNS = (
    excel.Column("客户编号", 10), excel.Column("姓名", 12), excel.Column("性别", 6),
    excel.Column("电话", 14), excel.Column("卡号", 22), excel.Column("卡数", 6, "count"),
    excel.Column("余额", 12, "money"), excel.Column("地址", 26), excel.Column("客户类型", 12),
    excel.Column("生日", 12, "date"), excel.Column("备注", 24),
    excel.Column("建档时间", 19, "datetime"), excel.Column("最近到店", 19, "datetime"),
    excel.Column("状态", 8))
EXPORT_HEADERS = tuple(column.header for column in EXPORT_COLUMNS)


def export_rows(q="", type_id=None, archived=False, sort="created", **_):
    """Every customer matching the filters (all pages), as rows for the Excel export, with the
    numbers of their cards, how many and the money on them (read beside the customers, both in
    customer order: two streams, no query per customer)."""
    query = (Customer.search(q, type_id=type_id, archived=archived)
             .select(Customer, CustomerType)
             .join(CustomerType, JOIN.LEFT_OUTER, on=(Customer.type == CustomerType.id))
             .order_by(Customer.id))
    listed = Customer.search(q, type_id=type_id, archived=archived).select(Customer.id)
    held = (Card.select(Card.customer, Card.card_no, Card.money, Card.status)
            .where(Card.customer.in_(listed)).order_by(Card.customer, Card.id).tuples().iterator())
    for c, cards in beside(query.iterator(), held, key=lambda customer: customer.id):
        numbers = [no + ("（已注销）" if status == "closed" else "") for _, no, _, status in cards]
        money = sum(fen for _, _, fen, _ in cards)
        yield (c.customer_no, c.name, c.gender, c.phone, "、".join(numbers), len(numbers), money,
               c.address, c.type.name if c.type_id else "", c.birthday, c.remark, c.created_at,
               c.last_visit_at, "已归档" if c.archived else "正常")


def export_filename():
    """客户名单_<today>.xlsx, the same from the page and the API."""
    return f"客户名单_{clock.today()}.xlsx"


def _filters_line(filters):
    """What the export holds, in words: the search, the type, the state."""
    said = [f"查找“{filters['q']}”" if filters.get("q") else ""]
    ctype = CustomerType.get_or_none(CustomerType.id == filters["type_id"]) \
        if filters.get("type_id") else None
    said.append(f"类型：{ctype.name}" if ctype else "")
    said.append({False: "正常客户", True: "已归档客户", None: "全部客户"}[filters.get("archived", False)])
    return "范围：" + "，".join(part for part in said if part)


def export_xlsx(filters, shop_name=""):
    """Every customer under the list filters (parse_filters; the page is ignored) as an .xlsx
    (bytes): what the web page's and the API's Excel export send."""
    return excel.report("客户名单", f"{shop_name} · 客户名单".strip(" ·"),
                        [_filters_line(filters), excel.made_at()], EXPORT_COLUMNS,
                        export_rows(**filters))
