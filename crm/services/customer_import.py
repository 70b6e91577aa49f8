"""Customer import from the shop's old Excel sheets: read and check every row first, then import
the valid rows in confirmed parts of PART_ROWS rows, each all or nothing. Also the blank template
and the stash that keeps an upload between preview and confirm."""
import datetime
import io
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from peewee import IntegrityError

from crm.clock import now
from crm.db import db
from crm.errors import Conflict, CrmError, Forbidden, NotFound, ValidationError
from crm.models import Card, Counter, Customer, CustomerType
from crm.money import parse_optional
from crm.search_index import CustomerGram
from crm.services import audit, cards, customers, excel, ledger, names, users, validate

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


# A large sheet is written in confirmed parts of this many rows, each its own short transaction
# (all or nothing), with a pause between them: on SQLite a part holds the one write lock, and a
# charge at the till waits for at most one part, never for the whole sheet (issue 16.2; the
# figures are in bench/import_stall.py and the README).
PART_ROWS = 1000
PART_PAUSE_SECONDS = 0.1


@dataclass
class Imported:
    """What an import wrote: rows imported, parts committed, rows left out because another
    user took their phone or card number after the preview [(line, reason)]."""

    imported: int = 0
    cards: int = 0
    parts: int = 0
    skipped: list = field(default_factory=list)
    lines: tuple = (0, 0)  # first and last sheet line imported


class ImportStopped(CrmError):
    """A part failed after earlier parts were committed: they stay, and the message says which."""

    code = "import_stopped"


def run(actor, data, filename="", create_types=False, expected=None):
    """Import the valid rows of the sheet and return an Imported. The sheet is read and checked
    before any transaction; the rows are then written in confirmed parts of PART_ROWS, each all
    or nothing. `expected` is the count the preview showed: if the data changed since, nothing is
    imported. If a part fails, the parts before it stay and ImportStopped names them."""
    checked = preview(data, create_types)
    valid = checked.valid_rows
    if expected is not None and len(valid) != expected:
        raise Conflict(f"预览后数据有变化（现在可导入 {len(valid)} 行，预览时为 {expected} 行），"
                       "请重新上传预览", code="import_changed")
    if not valid:
        return Imported()
    if checked.opening_total and not users.permissions_of(actor.user).get("recharge"):
        raise Forbidden("导入期初余额就是开卡充值：需要“开卡、充值”权限（可去掉期初余额列后导入客户）",
                        code="forbidden")
    type_ids = _type_ids(actor, checked.unknown_types if create_types else (), filename)
    result, stamp = Imported(), now()
    try:
        for start in range(0, len(valid), PART_ROWS):
            if start:
                time.sleep(PART_PAUSE_SECONDS)  # let a charge that waits for the lock go first
            _import_part(actor, valid[start:start + PART_ROWS], type_ids, stamp, filename, result)
    except Exception as error:
        if not result.imported:
            raise
        _audit_import(actor, filename, result, checked, stopped=str(getattr(error, "message", "")
                                                                     or type(error).__name__))
        cause = error.message if isinstance(error, CrmError) else "数据库暂时忙，请稍后再试"
        raise ImportStopped(
            f"导入中途停止：第 {result.lines[0]}–{result.lines[1]} 行共 {result.imported} 位客户"
            f"已导入并保存；之后的行没有导入（{cause}）。处理后重新上传同一文件即可：已导入的行会因电话已存在而被跳过",
            status=getattr(error, "status", 503)) from None
    _audit_import(actor, filename, result, checked)
    return result


def _type_ids(actor, new_types, filename):
    """{type name: id}, creating the sheet's unknown types first (one short transaction)."""
    for name in new_types:
        try:
            with db.atomic():
                if not CustomerType.select().where(CustomerType.name == name).exists():
                    created = CustomerType.create(name=name)
                    audit.record(actor, "customer_type.create", "customer_type", created.id,
                                 after={"name": name}, source=filename)
        except IntegrityError:
            pass  # made by someone else at the same moment: use theirs
    return {t.name: t.id for t in CustomerType.select(CustomerType.id, CustomerType.name)}


def _still_free(part):
    """The rows of `part` whose phone and card number nobody took since the preview, and the
    others as [(line, reason)]. Runs inside the part's transaction."""
    taken = {}
    for row, _kind, message in _stored_clashes(
            part, [r.values["phone"] for r in part],
            [r.values["card_no"] for r in part if r.values["card_no"]]):
        taken.setdefault(row.line, message + "（预览之后）")
    return ([row for row in part if row.line not in taken],
            [(row.line, taken[row.line]) for row in part if row.line in taken])


def _import_part(actor, part, type_ids, stamp, filename, result):
    """One confirmed part: its rows re-checked against what others wrote since the preview, then
    customers, search index, audit rows, cards and opening entries — all or nothing. A unique key
    taken by someone in between (MySQL checks no lock for it) makes the part run again."""
    for attempt in range(3):
        try:
            with db.atomic():
                free, late = _still_free(part)
                opened = _write_rows(actor, free, type_ids, stamp, filename) if free else 0
            break
        except IntegrityError:
            if attempt == 2:
                raise
    result.skipped.extend(late)
    result.parts += 1
    if free:
        result.imported += len(free)
        result.cards += opened
        result.lines = (result.lines[0] or free[0].line, free[-1].line)


def _write_rows(actor, rows, type_ids, stamp, filename):
    """Customers, their search index and audit rows, and their cards for `rows`, in bulk."""
    first = Counter.take("customer", len(rows))
    records = []
    for offset, row in enumerate(rows):
        values = dict(row.values)
        type_name = values.pop("type_name")
        values.pop("card_no")
        values.pop("opening")
        number = customers.format_number(first + offset)
        records.append({**values, "type": type_ids.get(type_name), "customer_no": number,
                        "search_text": Customer.make_search_text(values["name"],
                                                                 values["phone"], number),
                        "created_by": actor.user.id if actor.user else None,
                        "created_at": stamp, "updated_at": stamp})
    Customer.insert_rows(records)
    numbers = [customers.format_number(first), customers.format_number(first + len(rows) - 1)]
    ids = {c.customer_no: c.id for c in Customer.select(Customer.id, Customer.customer_no)
           .where(Customer.customer_no.between(*numbers))}
    CustomerGram.add([(ids[r["customer_no"]], r["name"], r["phone"], r["customer_no"])
                      for r in records])
    audit.record_many(actor, "customer.create", "customer", [
        (ids[r["customer_no"]], {"after": _audited(r, row.values["type_name"]), "source": filename})
        for r, row in zip(records, rows, strict=True)], stamp)
    return _open_cards(actor, rows, [ids[r["customer_no"]] for r in records], stamp)


def _audit_import(actor, filename, result, checked, stopped=""):
    facts = {"file": filename, "imported": result.imported, "cards": result.cards,
             "parts": result.parts,
             "refused": len(checked.bad_rows), "skipped": len(result.skipped),
             "lines": list(result.lines)}
    if stopped:
        facts["stopped"] = stopped
    with db.atomic():
        audit.record(actor, "customer.import", "customer", "", **facts)


def _open_cards(actor, rows, customer_ids, stamp):
    """Cards for the rows that name a card number or an opening balance, with their 期初 entries."""
    wanted = [(row, cid) for row, cid in zip(rows, customer_ids, strict=True)
              if row.values["card_no"] or row.values["opening"]]
    if not wanted:
        return 0
    if any(row.values["opening"] for row, _ in wanted) and actor.user is None:
        raise ValidationError("导入期初余额需要以某位用户的身份进行", code="operator_required")
    blanks = sum(1 for row, _ in wanted if not row.values["card_no"])
    number = Counter.take("card", blanks) if blanks else 0
    new_cards = []
    for row, customer_id in wanted:
        card_no = row.values["card_no"]
        if not card_no:
            card_no, number = cards.generated_card_no(number), number + 1
        new_cards.append({"card_no": card_no, "customer": customer_id, "created_at": stamp,
                          "updated_at": stamp, "remark": "导入",
                          "created_by": actor.user.id if actor.user else None})
    for start in range(0, len(new_cards), 500):
        Card.insert_many(new_cards[start:start + 500]).execute()
    card_ids = {}
    numbers = [c["card_no"] for c in new_cards]
    for start in range(0, len(numbers), 500):
        card_ids.update({c.card_no: c.id for c in Card.select(Card.id, Card.card_no)
                         .where(Card.card_no.in_(numbers[start:start + 500]))})
    ledger.seal_owners(card_ids.values())
    openings = {card_ids[c["card_no"]]: (c["customer"], row.values["opening"])
                for c, (row, _) in zip(new_cards, wanted, strict=True) if row.values["opening"]}
    ledger.open_with_balances(openings, actor, stamp)
    return len(new_cards)


def _audited(record, type_name):
    return {"name": record["name"], "gender": record["gender"], "phone": record["phone"],
            "address": record["address"], "type": type_name,
            "birthday": record["birthday"].isoformat() if record["birthday"] else "",
            "remark": record["remark"], "archived": False}


TEMPLATE_FILENAME = "客户导入模板.xlsx"


def template():
    """A blank import template (.xlsx) with the columns and a sheet of instructions."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "客户"
    sheet.append(COLUMNS)
    for column, width in zip("ABCDEFGHI", (12, 8, 16, 30, 12, 12, 30, 14, 12), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
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


_TOKEN = re.compile(r"^[0-9a-f]{32}$")
STASH_HOURS = 24


def stash(folder, data):
    """Keep an uploaded sheet until it is confirmed; return its token. Old ones are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STASH_HOURS * 3600  # against the files' real mtimes, not crm.clock
    for old in folder.glob("*.xlsx"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    token = secrets.token_hex(16)
    (folder / f"{token}.xlsx").write_bytes(data)
    return token


def unstash(folder, token):
    """The stashed sheet for `token`, or NotFound."""
    if not _TOKEN.match(token or ""):
        raise NotFound("导入文件已过期，请重新上传", code="import_expired")
    path = Path(folder) / f"{token}.xlsx"
    if not path.exists():
        raise NotFound("导入文件已过期，请重新上传", code="import_expired")
    return path.read_bytes()


def discard(folder, token):
    """Remove a stashed sheet."""
    if _TOKEN.match(token or ""):
        (Path(folder) / f"{token}.xlsx").unlink(missing_ok=True)
