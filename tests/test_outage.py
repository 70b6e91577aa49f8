"""MariaDB unreachable: /healthz answers 503 and pages show a clear Chinese notice instead of a
500; when the database is back, the next request works without restarting the app.

The database is cut off by a TCP relay between the app and MariaDB that the test stops and
starts: to the app that is exactly a database server that went away and came back, and the
shared test server keeps serving the other tests."""
import socket
import threading

import pytest

from crm import create_app
from crm import db as crm_db
from tests.conftest import PASSWORD, AuthActions
from tests.ledger_helpers import make_shop


class Relay:
    """A TCP relay on a loopback port to MariaDB that can be cut and restored."""

    def __init__(self, target_port=3306):
        self.target_port = target_port
        self.port = None
        self.listener = None
        self.sockets = []
        self.lock = threading.Lock()

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port or 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        """Cut: refuse new connections and drop the open ones."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: port closed
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.sockets = []


@pytest.mark.backends("mysql")
def test_database_outage_gives_503_and_recovers(app, database_url, tmp_path):
    """Stop → 503 on /healthz, Chinese notice on pages (web) and JSON (API); start → works."""
    make_shop(app)
    relay = Relay()
    relay.start()
    url = database_url.replace("127.0.0.1:3306", f"127.0.0.1:{relay.port}")
    assert url != database_url
    cut_app = create_app({"INSTANCE_PATH": app.instance_path, "DATABASE_URL": url,
                          "TESTING": True, "PROPAGATE_EXCEPTIONS": False})
    client = cut_app.test_client()
    try:
        assert client.get("/healthz").status_code == 200
        AuthActions(client).login("ann", PASSWORD)
        assert client.get("/customers").status_code == 200
        relay.stop()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["status"] == "database_unavailable"
        page = client.get("/customers")
        assert page.status_code == 503
        assert "数据库暂时无法连接" in page.get_data(as_text=True)
        assert "Traceback" not in page.get_data(as_text=True)
        api = client.get("/api/v1/me", headers={"Authorization": "Bearer x"})
        assert api.status_code == 503
        assert api.get_json()["error"]["code"] == "database_unavailable"
        relay.start()  # the same port again: the database is back
        assert client.get("/healthz").status_code == 200
        assert client.get("/customers").status_code == 200
    finally:
        relay.stop()
        crm_db.close_all(cut_app.extensions["crm_db"])
        crm_db.db.initialize(app.extensions["crm_db"])


@pytest.mark.parametrize("error", [(1213, "Deadlock found when trying to get lock"),
                                   (1205, "Lock wait timeout exceeded"),
                                   ("database is locked",)])
def test_a_busy_database_is_not_called_unreachable(app, client, api_token, error, monkeypatch):
    """A charge picked as MySQL's deadlock victim (or kept waiting past the lock timeout, or
    SQLite's lock held past busy_timeout) was answered "数据库暂时无法连接" — wrong, and it sent
    the owner looking at cables. It is "系统繁忙 … 本次操作未完成" (503 database_busy), nothing is
    booked, and the same request again goes through."""
    from peewee import OperationalError

    from crm.db import db
    from tests.ledger_helpers import key

    shop = make_shop(app)
    card_id = shop.open_card(amount=5000, bonus=0)
    headers = {**api_token("cashier"), "Idempotency-Key": key()}
    real, fired = db.execute_sql, []

    def execute_sql(sql, params=None, *args, **kwargs):
        if "t_card_record" in sql and sql.startswith("INSERT") and not fired:
            fired.append(sql)
            raise OperationalError(*error)
        return real(sql, params, *args, **kwargs)

    monkeypatch.setattr(db.obj, "execute_sql", execute_sql)
    answer = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "10.00"},
                         headers=headers)
    assert fired and answer.status_code == 503, answer.get_json()
    assert answer.get_json()["error"] == {
        "code": "database_busy", "message": "系统繁忙：数据正被其他操作占用，本次操作未完成，请稍后重试"}
    assert shop.card(card_id).money == 5000
    again = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "10.00"},
                        headers=headers)
    assert again.status_code == 201 and again.get_json()["balance"] == "40.00"
    assert shop.card(card_id).money == 4000
