"""Bench: backup and restore of a big shop on MariaDB.

    python bench/backup.py [--url mysql://root@127.0.0.1:3306/crm_bench_backup]
                           [--customers 100000] [--entries 1000000]

Fills a fresh bench database (dropped and re-created: never point --url at a shop's data), then
times a backup (the dump, then the read-back check: a restore into a scratch SQLite database and
the verification of every chain) and a restore of it (its check, the safety backup of the current
data with its own check, the replacement in one transaction, the final ledger verification).
"""
import time
from pathlib import Path

from _common import fill, fresh_app, machine, size_args

from crm import db as crm_db  # noqa: E402
from crm.services import Actor, backups  # noqa: E402
from crm.services import users as user_service  # noqa: E402


def main():
    args = size_args(__doc__, "crm_bench_backup")
    app, database = fresh_app(args.url)
    folder = Path(app.config["BACKUP_DIR"])
    with app.app_context(), database.connection_context():
        print(machine(database))
        boss = user_service.create_user(Actor(), "bench", "bench-password-1", role="admin")
        fill(database, boss, args)

        started = time.perf_counter()
        info = backups.create(folder, "manual", "压测小店", None)
        total = time.perf_counter() - started
        checked_at = time.perf_counter()
        check = backups.check(folder / info["name"])
        check_only = time.perf_counter() - checked_at
        print(f"backup: {total:.1f} s in all (of which the read-back check ≈ {check_only:.1f} s), "
              f"{info['size'] / 1e6:.0f} MB, verified: {info['verified'] and check.ok}")

        started = time.perf_counter()
        result = backups.restore(folder, info["name"], shop_name="压测小店")
        print(f"restore: {time.perf_counter() - started:.1f} s in all (safety backup of the "
              f"current data, replacement in one transaction, final verification of "
              f"{result['entries_checked']} entries), ledger ok: {result['ledger_ok']}")
        started = time.perf_counter()
        safety = backups.check(Path(result["safety_path"]))
        print(f"  then the safety backup's read-back check: {time.perf_counter() - started:.1f} s,"
              f" ok: {safety.ok}")
    crm_db.close_all(database)


if __name__ == "__main__":
    main()
