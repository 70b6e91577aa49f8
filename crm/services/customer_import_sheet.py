"""The customer import's sheet: reading the shop's old Excel sheet (the header on any of its
first lines, what real sheets call each column), checking every row (field rules, phones and
card numbers repeated in the file or held already) into a Preview, and the blank template.
Nothing here writes; crm.services.customer_import imports the valid rows."""
import datetime
import io
import re
from dataclasses import dataclass, field

from crm.errors import CrmError, ValidationError
from crm.models import Card, Customer, CustomerType
from crm.money import parse_optional
from crm.services import cards, customers, excel, ledger, names, validate

COLUMNS = ("姓名", "性别", "电话", "地址", "客户类型", "生日", "备注", "卡号", "期初余额")
MAX_ROWS = 50_000
HEADER_SEARCH_ROWS = 20
# What real sheets call each column (compared without spaces, asterisks and case).
HEADERS = {
    "name": ("姓名", "客户姓名", "名字", "客户名称", "客户", "name"),
    "gender": ("性别", "gender", "sex"),
    "phone": ("电话", "手机", "手机号", "手机号码", "联系电话", "电话号码", "联系方式", "phone", "mobile"),
    "address": ("地址", "住址", "联系地址", "家庭住址", "address"),
    "type": ("客户类型", "类型", "会员类型", "会员等级", "客户分类", "type"),
    "birthday": ("生日", "出生日期", "出生年月日", "birthday"),
    "remark": ("备注", "说明", "remark", "note", "notes"),
    "card_no": ("卡号", "会员卡号", "card_no", "card"),
    "opening": ("期初余额", "卡内余额", "余额", "储值余额", "opening_balance", "balance"),
}
_HEADER_JUNK = re.compile(r"[\s*＊:：()（）]")


@dataclass
class Row:
    """One data row of the sheet: its Excel line number, what it said, and what is wrong."""

    line: int
    raw: dict
    values: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)  # (kind, message)
    unknown_type: str = ""

    def problems(self, create_types):
        """The messages that keep this row out, given whether unknown types will be created."""
        return [m for kind, m in self.errors if not (create_types and kind == "unknown_type")]


@dataclass
class Preview:
    """Every row of a sheet, checked."""

    rows: list
    create_types: bool = False

    @property
    def valid_rows(self):
        """Rows that would be imported."""
        return [r for r in self.rows if not r.problems(self.create_types)]

    @property
    def bad_rows(self):
        """Rows that would be left out, each with its reasons."""
        return [r for r in self.rows if r.problems(self.create_types)]

    @property
    def opening_total(self):
        """The stored value (fen) the import would create: the valid rows' opening balances."""
        return sum(r.values.get("opening") or 0 for r in self.valid_rows)

    @property
    def unknown_types(self):
        """Type names the sheet uses that the shop does not have yet."""
        return sorted({r.unknown_type for r in self.rows if r.unknown_type})


def _header_key(cell):
    text = _HEADER_JUNK.sub("", str(cell or "")).lower()
    for key, spellings in HEADERS.items():
        if text in spellings:
            return key
    return None


def _display(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(" ")
    return str(value).strip()


def read_rows(data):
    """The data rows of the first sheet as Row objects; the header may be on any of the first 20
    lines; blank rows are skipped. Raises ValidationError for a file that is not a usable .xlsx."""
    import openpyxl  # when a file comes, not at start (see crm.services.excel)

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = book.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        columns, rows, header_line = None, [], 0
        for number, cells in enumerate(lines, start=1):
            if columns is None:
                keys = {_header_key(c): i for i, c in reversed(list(enumerate(cells or ())))}
                if "name" in keys and "phone" in keys:
                    columns, header_line = {k: i for k, i in keys.items() if k}, number
                elif number >= HEADER_SEARCH_ROWS:
                    break
                continue
            # Every line read counts, blank or not: a sheet of a million formatted blank lines
            # (144 KB) would otherwise keep the reader busy for minutes. Reading stops here.
            if number - header_line > MAX_ROWS:
                raise ValidationError(f"表格超过 {MAX_ROWS} 行（空行也算）：请删去表格末尾多余的空行，"
                                      "或分成几个文件", code="too_many_rows")
            raw = {k: (cells[i] if i < len(cells) else None) for k, i in columns.items()}
            if all(_display(v) == "" for v in raw.values()):
                continue
            rows.append(Row(line=number, raw=raw))
        book.close()
    except CrmError:
        raise
    except Exception:  # noqa: BLE001 — any failure to read is the same answer to the user
        raise ValidationError("无法读取文件：请上传 Excel 的 .xlsx 文件"
                              "（旧版 .xls 请先在 Excel 中另存为 .xlsx）", code="invalid_file") from None
    if columns is None:
        raise ValidationError(f"找不到表头：前 {HEADER_SEARCH_ROWS} 行里需要有“姓名”和“电话”两列。"
                              "可以下载导入模板对照", code="missing_header")
    return rows


def _check_row(row, type_ids):
    raw = row.raw
    checks = {
        "name": lambda: validate.text(raw.get("name"), "姓名", "name", 50, required=True),
        "gender": lambda: customers.gender(_display(raw.get("gender"))),
        "phone": lambda: customers.phone(raw.get("phone")),
        "address": lambda: validate.text(raw.get("address"), "地址", "address", 200),
        "birthday": lambda: validate.date(raw.get("birthday"), "生日", "birthday"),
        "remark": lambda: validate.text(raw.get("remark"), "备注", "remark", 500),
    }
    for key, check in checks.items():
        try:
            row.values[key] = check()
        except ValidationError as error:
            row.errors.append((key, error.message))
    card_no, opening = _display(raw.get("card_no")), _display(raw.get("opening"))
    try:
        row.values["card_no"] = cards.check_card_no(card_no) if card_no else ""
    except ValidationError as error:
        row.errors.append(("card_no", error.message))
    try:
        # Opening balances are money: each within the per-operation limit, like a recharge.
        row.values["opening"] = parse_optional(opening, ledger.Settings.max_amount,
                                               "opening") or 0
    except ValidationError as error:
        row.errors.append(("opening", f"期初余额：{error.message}"))
    type_name = names.type_name(_display(raw.get("type")))[:50]
    row.values["type_name"] = type_name
    if type_name and type_name not in type_ids:
        row.unknown_type = type_name
        row.errors.append(("unknown_type", f"客户类型“{type_name}”不存在"))


def _unique_in_file(rows, key, label):
    """Flag every row whose `key` value an earlier row already has; return the distinct values."""
    first_line = {}
    for row in rows:
        value = row.values.get(key)
        if value:
            if value in first_line:
                row.errors.append((key, f"{label}与第 {first_line[value]} 行重复"))
            else:
                first_line[value] = row.line
    return list(first_line)


def _already_held(field, values, *extra):
    """{value: row} for the values that rows of `field`'s table already hold (500 at a time)."""
    found = {}
    for start in range(0, len(values), 500):
        for held in (field.model.select(field, *extra)
                     .where(field.in_(values[start:start + 500]))):
            found[getattr(held, field.name)] = held
    return found


def preview(data, create_types=False):
    """Read and check every row: field rules, phones and card numbers repeated in the file or
    already used by another customer or card."""
    rows = read_rows(data)
    type_ids = {t.name: t.id for t in CustomerType.select(CustomerType.id, CustomerType.name)}
    for row in rows:
        _check_row(row, type_ids)
    for row, kind, message in _stored_clashes(rows, _unique_in_file(rows, "phone", "电话"),
                                              _unique_in_file(rows, "card_no", "卡号")):
        row.errors.append((kind, message))
    return Preview(rows=rows, create_types=create_types)


def _stored_clashes(rows, phones, card_nos):
    """(row, field, message) for each of `rows` whose phone or card number (among `phones`,
    `card_nos`) a stored customer or card already has: the preview's check, and each part's
    again inside its transaction."""
    holders = _already_held(Customer.phone, phones, Customer.name, Customer.customer_no)
    taken = _already_held(Card.card_no, card_nos)
    for row in rows:
        holder = holders.get(row.values.get("phone"))
        if holder:
            yield row, "phone", customers.duplicate_phone(holder).message
        if row.values.get("card_no") in taken:
            yield row, "card_no", f"卡号 {row.values['card_no']} 已存在"


TEMPLATE_FILENAME = "客户导入模板.xlsx"


def template(shop_name=""):
    """A blank import template (.xlsx) with a title row, the columns (the reader finds a header
    within the first 20 rows) and a sheet of instructions; set up for A4."""
    import openpyxl
    from openpyxl.styles import Font

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "客户"
    sheet.append([f"{shop_name} · 客户导入模板（第 3 行起填写，每行一位客户）".strip(" ·")])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    sheet.append(COLUMNS)
    for item in sheet[3]:
        item.font = Font(bold=True)
    for column, width in zip("ABCDEFGHI", (12, 8, 16, 30, 12, 12, 30, 14, 12), strict=True):
        sheet.column_dimensions[column].width = width
    excel.page_setup(sheet, header_row=3, landscape=True)
    notes = book.create_sheet("填写说明")
    for line in (
        ("列", "说明"),
        ("姓名", "必填，最多 50 个字"),
        ("性别", "男 / 女 / 未知（也认 M、F、male、female；空白为未知）"),
        ("电话", "必填，11 位手机号或带区号的固定电话；不能与已有客户或本表其他行重复"),
        ("地址", "可空，最多 200 个字"),
        ("客户类型", "可空；须是系统里已有的类型名称，没有的可在预览时选择自动创建"),
        ("生日", "可空，如 1990-05-01"),
        ("备注", "可空，最多 500 个字"),
        ("卡号", "可空；填了就为该客户开这张会员卡（4–32 位字母、数字或 -，不能与已有卡号重复）"),
        ("期初余额", "可空；从旧账本带过来的卡内余额（元），记为一笔“期初”流水。"
                     "填了余额但没填卡号时自动生成卡号"),
        ("", "表头可以不在第一行（前 20 行内即可），空行会被跳过。"),
    ):
        notes.append(line)
    notes.column_dimensions["A"].width = 10
    notes.column_dimensions["B"].width = 80
    for page in (sheet, notes):
        excel.keep_text(page)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
