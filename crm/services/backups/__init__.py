"""Backups in one portable format for SQLite and MySQL, verified by a restore into a scratch
database; restores that are all-or-nothing and start with a safety backup.

A backup is a zip: manifest.json (format, app and schema version, time, shop, row counts, the
sha256 of every part, every card's chain head, the ledger key's fingerprint, its signature) and
one JSON-lines file per table. The ledger key itself is never in a backup (see README: the
recovery key). By concern: common (format, tables, caps, the lock, housekeeping), archive
(making one), checking (reading one back, listing, uploads), load (rows into a database in one
transaction), restoring, schedule (rotation and the nightly run). This module is their surface.
"""
from crm.services.backups.archive import create, native_dump
from crm.services.backups.checking import (
    Checked,
    check,
    describe,
    list_backups,
    path_of,
    read_manifest,
    receive_upload,
    save_upload,
)
from crm.services.backups.common import (
    FORMAT,
    KINDS,
    NAME,
    NOT_CARRIED,
    PART_STALE_SECONDS,
    TABLES,
    BackupError,
    _plain,
    _process_lock,
    clean_parts,
    maintenance_lock,
)
from crm.services.backups.restoring import check_confirmation, check_later, restore
from crm.services.backups.schedule import (
    is_due,
    last_daily,
    last_slot,
    parse_time,
    rotate,
    run_scheduled,
)

__all__ = [
    "FORMAT", "KINDS", "NAME", "NOT_CARRIED", "PART_STALE_SECONDS", "TABLES", "BackupError",
    "Checked", "_plain", "_process_lock", "check", "check_confirmation", "check_later",
    "clean_parts", "create",
    "describe", "is_due", "last_daily", "last_slot", "list_backups", "maintenance_lock",
    "native_dump", "parse_time", "path_of", "read_manifest", "receive_upload", "restore",
    "rotate", "run_scheduled", "save_upload",
]
