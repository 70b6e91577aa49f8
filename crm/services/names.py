"""One rule per text column, the same on SQLite and MySQL (design rule 11).

Every text column compares byte for byte on both databases (SQLite's BINARY, MySQL's
utf8mb4_bin: migration 0011), so card numbers, idempotency keys, tokens and type names are equal
only when they are the same characters. Where people expect two spellings to be one name, the
code says so by storing one form:

- a user name is stored, looked up and unique in its NFKC, case-folded form: `Boss`, `ＢＯＳＳ`
  and `boss` are one login (`bóss` and `boss\u200b` are not: different letters, and an
  invisible character is refused when a user is made);
- a customer type's name is stored in its NFKC form (a full-width `ＶＩＰ` is `VIP`), keeping
  its case, as shown.

Data made before this rule may hold names that the rule makes equal (on SQLite, users `Boss`
and `boss`). The upgrade never merges or drops them: it stops and names them, with the command
that renames one (`crm rename-user`, `crm rename-type`), which works on the database as it is.
"""
import json
import unicodedata
from collections import defaultdict

from crm.clock import as_text, now
from crm.errors import Conflict, NotFound, ValidationError


def username_key(text):
    """The one form of a user name: NFKC, case-folded, without surrounding spaces."""
    folded = unicodedata.normalize("NFKC", (text or "").strip()).casefold()
    return unicodedata.normalize("NFKC", folded).strip()


def type_name(text):
    """The one form of a customer type's name: NFKC, case kept."""
    return unicodedata.normalize("NFKC", text or "").strip()


# (what, table, column, the stored form, the command that renames one)
RULES = (
    ("用户名", "t_user", "username", username_key, "crm rename-user"),
    ("客户类型", "t_customer_type", "name", type_name, "crm rename-type"),
)


class NamesClash(Conflict):
    """Stored names that the one-form rule makes equal: the upgrade (or restore) stops."""

    code = "names_clash"

    def __init__(self, clashes):
        lines = ["数据库里有按新规则会被视为同一个的名称，升级已停止，未做任何改动。"
                 "请把每组中的一个改名后再启动："]
        for what, names, command in clashes:
            shown = "、".join(f"“{n}”" for n in names)
            lines.append(f"- {what} {shown}：例如 {command} \"{names[-1]}\" \"新名称\"")
        super().__init__("\n".join(lines))
        self.clashes = clashes


def _rows(database, table, column):
    return list(database.execute_sql(f"SELECT id, {column} FROM {table} ORDER BY id"))


def clashes(database):
    """[(what, [stored names], rename command)] for every group of names the rule makes one."""
    found = []
    for what, table, column, form, command in RULES:
        groups = defaultdict(list)
        for _id, value in _rows(database, table, column):
            groups[form(value)].append(value)
        found.extend((what, names, command) for names in groups.values() if len(names) > 1)
    return found


RESTORE_HINT = ("恢复这样的旧备份时可选择“重名自动改名”（页面上的勾选项；命令行 crm restore "
                "--rename-clashes；接口字段 rename_clashes）：每组第一个保留，其余加上 -2、-3 等后缀，"
                "并记入审计日志")


def rename_clashes(database):
    """Give each name but the first (by id) of every group the rule makes one a free name of
    its own (…-2, …-3), so that an old backup holding them can be restored. Returns
    [(what, old, new)]; works on a database at any schema since 0001 (a backup's scratch copy)."""
    from crm.services.users import USERNAME_RE

    renamed = []
    for what, table, column, form, _command in RULES:
        rows = _rows(database, table, column)
        taken = {form(value) for _id, value in rows}
        firsts = set()
        for row_id, value in rows:
            key = form(value)
            if key not in firsts:
                firsts.add(key)
                continue
            for n in range(2, 1000):
                candidate = f"{value[:46]}-{n}"
                if form(candidate) not in taken and (table != "t_user"
                                                     or USERNAME_RE.match(form(candidate))):
                    break
            taken.add(form(candidate))
            _set(database, table, column, row_id, candidate)
            renamed.append((what, value, candidate))
    return renamed


def _set(database, table, column, row_id, value):
    param = database.param
    database.execute_sql(f"UPDATE {table} SET {column} = {param} WHERE id = {param}",
                         (value, row_id))


def _audit(database, action, object_type, object_id, username, detail):
    param = database.param
    database.execute_sql(
        "INSERT INTO t_audit_log (created_at, user_id, username, ip, action, object_type, "
        f"object_id, detail) VALUES ({', '.join([param] * 8)})",
        (as_text(now()), None, username, "cli", action, object_type, str(object_id),
         json.dumps(detail, ensure_ascii=False)))


def store_forms(database):
    """Bring every stored name to its one form (the upgrade); stops with NamesClash first when
    two names would become one. A user whose name changes keeps the old spelling as their
    display name when they had none. Each change is audited."""
    found = clashes(database)
    if found:
        raise NamesClash(found)
    param = database.param
    with database.atomic():
        for _what, table, column, form, _command in RULES:
            for row_id, value in _rows(database, table, column):
                if form(value) == value:
                    continue
                _set(database, table, column, row_id, form(value))
                if table == "t_user":
                    database.execute_sql(
                        f"UPDATE t_user SET display_name = {param} "
                        f"WHERE id = {param} AND display_name = ''", (value, row_id))
                _audit(database, f"{table[2:]}.rename", table[2:], row_id,
                       "系统升级", {"before": {column: value}, "after": {column: form(value)},
                                  "reason": "名称统一为标准形式（升级）"})
        # Failed-login counts are kept by the name as it was typed: start them afresh.
        database.execute_sql("DELETE FROM t_login_throttle")


def rename(database, what, old, new):
    """Rename the user or customer type stored exactly as `old` to `new` (the command the
    upgrade's stop names). Works on a database at any schema since 0001; audited."""
    rule = next(r for r in RULES if r[1] == {"user": "t_user", "type": "t_customer_type"}[what])
    label, table, column, form, _command = rule
    new = form(new)
    if not new:
        raise ValidationError(f"请填写新的{label}", code="invalid_name")
    if what == "user":
        from crm.services.users import USERNAME_RE  # the user-name rule lives there

        if not USERNAME_RE.match(new):
            raise ValidationError("用户名为 2–50 个字母、数字、汉字或 . _ - @",
                                  code="invalid_username")
    elif len(new) > 50:
        raise ValidationError("类型名称最多 50 个字", code="invalid_name")
    rows = _rows(database, table, column)
    # Exact match in Python: the database's own comparison may still be the old collation.
    target = [row_id for row_id, value in rows if value == old]
    if not target:
        raise NotFound(f"没有{label}“{old}”（须与库中写法完全一致）", code="name_not_found")
    if any(form(value) == new and row_id != target[0] for row_id, value in rows):
        raise Conflict(f"{label}“{new}”已被使用，请换一个", code="name_taken")
    with database.atomic():
        _set(database, table, column, target[0], new)
        _audit(database, f"{table[2:]}.rename", table[2:], target[0],
               "命令行", {"before": {column: old}, "after": {column: new}})
    return new
