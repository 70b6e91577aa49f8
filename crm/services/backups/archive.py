"""Backups: making one — a zip of a manifest and one JSON-lines file per table, written from one
consistent snapshot, signed with the ledger key, copied to a second folder when set."""
import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from crm import __version__
from crm import db as crm_db
from crm.clock import now
from crm.models import (
    Card,
)
from crm.services import audit, ledger
from crm.services.backups.checking import check, describe
from crm.services.backups.common import (
    FORMAT,
    TABLES,
    BackupError,
    _columns,
    _new_name,
    _plain,
    _sha256_file,
    _table_name,
    clean_parts,
    maintenance_lock,
)

console = logging.getLogger("crm.backup")  # one line per backup in the server window


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
    console.info("已备份 %s（%s%s）", name, {True: "已核对", False: "核对未通过", None: "未核对"}[verified],
                 f"；{info['copy']}" if info.get("copy") else "")
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
