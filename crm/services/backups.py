"""Backups in one portable format for SQLite and MySQL, verified by a restore into a scratch
database; restores that are all-or-nothing and start with a safety backup.

A backup is a zip: manifest.json (format, app and schema version, time, shop, row counts, the
sha256 of every part, every card's chain head, the ledger key's fingerprint) and one JSON-lines
file per table. The ledger key itself is never in a backup (see README: the recovery key).
"""
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from peewee import IntegrityError

from crm import __version__
from crm import db as crm_db
from crm.clock import now
from crm.errors import Conflict, CrmError, NotFound, ValidationError
from crm.models import (
    AuditLog,
    AuthToken,
    Card,
    CardRecord,
    ConsumeRecord,
    Counter,
    Customer,
    CustomerGram,
    CustomerType,
    IdempotencyKey,
    LoginThrottle,
    RechargeRule,
    User,
)
from crm.services import Actor, audit, hold, ledger, names, stats

FORMAT = 2  # 2: each JSON line is an array of values in the manifest's column order
# Restored in this order (parents first); emptied in the reverse order.
TABLES = (User, CustomerType, Customer, Card, CardRecord, ConsumeRecord, IdempotencyKey,
          AuditLog, Counter, RechargeRule)
# Logins and lockouts are this PC's business: never carried over, always emptied by a restore.
# (The search index, t_customer_gram, is derived from the customers: never carried, brought in
# line with the restored customers inside the restore's transaction.)
NOT_CARRIED = (AuthToken, LoginThrottle)
NAME = re.compile(r"^crm-backup-\d{8}-\d{6}-(manual|daily|safety|upload)(-\d+)?\.zip$")
KINDS = {"manual": "手动", "daily": "每日自动", "safety": "恢复前安全备份", "upload": "上传"}

_process_lock = threading.Lock()


class BackupError(CrmError):
    """A backup or restore that cannot be done; nothing was changed."""

    status = 422
    code = "backup_failed"


# --- rows to JSON and back --------------------------------------------------------------------

def _columns(model):
    return [f.column_name for f in model._meta.sorted_fields]


def _plain(value):
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _table_name(model):
    return model._meta.table_name


@contextmanager
def maintenance_lock(database):
    """One backup, restore or migration at a time: in this process, and across processes
    sharing one MySQL database (a server-side named lock) — the other server processes of this
    shop, or another shop's PC. Whoever comes second is told so within a second."""
    busy = Conflict("另一个备份或恢复正在进行，请稍后再试", code="backup_busy")
    if not _process_lock.acquire(timeout=1):
        raise busy
    try:
        with ExitStack() as held:
            try:
                held.enter_context(crm_db.migration_lock(database, wait=1))
            except crm_db.LockBusy:
                raise busy from None
            yield
    finally:
        _process_lock.release()


# --- making a backup --------------------------------------------------------------------------

def _new_name(folder, kind):
    stamp = now().strftime("%Y%m%d-%H%M%S")
    name, n = f"crm-backup-{stamp}-{kind}.zip", 1
    while (folder / name).exists() or (folder / (name + ".part")).exists():
        name, n = f"crm-backup-{stamp}-{kind}-{n}.zip", n + 1
    return name


def _converters(model):
    """Per column, how a database value becomes plain JSON: only times, dates and booleans need
    it (a million rows × 19 columns through a function each took seconds)."""
    from peewee import BooleanField, DateField, DateTimeField

    out = []
    for index, fld in enumerate(model._meta.sorted_fields):
        if isinstance(fld, DateTimeField | DateField | BooleanField):
            out.append(index)
    return out


def _dump(database, archive):
    """Write every carried table from one consistent snapshot; return counts, sums, heads.
    Each line is a JSON array of the row's values, in the manifest's column order."""
    counts, digests, heads = {}, {}, {}
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with crm_db.snapshot(database):
        for model in TABLES:
            table, columns = _table_name(model), _columns(model)
            key = model._meta.primary_key.column_name
            convert = _converters(model)
            head_at = columns.index("chain_head") if model is Card else None
            digest, count = hashlib.sha256(), 0
            cursor = database.execute_sql(f"SELECT {crm_db.column_list(database, columns)} FROM {table} "
                                          f"ORDER BY {key}")
            with archive.open(f"{table}.jsonl", "w") as member:
                for row in cursor:
                    values = list(row)
                    for index in convert:
                        if values[index] is not None and not isinstance(values[index], str):
                            values[index] = _plain(values[index])
                    if head_at is not None:
                        heads[str(values[0])] = values[head_at]
                    line = (dumps(values) + "\n").encode("utf-8")
                    digest.update(line)
                    member.write(line)
                    count += 1
            counts[table], digests[table] = count, digest.hexdigest()
    return counts, digests, heads


def create(folder, kind="manual", shop_name="", actor=None, copy_folder="", check_now=True):
    """Make a backup in `folder`, read it back and verify it; copy it to `copy_folder` if set.
    Returns the backup's info dict. Raises BackupError without leaving a partial file. With
    check_now=False the read-back check is left to the caller (check_later)."""
    database = crm_db.db.obj
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BackupError(f"无法创建备份文件夹 {folder}：{error.strerror}") from None
    with maintenance_lock(database):
        clean_parts(folder)
        name = _new_name(folder, kind)
        partial = folder / (name + ".part")
        try:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                counts, digests, heads = _dump(database, archive)
                manifest = {
                    "format": FORMAT, "app_version": __version__,
                    "created_at": now().strftime("%Y-%m-%d %H:%M:%S"), "kind": kind,
                    "shop_name": shop_name, "database": "mysql" if crm_db.is_mysql(database)
                    else "sqlite", "schema": crm_db.schema_version(database),
                    "tables": {t: {"rows": counts[t], "sha256": digests[t],
                                   "columns": _columns(m)}
                               for t, m in ((_table_name(m), m) for m in TABLES)},
                    "chain_heads": heads, "ledger_key": ledger.key_fingerprint(),
                }
                manifest["signature"] = ledger.sign_manifest(manifest)
                archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False,
                                                             indent=1))
            with open(partial, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, folder / name)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise BackupError(f"备份写入失败（{folder}）：{error.strerror or error}，"
                              "请检查磁盘空间和文件夹权限") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    verified = check(folder / name).ok if check_now else None
    info = describe(folder / name)
    if crm_db.is_mysql(database) and kind != "safety":
        info["native"] = native_dump(database, folder / name)
    if copy_folder:
        info["copy"] = _copy(folder / name, Path(copy_folder))
    if actor is not None:
        audit.record(actor, "backup.create", "backup", name, kind=kind, verified=verified,
                     size=info["size"], copy=info.get("copy"))
    return info


def native_dump(database, path):
    """On MySQL, also `mysqldump --single-transaction` beside the portable backup (a second copy
    in the database's own format), when the tool is on this PC. Returns what happened."""
    import gzip
    import subprocess

    tool = shutil.which("mysqldump") or shutil.which("mariadb-dump")
    if tool is None:
        return "未找到 mysqldump，未做数据库原生备份"
    params = database.connect_params
    target = Path(str(path)[:-4] + ".sql.gz")
    env = dict(os.environ, MYSQL_PWD=params.get("password") or "")
    command = [tool, "--single-transaction", "--routines", "--triggers", "--hex-blob",
               f"--host={params.get('host', '127.0.0.1')}", f"--port={params.get('port', 3306)}",
               f"--user={params.get('user', 'root')}", database.database]
    partial = target.with_suffix(".part")
    try:
        with gzip.open(partial, "wb", compresslevel=1) as out:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env)
            for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
                out.write(chunk)
            error = proc.stderr.read().decode("utf-8", "replace")
            code = proc.wait()
        if code != 0:
            partial.unlink(missing_ok=True)
            return f"mysqldump 失败：{error.strip()[:200]}"
        os.replace(partial, target)
        return f"已另存数据库原生备份 {target.name}"
    except OSError as failure:
        partial.unlink(missing_ok=True)
        return f"mysqldump 未能完成：{failure}"


def _copy(path, target):
    """A verified copy in the second folder (USB disk, NAS); returns what happened in words."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        clean_parts(target)
        partial = target / (path.name + ".part")
        shutil.copyfile(path, partial)
        if _sha256_file(partial) != _sha256_file(path):
            partial.unlink(missing_ok=True)
            return "复制到第二位置后校验不符，未保留副本"
        os.replace(partial, target / path.name)
        return f"已复制到 {target}"
    except OSError as error:
        return f"复制到 {target} 失败：{error.strerror or error}"


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading and checking a backup ------------------------------------------------------------

@dataclass
class Checked:
    """The result of reading a backup back."""

    ok: bool = False
    manifest: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    scratch: str = ""  # the verified scratch SQLite database, when kept
    key_fingerprint: str = ""  # of the key it was checked with
    renamed: list = field(default_factory=list)  # [(what, old, new)] by rename_clashes

    @property
    def signed(self):
        """Carries a signature (backups made before signing do not); one that does not match
        fails the check."""
        return "signature" in self.manifest

    @property
    def own_key(self):
        """True when the manifest names the key it was checked with (this PC's, or the recovery
        key given): an unsigned backup may be restored only then, and only when acknowledged."""
        return self.manifest.get("ledger_key") == self.key_fingerprint


# What a backup may unpack to, checked from the zip's directory before anything is read: a
# manifest (every card's chain head: ~90 bytes a card) of at most 64 MB, table parts at most 200
# times their packed size (the JSON lines pack about 10:1), no line over 1 MB.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_RATIO = 200
MAX_LINE_BYTES = 1024 * 1024
_TEXT = {"type": "string", "maxLength": 200}
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["format", "created_at", "schema", "tables", "chain_heads"],
    "properties": {
        "format": {"enum": [1, FORMAT]}, "app_version": _TEXT, "kind": _TEXT, "shop_name": _TEXT,
        "database": {"enum": ["sqlite", "mysql"]}, "ledger_key": _TEXT,
        "created_at": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"},
        "schema": {"type": "array", "minItems": 1, "items": {
            "type": "string", "pattern": r"^\d{4}_[a-z0-9_]{1,60}$"}},
        "tables": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["rows", "sha256", "columns"], "properties": {
                "rows": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "columns": {"type": "array", "maxItems": 100, "items": {
                    "type": "string", "pattern": "^[a-z_]{1,64}$"}}}}},
        "chain_heads": {"type": "object", "additionalProperties": {"type": "string",
                                                                   "maxLength": 64}},
        "signature": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}


def _unreadable(reason=""):
    return BackupError("这不是一个可用的备份文件（文件损坏、不完整，或不是本系统的备份）"
                       + (f"：{reason}" if reason else ""), code="invalid_backup")


def _check_sizes(archive):
    """Refuse a zip whose members would unpack to more than a backup can hold (a zip bomb)."""
    for info in archive.infolist():
        if info.filename == "manifest.json":
            if info.file_size > MAX_MANIFEST_BYTES:
                raise _unreadable("清单过大")
        elif info.file_size > MAX_RATIO * info.compress_size + MAX_LINE_BYTES:
            raise _unreadable(f"{info.filename[:60]} 解压后过大")


OTHER_KEY = "这个备份的账本密钥与本机不同：需要原店的恢复密钥才能核对"
EDITED = "备份的签名不符：文件在备份之后被改动过，不能使用"
UNSIGNED_UPLOAD = ("上传的备份未签名（升级前的旧版本做的，或签名被去掉了），不能上传；"
                   "请在原电脑上用新版本重新备份")
UNSIGNED_FOREIGN = "这个备份未签名，且不是用本机（或所给恢复密钥）的账本密钥做的，不能恢复"
UNSIGNED_ASK = ("这是升级前做的未签名备份，无法证明它之后没被改动过；确认是本店自己的备份后，"
                "请勾选“确认恢复未签名的旧备份”再恢复")


def read_manifest(path):
    """The backup's manifest, checked for its shape and the zip for its sizes, or BackupError
    for a file that is not a readable backup."""
    from jsonschema import Draft7Validator

    try:
        with zipfile.ZipFile(path) as archive:
            _check_sizes(archive)
            manifest = json.loads(archive.read("manifest.json"))
    except BackupError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, OSError, EOFError,
            RecursionError, NotImplementedError):
        raise _unreadable() from None
    if not isinstance(manifest, dict):
        raise _unreadable("清单有误")
    if manifest.get("format") not in (1, FORMAT):
        raise BackupError("备份文件格式不认识", code="invalid_backup")
    problem = next(iter(Draft7Validator(MANIFEST_SCHEMA).iter_errors(manifest)), None)
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path)[:60] or "清单"
        raise _unreadable(f"清单不完整或有误（{where}）")
    return manifest


def _rows(archive, table, manifest):
    """The table's rows from the zip, checking the sha256 and the count as they stream by."""
    expected = manifest["tables"][table]
    digest, count = hashlib.sha256(), 0
    columns = expected["columns"]
    with archive.open(f"{table}.jsonl") as member:
        while line := member.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:
                raise BackupError(f"备份文件已损坏：{table} 中有过长的一行", code="backup_corrupt")
            digest.update(line)
            count += 1
            values = json.loads(line)
            yield dict(zip(columns, values, strict=True)) if isinstance(values, list) else values
    if digest.hexdigest() != expected["sha256"] or count != expected["rows"]:
        raise BackupError(f"备份文件已损坏：{table} 的内容与清单不符（可能被改动或不完整）",
                          code="backup_corrupt")


def _load(database, source, fresh=False, before_commit=None):
    """Replace every carried table of `database` with the rows from `source` — an iterable of
    (model, columns, rows) — in one transaction: all or nothing. `fresh`: a new, empty scratch
    database (perhaps at an older schema, without t_restore_mode), nothing to empty.
    `before_commit()` runs last inside the transaction; if it fails, nothing is replaced."""
    mysql = crm_db.is_mysql(database)
    param = database.param
    with database.atomic():
        if mysql:
            # Rows from a checked backup of a consistent database: InnoDB may skip re-checking
            # foreign and unique keys row by row (both back on before the commit).
            database.execute_sql("SET FOREIGN_KEY_CHECKS = 0")
            database.execute_sql("SET UNIQUE_CHECKS = 0")
        else:
            database.execute_sql("PRAGMA defer_foreign_keys = ON")
        try:
            present = set(database.get_tables())
            indexed = None
            if not fresh:
                database.execute_sql("INSERT INTO t_restore_mode (id) VALUES (1)")
                with database.bind_ctx([CustomerGram, Customer]):
                    indexed = CustomerGram.indexed()
            for model in (*reversed(TABLES), *NOT_CARRIED):
                # A fresh scratch database holds only what migrations seed (t_counter's rows).
                if _table_name(model) in present:
                    database.execute_sql(f"DELETE FROM {_table_name(model)}")
            for model, columns, rows in source:
                # The target's own columns: a scratch database may be at an older schema.
                known = {c.name for c in database.get_columns(_table_name(model))}
                keep = [c for c in columns if c in known]
                statement = (f"INSERT INTO {_table_name(model)} ({crm_db.column_list(database, keep)}) "
                             f"VALUES ({', '.join([param] * len(keep))})")
                crm_db.executemany(database, statement,
                                   (tuple(row[c] for c in keep) for row in rows))
            if not fresh:
                with database.bind_ctx([CustomerGram, Customer]):
                    CustomerGram.follow(indexed)
                database.execute_sql("DELETE FROM t_restore_mode")
            if before_commit is not None:
                before_commit()
        finally:
            if mysql:
                database.execute_sql("SET UNIQUE_CHECKS = 1")
                database.execute_sql("SET FOREIGN_KEY_CHECKS = 1")


def _from_zip(archive, manifest, database):
    present = set(database.get_tables())
    for model in TABLES:
        table = _table_name(model)
        if table in manifest["tables"] and table in present:
            yield model, manifest["tables"][table]["columns"], _rows(archive, table, manifest)


def _from_database(database):
    for model in TABLES:
        columns = _columns(model)
        cursor = database.execute_sql(f"SELECT {crm_db.column_list(database, columns)} "
                                      f"FROM {_table_name(model)}")
        yield model, columns, (dict(zip(columns, row, strict=True)) for row in cursor)


def check(path, key=None, keep_scratch=False, rename_clashes=False):
    """Read a backup back: checksums and counts, a restore into a scratch SQLite database at the
    backup's schema, migrated to this version, then every card's chain and balance. A check that
    could not run is a failure. Writes the result beside the backup (<name>.check.json)."""
    path = Path(path)
    result = Checked()
    scratch_dir = tempfile.mkdtemp(prefix="crm-check-")
    scratch_path = Path(scratch_dir) / "scratch.db"
    try:
        manifest = result.manifest = read_manifest(path)
        known = sorted(p.stem for p in crm_db.MIGRATIONS_DIR.glob("[0-9]*.py"))
        unknown = [m for m in manifest["schema"] if m not in known]
        if unknown:
            raise BackupError("这个备份来自更新版本的系统，请先把本系统升级后再恢复",
                              code="backup_too_new")
        result.key_fingerprint = ledger.key_fingerprint(key)
        if result.signed and not ledger.manifest_signed(manifest, key):
            raise BackupError(OTHER_KEY if not result.own_key else EDITED,
                              code="backup_signature")
        scratch = crm_db.database_from_url(f"sqlite:///{scratch_path}")
        from playhouse.migrations import Runner

        runner = Runner(scratch, str(crm_db.MIGRATIONS_DIR), table_name=crm_db.SCHEMA_TABLE)
        with scratch.connection_context():
            runner.up(target=manifest["schema"][-1])
            with zipfile.ZipFile(path) as archive:
                _load(scratch, _from_zip(archive, manifest, scratch), fresh=True)
            if rename_clashes:  # names an older backup holds that the one-form rule makes one
                result.renamed = names.rename_clashes(scratch)
            with ledger.sealing_with(key):  # an older backup's cards get their owner seal
                runner.up()
            report = ledger.verify(database=scratch, key=key)
            heads = {str(c.id): c.chain_head for c in Card.select(Card.id, Card.chain_head)
                     .bind(scratch)}
        result.problems = [f"卡 {p['card_no'] or p['card_id']}：{p['problem']}"
                           for p in report.problems]
        if heads != manifest["chain_heads"]:
            result.problems.append("各卡签名链的最新位置与清单不符")
        if not result.own_key:
            result.problems.insert(0, OTHER_KEY)
        result.ok = not result.problems
        crm_db.close_all(scratch)
        if keep_scratch and result.ok:
            result.scratch = str(scratch_path)
    except CrmError as error:  # a refusal of ours, e.g. names the upgrade would merge
        result.problems.append(error.message + ("。" + names.RESTORE_HINT
                                                if isinstance(error, names.NamesClash) else ""))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError) as error:
        result.problems.append(f"读取备份失败：{type(error).__name__}")
    except Exception as error:  # noqa: BLE001 — a check that could not run never counts as passed
        result.problems.append(f"核对未能完成：{type(error).__name__}")
    finally:
        if not result.scratch:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    _write_check(path, result)
    return result


def _write_check(path, result):
    try:
        Path(str(path) + ".check.json").write_text(json.dumps(
            {"ok": result.ok, "checked_at": now().strftime("%Y-%m-%d %H:%M:%S"),
             "sha256": _sha256_file(path) if path.exists() else "", "key": ledger.key_fingerprint(),
             "problems": result.problems[:20]}, ensure_ascii=False), encoding="utf-8")
    except OSError:
        pass  # the check's result is also in the answer and the audit log


def _already_checked(path):
    """True when this very file (same sha256) passed its check under this instance's key."""
    try:
        recorded = json.loads(Path(str(path) + ".check.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (recorded.get("ok") is True and recorded.get("key") == ledger.key_fingerprint()
            and recorded.get("sha256") == _sha256_file(path))


# --- listing ----------------------------------------------------------------------------------

def describe(path):
    """A backup's facts for the list: name, time, kind, size, counts, verified or not."""
    path = Path(path)
    info = {"name": path.name, "size": path.stat().st_size, "kind": "", "created_at": "",
            "counts": {}, "verified": False, "checked_at": "", "problems": [], "readable": True,
            "signed": False}
    match = NAME.match(path.name)
    info["kind"] = match.group(1) if match else ""
    try:
        manifest = read_manifest(path)
        info.update(created_at=manifest["created_at"], shop_name=manifest.get("shop_name", ""),
                    signed="signature" in manifest,
                    counts={t: v["rows"] for t, v in manifest["tables"].items()},
                    schema=manifest["schema"][-1], database=manifest["database"])
    except BackupError as error:
        info.update(readable=False, problems=[error.message])
    try:
        checked = json.loads(Path(str(path) + ".check.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        checked = None
    if isinstance(checked, dict) and info["readable"]:
        problems = checked.get("problems")
        info.update(verified=checked.get("ok") is True,
                    checked_at=str(checked.get("checked_at", ""))[:19],
                    problems=[str(p)[:200] for p in problems[:20]]
                    if isinstance(problems, list) else [])
    return info


def list_backups(folder):
    """The backups in the folder, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    items = []
    for path in sorted(folder.glob("crm-backup-*.zip"), reverse=True):
        if NAME.match(path.name):
            try:
                items.append(describe(path))
            except FileNotFoundError:  # rotated away by another process meanwhile
                continue
    return items


def path_of(folder, name):
    """The backup called `name` in the folder; a name that is not a backup's is refused."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationError("备份文件名不正确", code="invalid_backup_name")
    path = Path(folder) / name
    if not path.is_file():
        raise NotFound("没有这个备份", code="backup_not_found")
    return path


def save_upload(folder, data):
    """Keep an uploaded backup (from a USB stick) in the backup folder; return its name."""
    if not data.startswith(b"PK"):
        raise BackupError("上传的不是备份文件（应为 .zip）", code="invalid_backup")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = _new_name(folder, "upload")
    partial = folder / (name + ".part")
    partial.write_bytes(data)
    try:
        read_manifest(partial)
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, folder / name)
    return name


def receive_upload(folder, filename, data, recovery_key=None):
    """A backup file brought in (from a USB stick) through the page or the API: kept under a
    name of our own in the backup folder (the sender's file name is never used as a path),
    then read back and checked — another PC's backup with that PC's recovery key. Returns
    (name, Checked). A file that does not check out is refused (422, naming what failed) and
    nothing of it is kept."""
    if not filename:
        raise ValidationError("请选择备份文件", code="missing_file")
    key = ledger.recovery_key(recovery_key)
    name = save_upload(folder, data)
    path = path_of(folder, name)
    checked = check(path, key=key)
    if not checked.ok or not checked.signed:
        _remove(path)
        if checked.manifest and not checked.signed:
            also = "；核对还发现：" + "；".join(checked.problems[:2]) if checked.problems else ""
            raise BackupError(UNSIGNED_UPLOAD + also, code="unsigned_backup")
        raise BackupError("上传的备份未通过核对，未保留：" + "；".join(checked.problems[:3]),
                          code="backup_not_verified")
    return name, checked


def _remove(path):
    """A backup file and what lies beside it (its check result, its native dump)."""
    for extra in (path, Path(str(path) + ".check.json"), Path(str(path)[:-4] + ".sql.gz")):
        extra.unlink(missing_ok=True)


PART_STALE_SECONDS = 600  # a part file nobody wrote to for ten minutes was left by a dead backup


def clean_parts(folder):
    """Remove part files left by a backup, upload or copy that was killed or failed; a part
    still being written (touched within PART_STALE_SECONDS) is kept. Returns the names removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    cutoff = time.time() - PART_STALE_SECONDS  # file ages against the real mtimes
    for part in folder.glob("*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed.append(part.name)
        except FileNotFoundError:
            continue
    return removed


# --- restoring --------------------------------------------------------------------------------

def restore(folder, name, actor=None, shop_name="", key=None, accept_unsigned=False,
            rename_clashes=False):
    """Restore the backup `name`: check it fully first; take a safety backup of the current data;
    replace everything in one transaction (all or nothing); verify the ledger; audit. `key` is the
    original shop's ledger key when restoring another PC's backup (see the recovery key). A
    backup without a signature (made before backups were signed) restores only when it names
    the key in use and `accept_unsigned` says the owner knows it is such an old backup."""
    key = ledger.recovery_key(key)
    database = crm_db.db.obj
    path = path_of(folder, name)
    manifest = read_manifest(path)
    current = crm_db.schema_version(database)
    # A file that passed its check unchanged, at this schema, loads straight from the zip (its
    # checksums are checked again as it streams in, inside the transaction); anything else goes
    # through a full check and is loaded from the verified scratch database.
    direct = key is None and manifest["schema"] == current and _already_checked(path)
    checked = Checked(ok=True, manifest=manifest, key_fingerprint=ledger.key_fingerprint()) \
        if direct else check(path, key=key, keep_scratch=True, rename_clashes=rename_clashes)
    try:
        if not checked.signed and not (checked.own_key and accept_unsigned):
            raise BackupError(UNSIGNED_ASK if checked.own_key else UNSIGNED_FOREIGN,
                              code="unsigned_backup")
        if not checked.ok:
            raise BackupError("备份未通过核对，未做任何改动：" + "；".join(checked.problems[:3]),
                              code="backup_not_verified")
        # From the safety backup to the commit no money moves, in any server process: a charge
        # either committed before the hold (and is in the safety backup) or is refused (503).
        with hold.holding(database) as held:
            # The safety copy's checksums are taken as it is written; its full read-back check
            # runs after the restore (check_later), so the shop is not kept waiting for it.
            safety = create(folder, kind="safety", shop_name=shop_name, actor=actor,
                            check_now=False)
            held.renew()
            _replace(database, path, manifest, checked, direct, key, held)
    finally:
        if checked.scratch:
            shutil.rmtree(Path(checked.scratch).parent, ignore_errors=True)
    stats.forget()
    report = ledger.verify(key=key)
    if actor is not None:
        # The restored users may no longer include the one who restored: keep the name anyway.
        user = actor.user if actor.user and User.get_or_none(User.id == actor.user.id) else None
        audit.record(Actor(user=user, ip=actor.ip, name=actor.username), "backup.restore",
                     "backup", name, safety_backup=safety["name"], ledger_ok=report.ok,
                     counts={t: v["rows"] for t, v in checked.manifest["tables"].items()},
                     renamed=[list(r) for r in checked.renamed])
    return {"name": name, "safety_backup": safety["name"],
            "safety_path": str(Path(folder) / safety["name"]),
            "ledger_ok": report.ok,
            "renamed": [{"what": what, "old": old, "new": new} for what, old, new in checked.renamed],
            "cards_checked": report.cards_checked, "entries_checked": report.entries_checked}


def _replace(database, path, manifest, checked, direct, key, held):
    """The restore's one transaction: every carried table replaced, the hold released with it.
    Another PC's backup: from the commit on, every server process of this instance seals with
    that shop's key. The key is switched inside the transaction, so no process can seal a
    restored chain with the old key; it is switched back if the restore does not commit."""
    replaced = []

    def before_commit():
        held.release()
        if key is not None:
            replaced.append(ledger.adopt_key(key))

    try:
        if direct:
            with maintenance_lock(database), zipfile.ZipFile(path) as archive:
                _load(database, _from_zip(archive, manifest, database), before_commit=before_commit)
        else:
            scratch = crm_db.database_from_url(f"sqlite:///{checked.scratch}")
            try:
                with maintenance_lock(database), scratch.connection_context():
                    _load(database, _from_database(scratch), before_commit=before_commit)
            finally:
                crm_db.close_all(scratch)
    except BaseException as error:
        if replaced:
            ledger.adopt_key(replaced[0])
        if isinstance(error, IntegrityError):  # rolled back whole: nothing was replaced
            raise BackupError("备份里有这个数据库不接受的重复或缺失的值，未做任何改动："
                              f"{str(error)[:200]}", code="backup_not_loadable") from None
        raise


def check_later(path):
    """Run a backup's read-back check in the background (its result lands beside the file)."""
    thread = threading.Thread(target=check, args=(Path(path),), daemon=True,
                              name="backup-check")
    thread.start()
    return thread


# --- rotation ---------------------------------------------------------------------------------

def rotate(folder, daily=7, weekly=4, monthly=12):
    """Keep the newest daily backup of each of the last `daily` days, of `weekly` ISO weeks and
    of `monthly` months; delete the other daily backups. Other kinds are never rotated away.
    Returns the names deleted."""
    folder = Path(folder)
    dated = []
    for path in folder.glob("crm-backup-*-daily*.zip"):
        match = re.match(r"^crm-backup-(\d{8})-(\d{6})", path.name)
        if match and NAME.match(path.name):
            dated.append((datetime.datetime.strptime(match.group(1) + match.group(2),
                                                     "%Y%m%d%H%M%S"), path))
    dated.sort(reverse=True)
    keep = set()
    for count, bucket in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                          (monthly, lambda t: (t.year, t.month))):
        seen = []
        for moment, path in dated:
            key = bucket(moment)
            if key not in seen:
                seen.append(key)
                if len(seen) <= count:
                    keep.add(path)
    removed = []
    for _, path in dated:
        if path not in keep:
            path.unlink(missing_ok=True)
            Path(str(path) + ".check.json").unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# --- the nightly schedule ---------------------------------------------------------------------

def parse_time(text):
    """BACKUP_TIME "HH:MM" as (hour, minute)."""
    match = re.match(r"^(\d{1,2}):(\d{2})$", str(text or "").strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"BACKUP_TIME must be HH:MM, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def last_slot(moment, at):
    """The latest scheduled time at or before `moment`."""
    slot = moment.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    return slot if moment >= slot else slot - datetime.timedelta(days=1)


def last_daily(folder):
    """When the newest daily backup was made, or None."""
    times = []
    for path in Path(folder).glob("crm-backup-*-daily*.zip"):
        match = re.match(r"^crm-backup-(\d{8})-(\d{6})", path.name)
        if match and NAME.match(path.name):
            times.append(datetime.datetime.strptime(match.group(1) + match.group(2),
                                                    "%Y%m%d%H%M%S"))
    return max(times, default=None)


def is_due(moment, at, folder):
    """True when no daily backup was made since the latest scheduled time (the PC may have been
    off then: the backup is caught up at the next start)."""
    newest = last_daily(folder)
    return newest is None or newest < last_slot(moment, at)


def run_scheduled(folder, moment, at, shop_name="", copy_folder="", keep=(7, 4, 12)):
    """The scheduler's job: make the daily backup if one is due, then rotate. Returns the new
    backup's info, or None when none was due."""
    if not is_due(moment, at, folder):
        return None
    info = create(folder, kind="daily", shop_name=shop_name, copy_folder=copy_folder)
    info["rotated_away"] = rotate(folder, *keep)
    return info
