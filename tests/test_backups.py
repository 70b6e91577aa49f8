"""Backups and restores: round trips (also SQLite ⇄ MariaDB), consistency under load, corrupt
files, all-or-nothing restores, the schedule and the rotation, another PC's ledger key."""
import datetime
import hashlib
import io
import json
import os
import shutil
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from crm import create_app
from crm import db as crm_db
from crm.errors import CrmError
from crm.models import Card, CardRecord, Customer
from crm.services import backups, cards, customer_types, customers, ledger, recharge_rules
from tests.conftest import PASSWORD
from tests.ledger_helpers import key, make_shop, run

DATA_TABLES = [m._meta.table_name for m in backups.TABLES]


def snapshot(app):
    """Every carried table, row by row, as plain values."""
    def read():
        database = app.extensions["crm_db"]
        out = {}
        for model in backups.TABLES:
            columns = [f.column_name for f in model._meta.sorted_fields]
            rows = database.execute_sql(
                f"SELECT {crm_db.column_list(database, columns)} FROM {model._meta.table_name} "
                "ORDER BY 1").fetchall()
            out[model._meta.table_name] = [tuple(backups._plain(v) for v in r) for r in rows]
        return out

    return run(app, read)


def rich_shop(app):
    """Customers, types, rules, cards and every kind of entry, and audit rows."""
    shop = make_shop(app)
    op, boss = shop.operator, shop.admin
    vip = shop.do(lambda: customer_types.create_type(boss, {"name": "VIP客户", "discount": 90}))
    other = shop.do(lambda: customers.create_customer(op, {"name": "李四", "phone": "13900000001",
                                                           "type_id": vip.id}))
    shop.do(lambda: recharge_rules.create_rule(boss, 50000, 5000))
    a = shop.open_card(amount=60000, bonus=None, card_no="BK-0001")
    b = shop.open_card(amount=10000, bonus=0, customer_id=other.id)
    sold = shop.do(lambda: cards.consume(op, a, key(), 1234, remark="剪发"))
    shop.do(lambda: cards.reverse(boss, sold.record_id, key(), "错"))
    shop.do(lambda: cards.consume(op, b, key(), 999))
    c = shop.open_card(amount=3000, bonus=0)
    shop.do(lambda: cards.change_status(op, c, "report_lost", "丢失"))
    shop.do(lambda: cards.reissue(op, c, key(), "补卡"))
    d = shop.open_card(amount=2000, bonus=500)
    shop.do(lambda: cards.close(op, d, key(), "退卡"))
    return shop


@pytest.fixture
def folder(app):
    """The instance's backup folder."""
    return Path(app.config["BACKUP_DIR"])


def test_round_trip_restores_every_table_row_by_row(app, folder):
    """Backup → changes → restore: every table equals the backup's state; the ledger verifies."""
    shop = rich_shop(app)
    before = snapshot(app)
    info = shop.do(lambda: backups.create(folder, "manual", "我的小店", shop.admin))
    assert info["verified"], info["problems"]
    assert info["counts"]["t_card_record"] == len(before["t_card_record"]) > 10
    card_id = shop.open_card(amount=777, bonus=0)
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))
    shop.do(lambda: customers.create_customer(shop.operator, {"name": "后来的",
                                                              "phone": "13700000000"}))
    result = shop.do(lambda: backups.restore(folder, info["name"], actor=shop.admin,
                                             shop_name="我的小店"))
    assert result["ledger_ok"]
    after = snapshot(app)
    restore_rows = [r for r in after["t_audit_log"] if r[5] == "backup.restore"]
    after["t_audit_log"] = [r for r in after["t_audit_log"] if r not in restore_rows]
    before_audit = [r for r in before["t_audit_log"]]
    assert after.pop("t_audit_log") == before_audit
    before.pop("t_audit_log")
    assert after == before
    assert len(restore_rows) == 1
    assert (folder / result["safety_backup"]).exists()  # the data from before the restore
    assert shop.verify().ok


@pytest.mark.backends("sqlite")
def test_sqlite_to_mariadb_and_back(app, scratch, mysql_server, tmp_path):
    """A backup made on SQLite restores into MariaDB, and MariaDB's back into SQLite."""
    shop = rich_shop(app)
    first = snapshot(app)
    made = shop.do(lambda: backups.create(app.config["BACKUP_DIR"], "manual", "店", None))
    settings = {"INSTANCE_PATH": app.instance_path, "TESTING": True, "BCRYPT_ROUNDS": 4}
    mysql_app = create_app({**settings, "DATABASE_URL": scratch.url("mysql")})
    crm_db.migrate(mysql_app.extensions["crm_db"])
    try:
        run(mysql_app, lambda: backups.restore(mysql_app.config["BACKUP_DIR"], made["name"],
                                               shop_name="店"))
        second = snapshot(mysql_app)
        second["t_audit_log"] = second["t_audit_log"][:len(first["t_audit_log"])]
        assert second == first
        assert run(mysql_app, ledger.verify).ok
        back = run(mysql_app, lambda: backups.create(mysql_app.config["BACKUP_DIR"], "manual",
                                                     "店", None))
    finally:
        crm_db.close_all(mysql_app.extensions["crm_db"])
    sqlite_app = create_app({**settings, "DATABASE_URL": f"sqlite:///{tmp_path / 'back.db'}"})
    crm_db.migrate(sqlite_app.extensions["crm_db"])
    run(sqlite_app, lambda: backups.restore(sqlite_app.config["BACKUP_DIR"], back["name"],
                                            shop_name="店"))
    third = snapshot(sqlite_app)
    assert third["t_card_record"] == first["t_card_record"]
    assert third["t_customer"] == first["t_customer"]
    assert run(sqlite_app, ledger.verify).ok


def test_backup_while_ten_threads_consume_restores_a_verifying_ledger(app, folder):
    """A backup taken while 10 threads keep consuming is one consistent snapshot."""
    shop = make_shop(app)
    card_ids = [shop.open_card(amount=100000, bonus=0) for _ in range(5)]
    database = app.extensions["crm_db"]
    stop = threading.Event()
    errors = []

    def worker(index):
        try:
            with app.app_context(), database.connection_context():
                while not stop.is_set():
                    cards.consume(shop.operator, card_ids[index % 5], key(), 100)
        except Exception as error:  # noqa: BLE001
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    try:
        info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert info["verified"], info["problems"]
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert shop.verify().ok


def _rewrite(path, change):
    """Rewrite a backup zip with `change(members)` applied (a dict name → bytes)."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _edit_amount(members, fix_checksum):
    columns = json.loads(members["manifest.json"])["tables"]["t_card_record"]["columns"]
    lines = members["t_card_record.jsonl"].decode().splitlines(keepends=True)
    row = json.loads(lines[0])
    row[columns.index("amount")] += 100
    row[columns.index("paid_delta")] += 100
    lines[0] = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
    members["t_card_record.jsonl"] = "".join(lines).encode()
    if fix_checksum:
        manifest = json.loads(members["manifest.json"])
        manifest["tables"]["t_card_record"]["sha256"] = hashlib.sha256(
            members["t_card_record.jsonl"]).hexdigest()
        members["manifest.json"] = json.dumps(manifest).encode()


def _drop_line(members):
    lines = members["t_customer.jsonl"].splitlines(keepends=True)
    members["t_customer.jsonl"] = b"".join(lines[1:])


@pytest.mark.parametrize("damage,message", [
    ("flip", "不是一个可用的备份文件"),
    ("truncate", "不是一个可用的备份文件"),
    ("drop_line", "内容与清单不符"),
    ("edit_amount", "内容与清单不符"),
    ("edit_amount_and_checksum", "签名不符"),
    ("newer_schema", "更新版本的系统"),
])
def test_damaged_backups_are_refused_and_change_nothing(app, folder, damage, message):
    """A flipped byte, a truncated zip, a dropped line, a hand-edited amount (with or without a
    matching checksum), a backup from a newer version: the check fails, restore refuses, the
    live data and the other backups stay as they were."""
    shop = rich_shop(app)
    good = shop.do(lambda: backups.create(folder, "manual", "店", None))
    bad = shop.do(lambda: backups.create(folder, "manual", "店", None))
    path = folder / bad["name"]
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        data[-30] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "drop_line":
        _rewrite(path, _drop_line)
    elif damage == "edit_amount":
        _rewrite(path, lambda m: _edit_amount(m, fix_checksum=False))
    elif damage == "edit_amount_and_checksum":
        _rewrite(path, lambda m: _edit_amount(m, fix_checksum=True))
    else:
        def newer(members):
            manifest = json.loads(members["manifest.json"])
            manifest["schema"].append("9999_from_the_future")
            members["manifest.json"] = json.dumps(manifest).encode()
        _rewrite(path, newer)
    before = snapshot(app)
    checked = backups.check(path)
    assert not checked.ok and any(message in p for p in checked.problems), checked.problems
    with pytest.raises(CrmError) as info:
        shop.do(lambda: backups.restore(folder, bad["name"], shop_name="店"))
    assert message in info.value.message
    assert snapshot(app) == before
    assert backups.check(folder / good["name"]).ok
    assert not list(folder.glob("*-safety*.zip"))  # refused before any safety backup


def test_error_halfway_through_a_restore_changes_nothing(app, folder, monkeypatch):
    """A failure forced in the middle of loading: the live data are as before, the error shown."""
    shop = rich_shop(app)
    info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    shop.open_card(amount=4242, bonus=0, card_no="AFTER-1")
    before = snapshot(app)
    def breaking(real):
        def broken(*args):
            for index, item in enumerate(real(*args)):
                if index == 4:  # after users, types, customers and cards were written
                    raise RuntimeError("disk failed")
                yield item
        return broken

    # Whichever way the rows come (straight from the zip, or from the scratch database).
    from crm.services.backups import restoring

    monkeypatch.setattr(restoring, "_from_database", breaking(restoring._from_database))
    monkeypatch.setattr(restoring, "_from_zip", breaking(restoring._from_zip))
    with pytest.raises(RuntimeError):
        shop.do(lambda: backups.restore(folder, info["name"], shop_name="店"))
    assert snapshot(app) == before
    assert run(app, lambda: Card.get(Card.card_no == "AFTER-1").money) == 4242


@pytest.mark.parametrize("name", ["../config.toml", "crm-backup-x.zip", "..%2f..%2fetc",
                                  "crm-backup-20260101-000000-manual.zip/../../x"])
def test_names_with_paths_are_refused(app, folder, name):
    """Only backup file names, never paths."""
    with pytest.raises(CrmError):
        backups.path_of(folder, name)


def test_unwritable_folder_is_a_clear_failure(app, tmp_path):
    """A backup folder that cannot be made: a clear message, no partial file, data untouched."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    shop = make_shop(app)
    with pytest.raises(CrmError, match="无法创建备份文件夹"):
        shop.do(lambda: backups.create(blocker / "backups", "manual", "店", None))


def test_older_schema_backup_is_restored_then_migrated(app, folder):
    """A backup from before migration 0003 (no search_text) restores and is migrated: the
    customers are searchable again."""
    shop = rich_shop(app)
    info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    path = folder / info["name"]

    def make_old(members):
        manifest = json.loads(members["manifest.json"])
        manifest["schema"] = [m for m in manifest["schema"] if m < "0003"]
        for table in ("t_recharge_rule",):
            manifest["tables"].pop(table)
            members.pop(f"{table}.jsonl")
        columns = manifest["tables"]["t_customer"]["columns"]
        drop = columns.index("search_text")
        lines = []
        for line in members["t_customer.jsonl"].decode().splitlines():
            row = json.loads(line)
            del row[drop]
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        members["t_customer.jsonl"] = "".join(lines).encode()
        columns.remove("search_text")
        manifest["tables"]["t_customer"]["sha256"] = hashlib.sha256(
            members["t_customer.jsonl"]).hexdigest()
        del manifest["signature"]  # backups were not signed then
        members["manifest.json"] = json.dumps(manifest).encode()

    _rewrite(path, make_old)
    checked = backups.check(path)
    assert checked.ok and not checked.signed
    shop.do(lambda: backups.restore(folder, info["name"], shop_name="店", accept_unsigned=True))
    found, total = shop.do(lambda: customers.search("李四"))
    assert total == 1 and found[0].phone == "13900000001"
    assert shop.verify().ok


def test_restore_on_a_new_pc_needs_the_recovery_key(app, folder, tmp_path, backend, database_url):
    """A dead PC: a new instance (new keys, empty data) restores the shop's backup only with the
    old PC's recovery key; then the chains verify under that key."""
    shop = rich_shop(app)
    info = shop.do(lambda: backups.create(folder, "manual", "店", None))
    old_key = app.config["LEDGER_KEY"]
    new_home = tmp_path / "new-pc"
    new_app = create_app({"INSTANCE_PATH": str(new_home), "DATABASE_URL": database_url,
                          "TESTING": True})
    assert new_app.config["LEDGER_KEY"] != old_key
    new_folder = Path(new_app.config["BACKUP_DIR"])
    new_folder.mkdir(parents=True)
    (new_folder / info["name"]).write_bytes((folder / info["name"]).read_bytes())
    with pytest.raises(CrmError, match="恢复密钥"):
        run(new_app, lambda: backups.restore(new_folder, info["name"], shop_name="店"))
    result = run(new_app, lambda: backups.restore(new_folder, info["name"], shop_name="店",
                                                  key=old_key.encode()))
    assert result["ledger_ok"] and result["entries_checked"] > 10
    ledger.configure(app.config)


def test_schedule_catches_up_once_per_day_and_rotates(app, folder, clock):
    """With the app's clock moved: a missed 02:00 run happens at the next start (the scheduler's
    own job, named by that clock); never twice for one day; due again after the next 02:00;
    rotation keeps exactly 7 daily, 4 weekly and 12 monthly."""
    from crm import scheduler

    make_shop(app)
    app.config["BACKUP_TIME"] = "02:00"
    at = backups.parse_time("02:00")
    day = clock.now()  # 09:30: the PC was off at 02:00
    assert backups.is_due(day, at, folder)
    scheduler.nightly_backup(app)
    made = [b["name"] for b in backups.list_backups(folder)]
    assert len(made) == 1 and made[0].startswith(f"crm-backup-{day:%Y%m%d}-09") \
        and made[0].endswith("-daily.zip"), made
    clock.advance(hours=8, minutes=30)  # 18:00 the same day: nothing more
    assert not backups.is_due(clock.now(), at, folder)
    scheduler.nightly_backup(app)
    assert [b["name"] for b in backups.list_backups(folder)] == made
    clock.advance(hours=8, minutes=5)  # 02:05 the next day: due again
    assert backups.is_due(clock.now(), at, folder) is True

    # Rotation, on files dated over 15 months.
    rotation = Path(app.instance_path) / "rotation"
    rotation.mkdir()
    start = datetime.datetime(2025, 8, 1, 2, 0)
    made = []
    for n in range(0, 480, 1):
        moment = start + datetime.timedelta(days=n)
        name = f"crm-backup-{moment:%Y%m%d-%H%M%S}-daily.zip"
        (rotation / name).write_bytes(b"PK")
        made.append(moment)
    (rotation / "crm-backup-20250801-030000-manual.zip").write_bytes(b"PK")
    removed = backups.rotate(rotation, 7, 4, 12)
    kept = sorted(p.name for p in rotation.glob("*-daily.zip"))
    newest = made[-1]
    expected = set()
    for count, bucket in ((7, lambda t: t.date()), (4, lambda t: t.isocalendar()[:2]),
                          (12, lambda t: (t.year, t.month))):
        seen = []
        for moment in sorted(made, reverse=True):
            if bucket(moment) not in seen:
                seen.append(bucket(moment))
                if len(seen) <= count:
                    expected.add(f"crm-backup-{moment:%Y%m%d-%H%M%S}-daily.zip")
    assert set(kept) == expected and len(removed) == 480 - len(expected)
    assert 7 <= len(kept) <= 23
    assert f"crm-backup-{newest:%Y%m%d-%H%M%S}-daily.zip" in kept
    assert (rotation / "crm-backup-20250801-030000-manual.zip").exists()


def test_backup_page_and_restore_through_the_web(app, client, folder):
    """Admin page: back up now, then restore with the typed shop name (wrong name refused)."""
    from tests.conftest import AuthActions, csrf_token

    shop = rich_shop(app)
    auth = AuthActions(client)
    auth.login("boss")
    token = csrf_token(client, "/admin/backups")
    assert client.post("/admin/backups", data={"csrf_token": token}).status_code == 302
    name = backups.list_backups(folder)[0]["name"]
    assert name in client.get("/admin/backups").get_data(as_text=True)
    shop.open_card(amount=100, bonus=0, card_no="LATE-1")
    resp = client.post(f"/admin/backups/{name}/restore", data={"csrf_token": token,
                                                                "confirm": "别的店"})
    assert resp.status_code == 422 and "请输入店名" in resp.get_data(as_text=True)
    assert run(app, lambda: Card.select().where(Card.card_no == "LATE-1").count()) == 1
    resp = client.post(f"/admin/backups/{name}/restore", data={"csrf_token": token,
                                                                "confirm": "我的小店"})
    assert resp.status_code == 302
    assert run(app, lambda: Card.select().where(Card.card_no == "LATE-1").count()) == 0
    assert client.get("/").status_code == 302  # everyone logs in again after a restore
    assert client.get(f"/admin/backups/{name}/download").status_code == 302


def test_cli_backup_and_restore(app, runner, folder, tmp_path):
    """`crm backup` and `crm restore FILE --yes`."""
    shop = rich_shop(app)
    result = runner.invoke(args=["backup"])
    assert result.exit_code == 0, result.output
    assert "已读回核对" in result.output
    path = next(folder.glob("*-manual.zip"))
    shop.open_card(amount=100, bonus=0, card_no="LATE-2")
    result = runner.invoke(args=["restore", str(path), "--yes"])
    assert result.exit_code == 0, result.output
    assert "账本校验：全部正确" in result.output
    assert run(app, lambda: Card.select().where(Card.card_no == "LATE-2").count()) == 0
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    result = runner.invoke(args=["restore", str(bad), "--yes"])
    assert result.exit_code == 1 and "不是备份文件" in result.output
    assert run(app, lambda: Customer.select().count()) == 2
    assert run(app, lambda: CardRecord.select().count()) > 10


def test_scheduler_job_makes_the_due_backup(app, folder):
    """The scheduler's job, run as the launcher runs it, makes the due daily backup once."""
    from crm import scheduler

    make_shop(app)
    scheduler.nightly_backup(app)
    scheduler.nightly_backup(app)
    daily = list(folder.glob("*-daily.zip"))
    assert len(daily) == 1 and backups.describe(daily[0])["verified"]


@pytest.mark.backends("mysql")
def test_mysql_backup_also_writes_a_native_dump(app, folder):
    """On MySQL a mysqldump --single-transaction copy lands beside the portable backup."""
    import gzip
    import shutil

    if not (shutil.which("mysqldump") or shutil.which("mariadb-dump")):
        pytest.fail("mysqldump is part of the MariaDB client that .ci/run installs")
    rich_shop(app)
    info = run(app, lambda: backups.create(folder, "manual", "店", None))
    assert info["native"].startswith("已另存")
    dump = folder / (info["name"][:-4] + ".sql.gz")
    text = gzip.decompress(dump.read_bytes()).decode("utf-8")
    assert "CREATE TABLE `t_card_record`" in text and "INSERT INTO `t_card_record`" in text


def test_never_two_backups_at_once(app, folder):
    """While one backup or restore holds the maintenance lock, another is refused."""
    make_shop(app)
    with backups._process_lock:
        with pytest.raises(CrmError, match="另一个备份或恢复正在进行"):
            run(app, lambda: backups.create(folder, "manual", "店", None))
    assert run(app, lambda: backups.create(folder, "manual", "店", None))["verified"]


@pytest.mark.backends("mysql")
def test_a_full_backup_disk_leaves_no_partial_file(app, database_url, tmp_path):
    """The disk fills up while the backup is written (a real write error: the process may write
    files of 2 KB at most): a clear message, no zip and no part-file left, nothing audited."""
    import subprocess
    import sys

    rich_shop(app)
    folder = tmp_path / "small-disk"
    code = f"""
import resource, signal
from crm import create_app
from crm.errors import CrmError
from crm.services import backups
app = create_app({{"INSTANCE_PATH": {app.instance_path!r}, "DATABASE_URL": {database_url!r},
                  "TESTING": True}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
with app.app_context(), app.extensions["crm_db"].connection_context():
    try:
        backups.create({str(folder)!r}, "manual", "店", None)
    except CrmError as error:
        print(error.code, error.message)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("backup_failed 备份写入失败") and "磁盘空间" in out.stdout
    assert list(folder.iterdir()) == []  # neither a zip nor a .part file
    from crm.models import AuditLog

    assert run(app, lambda: AuditLog.select().where(AuditLog.action == "backup.create").count()) == 0


HOSTILE_KEYS = [
    'a" \nMAX_AMOUNT_FEN = 99999999999\nLOGIN_MAX_FAILURES = 1000000\nX = "',
    "0" * 64 + "\nMAX_AMOUNT_FEN = 99999999999",
    "0" * 64 + '"\nMAX_AMOUNT_FEN = 99999999999 #',
    "０" * 64,  # fullwidth digits
    "0" * 63 + "\ud800",
    "g" * 64,
    "0" * 65,
]


@pytest.mark.parametrize("recovery_key", HOSTILE_KEYS)
def test_recovery_key_cannot_inject_settings(app, client, api_token, folder, recovery_key):
    """A recovery key is accepted only as 64 hexadecimal digits: one with quotes, newlines and
    settings after it, lookalike digits or a lone surrogate is refused (422) by the API before
    anything happens; the config file and the data stay as they were."""
    shop = rich_shop(app)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    config = Path(app.instance_path) / "config.toml"
    before_config, before = config.read_bytes(), shop.counts()
    headers = api_token("owner", role="admin")
    body = json.dumps({"confirm": "我的小店", "recovery_key": recovery_key})  # \ud800 escaped
    resp = client.post(f"/api/v1/backups/{made['name']}/restore", headers=headers, data=body,
                       content_type="application/json")
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["code"] in ("invalid_recovery_key", "invalid_text")
    assert config.read_bytes() == before_config and shop.counts() == before
    # The page's form reaches the service's own check (the API's document refused it first).
    from tests.conftest import AuthActions, csrf_token

    AuthActions(client).login("owner")
    token = csrf_token(client, "/admin/backups")
    form = urllib.parse.urlencode({"csrf_token": token, "confirm": "我的小店", "recovery_key":
                                   recovery_key.encode("utf-8", "surrogatepass")})
    page = client.post(f"/admin/backups/{made['name']}/restore", data=form,
                       content_type="application/x-www-form-urlencoded")
    assert page.status_code == 422 and "恢复密钥" in page.get_data(as_text=True)
    assert config.read_bytes() == before_config and shop.counts() == before
    assert backups.list_backups(folder)[0]["kind"] == "manual"  # no safety backup: not started


def test_recovery_key_file_with_settings_is_refused_by_the_cli(app, runner, folder, tmp_path):
    """`crm restore --recovery-key-file` with a key carrying settings: refused, nothing kept."""
    shop = rich_shop(app)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    key_file = tmp_path / "key.txt"
    key_file.write_text(HOSTILE_KEYS[0], encoding="utf-8")
    result = runner.invoke(args=["restore", str(folder / made["name"]), "--yes",
                                 "--recovery-key-file", str(key_file)])
    assert result.exit_code == 1 and "恢复密钥格式不正确" in result.output, result.output
    assert len(backups.list_backups(folder)) == 1


def test_the_config_file_is_written_with_a_toml_writer(tmp_path):
    """config.set_value quotes whatever it is given: the value reads back exactly, as one
    string, no other setting appears, and the file's comments and other settings are kept."""
    from crm import config as crm_config

    folder = tmp_path / "instance"
    path = crm_config.ensure_config_file(folder)
    before = crm_config.load(folder)
    crm_config.set_value(folder, "LEDGER_KEY", HOSTILE_KEYS[0])
    after = crm_config.load(folder)
    assert after["LEDGER_KEY"] == HOSTILE_KEYS[0]
    assert after["MAX_AMOUNT_FEN"] == before["MAX_AMOUNT_FEN"] == 5_000_000
    assert after["LOGIN_MAX_FAILURES"] == before["LOGIN_MAX_FAILURES"]
    text = path.read_text(encoding="utf-8")
    assert "# Keep this file private" in text and after["SECRET_KEY"] == before["SECRET_KEY"]
    key = "ab" * 32
    crm_config.set_value(folder, "LEDGER_KEY", key)
    assert crm_config.read_value(path, "LEDGER_KEY") == key
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("LEDGER_KEY")] == [f'LEDGER_KEY = "{key}"']


def _zip(path, members):
    """Write a zip of `members` (name → bytes) at `path`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


BROKEN_FILES = {
    "manifest_without_fields": {"manifest.json": b'{"format": 2}'},
    "manifest_a_list": {"manifest.json": b"[2]"},
    "manifest_nested_deep": {"manifest.json": b"[" * 100_000 + b"]" * 100_000},
    "tables_of_wrong_shape": {"manifest.json": json.dumps({
        "format": 2, "created_at": "2026-11-27 09:30:00", "schema": ["0001_initial"],
        "tables": {"t_user": {"rows": "many", "sha256": "x", "columns": ["id"]}},
        "chain_heads": {}}).encode()},
    "manifest_of_80_mb": {"manifest.json": b'{"format": 2, "pad": "' + b" " * (80 << 20) + b'"}'},
    "table_that_unpacks_to_300_mb": {"manifest.json": b'{"format": 2}',
                                     "t_user.jsonl": b"\n" * (300 << 20)},
}


@pytest.mark.parametrize("kind", sorted(BROKEN_FILES))
def test_uploaded_files_cannot_break_the_backup_page(app, client, folder, kind):
    """A malformed or bomb-like file: uploading it is refused (422) and nothing is kept; the same
    file put in the folder by hand is listed as broken by the page and the API (never a 500) and
    cannot be restored; sizes are checked from the zip's directory before anything is unpacked."""
    from tests.conftest import AuthActions, csrf_token

    rich_shop(app)
    source = _zip(Path(app.instance_path) / f"{kind}.zip", BROKEN_FILES[kind])
    AuthActions(client).login("boss")
    token = csrf_token(client, "/admin/backups")
    resp = client.post("/admin/backups/upload", data={
        "csrf_token": token, "file": (io.BytesIO(source.read_bytes()), "usb.zip")},
        content_type="multipart/form-data")
    assert resp.status_code == 422 and "不是一个可用的备份文件" in resp.get_data(as_text=True)
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing kept

    folder.mkdir(parents=True, exist_ok=True)
    name = "crm-backup-20261127-093000-upload.zip"
    shutil.copyfile(source, folder / name)
    page = client.get("/admin/backups")
    assert page.status_code == 200 and name in page.get_data(as_text=True)
    listed = client.get("/api/v1/backups", headers=_bearer(client)).get_json()["items"]
    assert [(i["name"], i["readable"], i["verified"]) for i in listed] == [(name, False, False)]
    resp = client.post(f"/admin/backups/{name}/restore", data={"csrf_token": token,
                                                                "confirm": "我的小店"})
    assert resp.status_code == 422


def _bearer(client):
    token = client.post("/api/v1/login", json={"username": "boss", "password": PASSWORD}
                        ).get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_an_upload_that_fails_its_check_is_refused_and_not_kept(app, client, folder):
    """A readable backup with an edited amount, uploaded through the API: 422 naming what
    failed, and neither the file nor its check result stays in the folder."""
    shop = rich_shop(app)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    path = folder / made["name"]
    edited = Path(app.instance_path) / "edited.zip"
    shutil.copyfile(path, edited)
    _rewrite(edited, lambda m: _edit_amount(m, fix_checksum=False))
    before = sorted(p.name for p in folder.iterdir())
    resp = client.post("/api/v1/backups/upload", headers=_bearer(client), data={
        "file": (io.BytesIO(edited.read_bytes()), "usb.zip")}, content_type="multipart/form-data")
    assert resp.status_code == 422, resp.get_json()
    assert "未通过核对" in resp.get_json()["error"]["message"]
    assert "内容与清单不符" in resp.get_json()["error"]["message"]
    assert sorted(p.name for p in folder.iterdir()) == before
    good = client.post("/api/v1/backups/upload", headers=_bearer(client), data={
        "file": (io.BytesIO(path.read_bytes()), "usb.zip")}, content_type="multipart/form-data")
    assert good.status_code == 201 and good.get_json()["verified"] is True


def test_part_files_of_a_killed_backup_are_cleaned_up(app, folder):
    """A part file nobody has written to for ten minutes (a backup killed mid-write) goes at the
    next backup; one still being written stays. A hand-made check result that is not an object
    does not break the list."""
    shop = rich_shop(app)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / "crm-backup-20261101-020000-daily.zip.part"
    fresh = folder / "crm-backup-20261126-120000-manual.zip.part"
    for part in (stale, fresh):
        part.write_bytes(b"PK half a zip")
    old = time.time() - backups.PART_STALE_SECONDS - 5
    os.utime(stale, (old, old))
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    assert not stale.exists() and fresh.exists()
    Path(str(folder / made["name"]) + ".check.json").write_text("[1, 2]", encoding="utf-8")
    assert [i["name"] for i in backups.list_backups(folder)] == [made["name"]]


def _signed_members(path):
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def _attack(members, admin_hash):
    """The attacker's edits: an admin with a known password, the audit log emptied, a card moved
    to another customer, a closed card reopened; digests and counts made to match again."""
    manifest = json.loads(members["manifest.json"])

    def table(name):
        columns = manifest["tables"][name]["columns"]
        rows = [json.loads(line) for line in members[f"{name}.jsonl"].decode().splitlines()]
        return columns, rows

    def put(name, columns, rows):
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        members[f"{name}.jsonl"] = data
        manifest["tables"][name].update(rows=len(rows), sha256=hashlib.sha256(data).hexdigest())

    columns, users = table("t_user")
    intruder = dict(zip(columns, users[0], strict=True))
    intruder.update(id=max(u[0] for u in users) + 1, username="intruder", role="admin",
                    password_hash=admin_hash, active=1)
    put("t_user", columns, users + [[intruder[c] for c in columns]])
    columns, _ = table("t_audit_log")
    put("t_audit_log", columns, [])
    columns, card_rows = table("t_card")
    at = {c: columns.index(c) for c in ("customer_id", "status")}
    customers_ = sorted({r[at["customer_id"]] for r in card_rows})
    card_rows[0][at["customer_id"]] = customers_[-1] if card_rows[0][at["customer_id"]] != \
        customers_[-1] else customers_[0]
    for row in card_rows:
        if row[at["status"]] == "closed":
            row[at["status"]] = "active"
    put("t_card", columns, card_rows)
    members["manifest.json"] = json.dumps(manifest, ensure_ascii=False).encode()


def test_an_edited_backup_cannot_be_restored(app, client, folder):
    """The attack that got through: a backup edited to add an admin with a known password, empty
    the audit log, move a card to another customer and reopen a closed card, with its digests
    made to match. The manifest's signature (HMAC with the ledger key) no longer does: the
    upload is refused (422 naming the signature) and not kept; the same file in the folder does
    not restore; stripped of its signature it is an unsigned file, refused at upload and, in the
    folder, restorable only as an old backup acknowledged as such — and then still caught."""
    import bcrypt

    shop = rich_shop(app)
    closing = shop.open_card(amount=1000, bonus=0, card_no="CLOSE-1")
    shop.do(lambda: cards.close(shop.admin, closing, key(), "退卡"))
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    assert made["verified"] and made["signed"]
    members = _signed_members(folder / made["name"])
    _attack(members, bcrypt.hashpw(b"attacker-pass-1", bcrypt.gensalt(4)).decode())
    edited = _zip(Path(app.instance_path) / "edited.zip", members)
    headers = _bearer(client)
    before, listing = snapshot(app), sorted(p.name for p in folder.iterdir())

    resp = client.post("/api/v1/backups/upload", headers=headers, data={
        "file": (io.BytesIO(edited.read_bytes()), "usb.zip")}, content_type="multipart/form-data")
    assert resp.status_code == 422 and "签名不符" in resp.get_json()["error"]["message"]
    assert sorted(p.name for p in folder.iterdir()) == listing

    planted = "crm-backup-20261127-093100-manual.zip"
    shutil.copyfile(edited, folder / planted)
    resp = client.post(f"/api/v1/backups/{planted}/restore", headers=headers,
                       json={"confirm": "我的小店"})
    assert resp.status_code == 422 and "签名不符" in resp.get_json()["error"]["message"]
    assert snapshot(app) == before

    manifest = json.loads(members["manifest.json"])
    del manifest["signature"]
    members["manifest.json"] = json.dumps(manifest, ensure_ascii=False).encode()
    _zip(edited, members)
    resp = client.post("/api/v1/backups/upload", headers=headers, data={
        "file": (io.BytesIO(edited.read_bytes()), "usb.zip")}, content_type="multipart/form-data")
    assert resp.status_code == 422 and "未签名" in resp.get_json()["error"]["message"]
    shutil.copyfile(edited, folder / planted)
    resp = client.post(f"/api/v1/backups/{planted}/restore", headers=headers,
                       json={"confirm": "我的小店"})
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "unsigned_backup"
    resp = client.post(f"/api/v1/backups/{planted}/restore", headers=headers,
                       json={"confirm": "我的小店", "accept_unsigned": True})
    assert resp.status_code == 422  # acknowledged, but the moved card is named by the check
    assert snapshot(app) == before
    assert client.post("/api/v1/login", json={"username": "intruder",
                                              "password": "attacker-pass-1"}).status_code == 401


def test_another_pcs_backup_uploads_only_with_its_recovery_key(app, client, folder, tmp_path,
                                                                database_url):
    """A backup signed on another PC: without that PC's recovery key the upload is refused and
    not kept; with it, it is kept, checked and then restores with the same key."""
    shop = rich_shop(app)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    data, old_key = (folder / made["name"]).read_bytes(), app.config["LEDGER_KEY"]
    new_app = create_app({"INSTANCE_PATH": str(tmp_path / "new-pc"), "DATABASE_URL": database_url,
                          "TESTING": True, "BCRYPT_ROUNDS": 4})
    try:
        new_folder = Path(new_app.config["BACKUP_DIR"])
        with new_app.app_context(), new_app.extensions["crm_db"].connection_context():
            with pytest.raises(CrmError, match="恢复密钥"):
                backups.receive_upload(new_folder, "usb.zip", data)
            assert not new_folder.exists() or list(new_folder.iterdir()) == []
            name, checked = backups.receive_upload(new_folder, "usb.zip", data, old_key)
            assert checked.ok and (new_folder / name).exists()
            result = backups.restore(new_folder, name, shop_name="店", key=old_key)
            assert result["ledger_ok"]
    finally:
        crm_db.close_all(new_app.extensions["crm_db"])
        ledger.configure(app.config)


def test_a_backup_check_in_the_background_leaves_the_apps_queries_alone(app, folder):
    """A backup's read-back check migrates a scratch database (the nightly backup and every
    restore's safety backup run one in the background) while staff keep working: no query of
    the app may land in that scratch database meanwhile (models rebound for a migration are
    rebound for every thread)."""
    shop = make_shop(app)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    done, results = threading.Event(), []

    def checks():
        try:
            for _ in range(4):
                results.append(backups.check(folder / made["name"]).ok)
        finally:
            done.set()

    thread = threading.Thread(target=checks)
    thread.start()
    made_ids = []
    while not done.is_set() or len(made_ids) < 20:
        number = len(made_ids)
        created = shop.do(lambda n=number: customers.create_customer(
            shop.operator, {"name": f"顾客{n}", "phone": f"139{n:08d}"}))
        assert shop.do(lambda c=created.id: Customer.get_or_none(Customer.id == c)) is not None
        made_ids.append(created.id)
    thread.join()
    assert results == [True] * 4
    assert shop.do(lambda: Customer.select().where(Customer.id.in_(made_ids)).count()) \
        == len(made_ids)
    found, total = shop.do(lambda: customers.search("顾客1"))
    assert total >= 1
