"""An existing shop updates without losing anything: a database and a backup made by the code
the shops run today (the commit before the ownership seal and the signed backups, taken from
this repository's history) are migrated by this code, restore and verify — on both databases."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from crm import create_app
from crm import db as crm_db
from crm.config import PROJECT_ROOT
from crm.errors import CrmError
from crm.models import Card, CardRecord
from crm.services import backups, ledger
from tests.conftest import PASSWORD
from tests.ledger_helpers import run

# The code of session 13 (what a shop runs when it updates): schema up to 0008, unsealed owners.
OLD_COMMIT = "ff360a8"


@pytest.fixture(scope="session")
def old_code(tmp_path_factory):
    """The old release, unpacked from git (a clean clone of this repository has it)."""
    target = tmp_path_factory.mktemp("old-release")
    archive = target / "old.tar"
    try:
        subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "-o", str(archive),
                        OLD_COMMIT], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"git archive {OLD_COMMIT} failed: {error}")
        pytest.skip(f"the old release is not in this checkout: {error}")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def old_crm(old_code, home, url, *args):
    """Run a `crm` command of the old release on the shop's instance folder and database."""
    env = dict(os.environ, CRM_HOME=str(home), CRM_DATABASE_URL=url, PYTHONPATH=str(old_code))
    result = subprocess.run([sys.executable, "-c", "import sys; from crm.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args], cwd=old_code, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_shop_made_by_the_old_release_migrates_restores_and_verifies(backend, scratch, old_code,
                                                                      tmp_path):
    """The old release makes the shop (demo customers, a year of entries with sales and
    reversals) and a backup. This code migrates it: every card gets its ownership seal from
    what it holds now and the whole ledger verifies; the old backup restores (through a scratch
    database at its own schema, migrated) and verifies; a card moved afterwards is named."""
    url = scratch.url(backend)
    home = tmp_path / "shop"
    old_crm(old_code, home, url, "create-admin", "--username", "boss", "--password", PASSWORD)
    old_crm(old_code, home, url, "seed-demo", "--customers", "30", "--entries", "600")
    old_crm(old_code, home, url, "backup")
    [old_backup] = sorted((home / "backups").glob("crm-backup-*-manual.zip"))

    app = create_app({"TESTING": True, "INSTANCE_PATH": str(home), "DATABASE_URL": url,
                      "OPEN_BROWSER": False})
    database = app.extensions["crm_db"]
    try:
        applied = crm_db.migrate(database)
        assert "0010_card_owner_seal" in applied
        report = run(app, ledger.verify)
        assert report.ok and report.cards_checked == 30 and report.entries_checked == 600, \
            report.problems[:3]
        assert run(app, lambda: Card.select().where(Card.owner_seal == "").count()) == 0

        # The old backup has no signature: refused until the owner says it is such a backup.
        with pytest.raises(CrmError) as refused:
            run(app, lambda: backups.restore(home / "backups", old_backup.name,
                                             shop_name="我的小店"))
        assert refused.value.code == "unsigned_backup" and "未签名" in refused.value.message
        listed = run(app, lambda: backups.list_backups(home / "backups"))
        assert [(b["name"], b["signed"]) for b in listed] == [(old_backup.name, False)]
        result = run(app, lambda: backups.restore(home / "backups", old_backup.name,
                                                  shop_name="我的小店", accept_unsigned=True))
        assert result["ledger_ok"] and result["entries_checked"] == 600
        assert run(app, lambda: CardRecord.select().count()) == 600
        assert run(app, ledger.verify).ok

        first = run(app, lambda: Card.select().order_by(Card.id).first())
        run(app, lambda: database.execute_sql(
            f"UPDATE t_card SET card_no = 'MOVED-1' WHERE id = {first.id}"))
        problems = run(app, ledger.verify).problems
        assert [p["card_id"] for p in problems] == [first.id]
    finally:
        crm_db.close_all(database)


def test_the_upgrade_test_really_runs_the_old_release(old_code):
    """The old release is older than this code: it lacks the ownership-seal migration."""
    assert (old_code / "crm" / "cli.py").is_file()
    assert not (old_code / "migrations" / "0010_card_owner_seal.py").exists()
    assert (Path(PROJECT_ROOT) / "migrations" / "0010_card_owner_seal.py").exists()
