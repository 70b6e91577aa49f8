"""数据监控: the facts, and the problems that become a banner on the admin's home page."""
import datetime
from pathlib import Path

from crm.services import backups, monitor
from tests.conftest import AuthActions
from tests.ledger_helpers import make_shop, run


def test_monitor_shows_facts_and_problems(app, client, backend):
    """No backup yet: a banner; after a verified backup, that problem is gone; durability on."""
    shop = make_shop(app)
    shop.open_card(amount=12345, bonus=0)
    status = run(app, lambda: monitor.status(app.config))
    assert status["durable"] is True
    assert status["outstanding"] == 12345 and status["today_entries"] == 1
    assert "还没有任何备份" in status["problems"]
    AuthActions(client).login("boss")
    home = client.get("/").get_data(as_text=True)
    assert "problem-banner" in home and "还没有任何备份" in home
    run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "店", None))
    status = run(app, lambda: monitor.status(app.config))
    assert status["problems"] == [] and status["last_backup"]["verified"]
    page = client.get("/admin/monitor").get_data(as_text=True)
    assert "一切正常" in page and ("SQLite" in page or "MariaDB" in page)
    assert "¥123.45" in page  # the money the shop owes, formatted by the page
    assert "problem-banner" not in client.get("/").get_data(as_text=True)


def test_low_disk_and_unverified_backup_are_problems(app):
    """A disk below the threshold and a backup that failed its check are reported."""
    make_shop(app)
    info = run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "店", None))
    check = Path(app.config["BACKUP_DIR"]) / (info["name"] + ".check.json")
    check.write_text('{"ok": false, "problems": ["x"]}', encoding="utf-8")
    app.config["DISK_WARN_MB"] = 10**9  # more than any disk has
    problems = run(app, lambda: monitor.status(app.config))["problems"]
    assert any("未通过核对" in p for p in problems)
    assert any("剩余空间不足" in p for p in problems)


def test_operator_does_not_see_the_banner(app, client):
    """Only admins see the monitoring banner."""
    make_shop(app)
    AuthActions(client).login("ann")
    assert "problem-banner" not in client.get("/").get_data(as_text=True)
    assert client.get("/admin/monitor").status_code == 403


def test_backup_age_today_and_next_backup_follow_the_apps_clock(app, clock):
    """"Today's entries", the next nightly backup and "no backup for 2 days" are read off the
    app's clock: a backup made now is fine tomorrow and a problem three days on."""
    shop = make_shop(app)
    app.config["BACKUP_TIME"] = "02:00"
    shop.open_card(amount=100, bonus=0)
    run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "店", None))
    status = run(app, lambda: monitor.status(app.config))
    tomorrow = clock.today() + datetime.timedelta(days=1)
    assert status["today_entries"] == 1 and status["problems"] == []
    assert status["next_backup"] == f"{tomorrow.isoformat()} 02:00"
    clock.advance(days=1)
    status = run(app, lambda: monitor.status(app.config))
    assert status["today_entries"] == 0 and status["problems"] == []
    clock.advance(days=2)
    problems = run(app, lambda: monitor.status(app.config))["problems"]
    assert any("已超过 2 天没有备份" in p for p in problems), problems
