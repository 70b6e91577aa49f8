"""Backups: reading one back (its manifest, sizes, signature), checking it through a scratch
database at its own schema migrated to this one, listing the folder and taking uploads."""
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from crm import db as crm_db
from crm.clock import now
from crm.errors import CrmError, NotFound, ValidationError
from crm.models import (
    Card,
)
from crm.services import ledger, names
from crm.services.backups.common import (
    _TEXT,
    FORMAT,
    MAX_LINE_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_RATIO,
    NAME,
    BackupError,
    _new_name,
    _remove,
    _sha256_file,
)
from crm.services.backups.load import _from_zip, _load


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


def list_backups(folder, limit=None):
    """The backups in the folder, newest first (the newest `limit` only, when given: each one
    described reads its manifest)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    items = []
    for path in sorted(folder.glob("crm-backup-*.zip"), reverse=True):
        if limit is not None and len(items) >= limit:
            break
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
