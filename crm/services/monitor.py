"""数据监控: the facts an owner checks — database, durability, backups, ledger, disk, uptime —
and the problems among them (shown as a banner on the admin's home page)."""
import datetime
import os
import shutil
import sqlite3
import time
from pathlib import Path

from peewee import fn

from crm import __version__
from crm import db as crm_db
from crm.clock import now
from crm.models import Card, CardRecord, Customer
from crm.services import backups, ledger

STARTED = time.monotonic()  # uptime is an interval: the real clock's, not crm.clock's


def _durability(database):
    """(durable, the setting in words): does a commit survive a power cut?"""
    if crm_db.is_mysql(database):
        flush = database.execute_sql("SELECT @@innodb_flush_log_at_trx_commit").fetchone()[0]
        return int(flush) == 1, f"innodb_flush_log_at_trx_commit = {flush}"
    mode = database.execute_sql("PRAGMA synchronous").fetchone()[0]
    journal = database.execute_sql("PRAGMA journal_mode").fetchone()[0]
    return int(mode) == 2 and journal == "wal", f"journal_mode = {journal}, " \
        f"synchronous = {mode} ({'FULL' if int(mode) == 2 else '不是 FULL'})"


def _database_facts(database):
    durable, setting = _durability(database)
    if crm_db.is_mysql(database):
        version = database.execute_sql("SELECT VERSION()").fetchone()[0]
        size = database.execute_sql(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = DATABASE()").fetchone()[0]
        return "MySQL / MariaDB", version, int(size), durable, setting
    path = Path(database.database)
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return "SQLite", sqlite3.sqlite_version, size, durable, setting


def _free(path):
    target = Path(path)
    while not target.exists() and target != target.parent:
        target = target.parent
    return shutil.disk_usage(target).free


def _disks(config, database):
    data_dir = Path(database.database).parent if not crm_db.is_mysql(database) else \
        Path(config["INSTANCE_PATH"])
    return {"数据": (str(data_dir), _free(data_dir)),
            "备份": (config["BACKUP_DIR"], _free(config["BACKUP_DIR"]))}


def _problems(config, durable, setting, last_backup, last_check, disks):
    """What needs the owner's attention, in words; one rule for the monitoring page and the
    admin's 工作台."""
    problems = []
    if not durable:
        problems.append(f"数据库未设置为断电不丢数据（{setting}）")
    if last_backup is None:
        problems.append("还没有任何备份")
    else:
        if not last_backup["verified"]:
            problems.append(f"最近一次备份 {last_backup['name']} 未通过核对")
        made = datetime.datetime.strptime(last_backup["created_at"], "%Y-%m-%d %H:%M:%S") \
            if last_backup["created_at"] else None
        if made and now() - made > datetime.timedelta(days=2):
            problems.append(f"已超过 2 天没有备份（最近一次：{last_backup['created_at']}）")
    if last_check and not last_check[1].get("ok"):
        found = [p for p in last_check[1].get("problems") or [] if isinstance(p, dict)]
        named = "；".join(f"卡 {p.get('card_no') or p.get('card_id')}：{p.get('problem')}"
                         for p in found[:3]) + ("等" if len(found) > 3 else "")
        problems.append(f"最近一次账本校验发现问题（{named}），请查看账本校验" if found
                        else "最近一次账本校验发现问题，请查看账本校验")
    warn_bytes = int(config.get("DISK_WARN_MB", 1024)) * 1024 * 1024
    for label, (path, free) in disks.items():
        if free < warn_bytes:
            problems.append(f"{label}文件夹所在磁盘剩余空间不足：{free / 1e9:.1f} GB（{path}）")
    return problems


def problems(config):
    """Only the problems, from the cheap facts (durability, the newest backup, the last ledger
    check, free disk): no counts, sums or database size, which cost the monitoring page most."""
    database = crm_db.db.obj
    latest = backups.list_backups(config["BACKUP_DIR"], limit=1)
    return _problems(config, *_durability(database), latest[0] if latest else None,
                     ledger.last_verification(), _disks(config, database))


def status(config, restarts=None):
    """Everything the monitoring page (and GET /api/v1/monitor) shows, with `problems` listing
    what needs attention. `restarts` defaults to the supervisor's count in the config."""
    if restarts is None:
        restarts = int(config.get("RESTARTS", 0) or 0)
    database = crm_db.db.obj
    kind, version, size, durable, setting = _database_facts(database)
    today = datetime.datetime.combine(now().date(), datetime.time())
    counts = {m._meta.table_name: m.select().count() for m in (Customer, Card, CardRecord)}
    today_count, today_sum = (CardRecord.select(fn.COUNT(CardRecord.id),
                                                fn.COALESCE(fn.SUM(CardRecord.amount), 0))
                              .where(CardRecord.created_at >= today).tuples().get())
    owed = Card.select(fn.COALESCE(fn.SUM(Card.money), 0)).scalar()
    items = backups.list_backups(config["BACKUP_DIR"])
    last_backup = items[0] if items else None
    at = backups.parse_time(config["BACKUP_TIME"])
    next_slot = backups.last_slot(now(), at) + datetime.timedelta(days=1)
    last_check = ledger.last_verification()
    disks = _disks(config, database)
    uptime = int(time.monotonic() - STARTED)
    return {
        "database": kind, "version": version, "size": size, "durable": durable,
        "durability_setting": setting, "counts": counts, "today_entries": today_count,
        "today_net": int(today_sum), "outstanding": int(owed),  # fen
        "last_backup": last_backup, "next_backup": next_slot.strftime("%Y-%m-%d %H:%M"),
        "last_check": last_check, "disks": disks, "app_version": __version__,
        "uptime": str(datetime.timedelta(seconds=uptime)), "restarts": restarts,
        "pid": os.getpid(),
        "problems": _problems(config, durable, setting, last_backup, last_check, disks),
    }
