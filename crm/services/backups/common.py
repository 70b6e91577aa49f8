"""Backups: what every part shares — the format, the tables carried, names and kinds of backup
files, the size caps, the one error, the maintenance lock and the folder's housekeeping."""
import datetime
import hashlib
import re
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from crm import db as crm_db
from crm.clock import now
from crm.errors import Conflict, CrmError
from crm.models import (
    AuditLog,
    AuthToken,
    Card,
    CardRecord,
    ConsumeRecord,
    Counter,
    Customer,
    CustomerType,
    IdempotencyKey,
    LoginThrottle,
    RechargeRule,
    User,
)

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


def _new_name(folder, kind):
    stamp = now().strftime("%Y%m%d-%H%M%S")
    name, n = f"crm-backup-{stamp}-{kind}.zip", 1
    while (folder / name).exists() or (folder / (name + ".part")).exists():
        name, n = f"crm-backup-{stamp}-{kind}-{n}.zip", n + 1
    return name


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# What a backup may unpack to, checked from the zip's directory before anything is read: a
# manifest (every card's chain head: ~90 bytes a card) of at most 64 MB, table parts at most 200
# times their packed size (the JSON lines pack about 10:1), no line over 1 MB.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


MAX_RATIO = 200


MAX_LINE_BYTES = 1024 * 1024


_TEXT = {"type": "string", "maxLength": 200}


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
