"""Customer import from the shop's old Excel sheets: every row is read and checked first (the
sheet: crm.services.customer_import_sheet), then the valid rows are imported in confirmed parts
of PART_ROWS rows, each all or nothing. Also the stash that keeps an upload between preview and
confirm."""
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
from crm.search_index import CustomerGram
from crm.services import audit, cards, customers, ledger, users
from crm.services.customer_import_sheet import (  # noqa: F401 — callers take these from here
    COLUMNS,
    TEMPLATE_FILENAME,
    _stored_clashes,
    preview,
    read_rows,
    template,
)

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
    CustomerGram.add([(c["customer"], c["card_no"]) for c in new_cards])  # found by card number
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
