"""Several server processes on one instance folder and one database: what one process changes
outside the database (the ledger key after a restore) reaches the others before they move money."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from crm import create_app
from crm.launcher import running_instance, spawn, wait_until_running
from crm.services import backups
from tests.conftest import PASSWORD
from tests.ledger_helpers import make_shop, run

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A logged-in API client of one server."""

    def __init__(self, port, username):
        self.port = port
        self.token = None
        self.token = self.call("POST", "/api/v1/login",
                               {"username": username, "password": PASSWORD})[1]["token"]

    def call(self, method, path, body=None, key=None):
        """(status, JSON answer) of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if key:
            headers["Idempotency-Key"] = key
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        resp = conn.getresponse()
        answer = json.loads(resp.read() or b"null")
        conn.close()
        return resp.status, answer


def test_a_restore_with_another_pcs_key_reaches_every_server_process(app, database_url, tmp_path):
    """A new PC (its own key) runs two server processes on one database. One restores the old
    PC's backup with the old key; money then moved through the other process is sealed with the
    old key too, so the whole ledger verifies; without the hand-over it would not."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=50000, bonus=0)
    old_key = app.config["LEDGER_KEY"]
    made = run(app, lambda: backups.create(Path(app.config["BACKUP_DIR"]), "manual", "店", None))
    new_home = tmp_path / "new-pc"
    new_app = create_app({"INSTANCE_PATH": str(new_home), "DATABASE_URL": database_url,
                          "TESTING": True})
    assert new_app.config["LEDGER_KEY"] != old_key
    Path(new_app.config["BACKUP_DIR"]).mkdir(parents=True)
    shutil.copy(Path(app.config["BACKUP_DIR"]) / made["name"], new_app.config["BACKUP_DIR"])

    env = {"CRM_HOME": str(new_home), "CRM_DATABASE_URL": database_url,
           "CRM_BCRYPT_ROUNDS": "4", "CRM_SHOP_NAME": "店", "CRM_SCHEDULER": "0"}
    ports = [free_port(), free_port()]
    servers = [spawn(env, port) for port in ports]
    try:
        first = Api(ports[0], "boss")
        status, answer = first.call("POST", f"/api/v1/backups/{made['name']}/restore",
                                    {"confirm": "店", "recovery_key": old_key})
        assert status == 200 and answer["ledger_ok"], answer
        second = Api(ports[1], "ann")  # a restore ends every login
        for amount in ("12.34", "0.66"):
            status, answer = second.call("POST", f"/api/v1/cards/{card_id}/consume",
                                         {"amount": amount}, key=uuid.uuid4().hex)
            assert status == 201, answer
        assert answer["balance"] == "487.00"
        for api in (Api(ports[0], "boss"), Api(ports[1], "boss")):
            status, report = api.call("GET", "/api/v1/ledger/verify")
            assert status == 200 and report["ok"] and report["problems"] == [], report
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)


@pytest.mark.backends("mysql")  # several server processes run on MySQL/MariaDB only
def test_a_restore_hold_refuses_money_in_every_server_process(app, database_url):
    """Two server processes of one instance: while a restore holds (taken here, as the restoring
    process would), a charge through either is refused at once (503 restore_in_progress) and
    moves nothing; once released, both take money again."""
    from crm import clock
    from crm.services import hold

    clock.set_clock(None)  # the server processes run on the real clock: the lease must too
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    env = {"CRM_HOME": app.instance_path, "CRM_DATABASE_URL": database_url,
           "CRM_BCRYPT_ROUNDS": "4", "CRM_SCHEDULER": "0"}
    ports = [free_port(), free_port()]
    servers = [spawn(env, port) for port in ports]
    try:
        apis = [Api(port, "ann") for port in ports]
        taken = hold.Hold(app.extensions["crm_db"])
        run(app, taken.take)
        for api in apis:
            status, answer = api.call("POST", f"/api/v1/cards/{card_id}/consume",
                                      {"amount": "1.00"}, key=uuid.uuid4().hex)
            assert status == 503 and answer["error"]["code"] == "restore_in_progress", answer
        assert shop.card(card_id).money == 10000

        def release():
            with app.extensions["crm_db"].atomic():
                taken.release()

        run(app, release)
        for api in apis:
            status, answer = api.call("POST", f"/api/v1/cards/{card_id}/consume",
                                      {"amount": "1.00"}, key=uuid.uuid4().hex)
            assert status == 201, answer
        assert shop.card(card_id).money == 9800
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)


def test_a_restore_whose_key_cannot_be_written_changes_nothing(app, tmp_path, monkeypatch):
    """The key is written inside the restore's transaction: when the config file cannot take
    it, the restore is refused with a clear message, the data and the key in force stay."""
    from crm import config as crm_config
    from crm.errors import CrmError
    from crm.services import ledger

    shop = make_shop(app)
    card_id = shop.open_card(amount=50000, bonus=0)
    folder = Path(app.config["BACKUP_DIR"])
    made = run(app, lambda: backups.create(folder, "manual", "店", None))
    spent = shop.open_card(amount=700, bonus=0)  # after the backup: a restore would drop it
    shop_key = ledger.current_key()
    ledger.adopt_key(b"this-pc-has-a-key-of-its-own-0123")  # a new PC, in this test's terms
    before = shop.counts()

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(crm_config, "set_value", refuse)
    try:
        run(app, lambda: backups.restore(folder, made["name"], shop_name="店", key=shop_key))
    except CrmError as error:
        assert error.code == "config_not_writable" and "配置文件" in error.message
        assert error.status == 409
    else:
        raise AssertionError("the restore must be refused")
    assert shop.counts() == before and spent in [c[0] for c in before[2]]
    assert ledger.current_key() == b"this-pc-has-a-key-of-its-own-0123"
    assert shop.card(card_id).money == 50000
    assert shop.do(lambda: ledger.verify(key=shop_key)).ok


def _children(pid):
    """The ids of a process's child processes (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _environ(pid):
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _answers(port, count=10):
    """True when `count` requests in a row are answered within 5 s each."""
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        if conn.getresponse().status != 200:
            return False
        conn.close()
    return True


@pytest.mark.backends("mysql")
def test_two_server_processes_share_the_port(app, database_url, tmp_path):
    """WORKERS=2 on MariaDB: a small supervisor listens once, two processes serve it — each alone
    answers while the other is frozen —, one setup code for both, only the first schedules,
    a killed one comes back, and both end when the supervisor is killed."""
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "CRM_HOME": str(home), "CRM_DATABASE_URL": database_url,
           "CRM_WORKERS": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("CRM_SETUP_CODE", None)
    supervisor = subprocess.Popen([sys.executable, str(ROOT / "crm.py"), "--no-browser", "--port",
                                   str(port), "--host", "127.0.0.1"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until_running(port)
        deadline = time.monotonic() + 20
        while len(_children(supervisor.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        first, second = _children(supervisor.pid)
        for frozen in (first, second):
            os.kill(frozen, signal.SIGSTOP)
            try:
                assert _answers(port), "the other process must serve alone"
            finally:
                os.kill(frozen, signal.SIGCONT)
        # The supervisor reads the settings only: no Flask, no database layer (~23 MB, not 45).
        peak = Path(f"/proc/{supervisor.pid}/status").read_text().split("VmHWM:")[1].split()[0]
        assert int(peak) < 32 * 1024
        codes = {_environ(pid)["CRM_SETUP_CODE"] for pid in (first, second)}
        assert len(codes) == 1
        logs = home / "logs"
        assert "nightly backup scheduled" in (logs / "crm.log").read_text(encoding="utf-8")
        assert "nightly backup scheduled" not in (logs / "crm-2.log").read_text(encoding="utf-8")

        os.kill(second, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now_serving = _children(supervisor.pid)
            if len(now_serving) == 2 and second not in now_serving:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed server process did not come back")
        assert _answers(port)
        assert "server 1 died (signal 9)" in (logs / "supervisor.log").read_text(encoding="utf-8")

        serving = _children(supervisor.pid)
        supervisor.kill()
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in serving):
            assert time.monotonic() < deadline, "server processes outlived their supervisor"
            time.sleep(0.1)
        assert not running_instance(port)
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT)
            supervisor.wait(timeout=20)
    out = supervisor.stdout.read()
    assert out.count("初始化码") == 1 and codes.pop() in out
    assert out.count("客户关系管理系统已启动") == 1


def _state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_how_many_server_processes(app, backend):
    """SQLite: always one (one writer at a time); MySQL: WORKERS, or one per core up to 2."""
    from crm.launcher import worker_count

    per_core = max(1, min(os.cpu_count() or 1, 2))
    expected = {"sqlite": (1, 1, 1), "mysql": (per_core, 3, 1)}[backend]
    assert tuple(worker_count({"DATABASE_URL": app.config["DATABASE_URL"], "WORKERS": n})
                 for n in (0, 3, 1)) == expected


def test_a_server_process_starts_without_the_file_libraries(tmp_path):
    """openpyxl and fpdf2 (about 40 MB per server process) are imported when a file is made,
    not when the app starts and serves pages."""
    code = ("import sys\nfrom crm import create_app\n"
            f"app = create_app({{'INSTANCE_PATH': {str(tmp_path)!r}, 'TESTING': True}})\n"
            "app.test_client().get('/login')\n"
            "print(sorted(m for m in ('openpyxl', 'fpdf') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.backends("mysql")
def test_a_backup_while_another_process_backs_up_is_refused_at_once(app, database_url):
    """Another server process (here: another session) holds the maintenance lock: a backup is
    refused within seconds with backup_busy, not after a minute; once it is free, it works."""
    from crm import db as crm_db
    from crm.errors import Conflict

    shop = make_shop(app)
    folder = Path(app.config["BACKUP_DIR"])
    other = crm_db.database_from_url(database_url)
    with other.connection_context():
        assert other.execute_sql("SELECT GET_LOCK('crm_maintenance', 0)").fetchone()[0] == 1
        started = time.monotonic()
        with pytest.raises(Conflict) as refused:
            shop.do(lambda: backups.create(folder, "manual", "店", None))
        assert refused.value.code == "backup_busy" and "正在进行" in refused.value.message
        assert time.monotonic() - started < 5
        assert list(folder.glob("*.zip")) == []
        other.execute_sql("SELECT RELEASE_LOCK('crm_maintenance')")
    crm_db.close_all(other)
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    assert (folder / made["name"]).exists()
