"""Backups: the restore — checked first, a safety backup, the restore hold, every carried table
replaced in one transaction, the ledger verified and the restore audited."""
import logging
import shutil
import threading
import zipfile
from pathlib import Path

from peewee import IntegrityError

from crm import db as crm_db
from crm.errors import ValidationError
from crm.models import (
    User,
)
from crm.services import Actor, audit, hold, ledger, stats
from crm.services.backups.archive import create
from crm.services.backups.checking import (
    UNSIGNED_ASK,
    UNSIGNED_FOREIGN,
    Checked,
    _already_checked,
    check,
    path_of,
    read_manifest,
)
from crm.services.backups.common import (
    BackupError,
    maintenance_lock,
)
from crm.services.backups.load import _from_database, _from_zip, _load


def check_confirmation(shop_name, typed):
    """A restore from a page or the API goes ahead only after the shop's name was typed (the
    command line asks yes/no instead): it replaces every row the shop has."""
    if (typed or "").strip() != shop_name:
        raise ValidationError(f"请输入店名“{shop_name}”以确认恢复", code="confirmation_required",
                              field="confirm")


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
    logging.getLogger("crm.backup").info("已恢复到备份 %s（恢复前的数据已另存为 %s；账本校验%s）",
                                         name, safety["name"], "通过" if report.ok else "发现问题")
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
