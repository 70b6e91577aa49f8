"""Security baseline checks not covered elsewhere: nothing secret reaches the log, and an
operator holding real ids of admin objects still cannot read or change them through the API."""
import logging

import pytest

from crm.models import AuthToken, User
from tests.conftest import PASSWORD, AuthActions
from tests.ledger_helpers import make_shop, run


@pytest.mark.backends("sqlite")
def test_no_secret_in_the_log(app, client, make_user, caplog):
    """Passwords, tokens and the app's keys never appear in what the app logs, through logins
    (good and bad, web and API), token use, password changes and a crash."""
    caplog.set_level(logging.DEBUG if app.config.get("LOG_LEVEL") == "DEBUG" else logging.INFO)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    make_user("boss", role="admin")
    make_user("ann")
    secrets_used = [PASSWORD, "Wrong-pass-123", "New-secret-pass-456", "Reset-pass-789",
                    app.config["SECRET_KEY"], app.config["LEDGER_KEY"]]

    @app.route("/boom-with-secret", methods=["POST"])
    def boom():
        raise RuntimeError("unexpected")

    auth = AuthActions(client)
    auth.login("boss", "Wrong-pass-123")
    auth.login("boss")
    token = client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD}).get_json()
    secrets_used.append(token["token"])
    headers = {"Authorization": f"Bearer {token['token']}"}
    client.post("/api/v1/login", json={"username": "ann", "password": "Wrong-pass-123"})
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.post("/api/v1/me/password", headers=headers,
                       json={"old_password": PASSWORD,
                             "password": "New-secret-pass-456"}).status_code == 200
    admin_token = client.post("/api/v1/login", json={"username": "boss",
                                                     "password": PASSWORD}).get_json()["token"]
    secrets_used.append(admin_token)
    ann_id = run(app, lambda: User.get(User.username == "ann").id)
    assert client.post(f"/api/v1/users/{ann_id}/password",
                       headers={"Authorization": f"Bearer {admin_token}"},
                       json={"password": "Reset-pass-789"}).status_code == 200
    assert client.post("/boom-with-secret", data={"password": PASSWORD}).status_code in (400, 500)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for secret in secrets_used:
        assert secret not in logged


def test_operator_cannot_reach_admin_objects_by_id(app, client):
    """With the real ids of the admin, the admin's login and the users, an operator's token gets
    403 on every admin operation, and nothing about the admin changes."""
    shop = make_shop(app)
    operator = {"Authorization": "Bearer " + client.post(
        "/api/v1/login", json={"username": "ann", "password": PASSWORD}).get_json()["token"]}
    client.post("/api/v1/login", json={"username": "boss", "password": PASSWORD})
    admin_id = shop.admin.user.id
    admin_token_id = run(app, lambda: AuthToken.get(AuthToken.user == admin_id).id)

    def admin_state():
        user = User.get_by_id(admin_id)
        token = AuthToken.get_by_id(admin_token_id)
        return user.password_hash, user.role, user.active, user.display_name, token.revoked_at

    before = run(app, admin_state)
    attempts = [
        ("GET", "/api/v1/users", None), ("GET", "/api/v1/tokens", None),
        ("GET", "/api/v1/audit?username=boss", None), ("GET", "/api/v1/backups", None),
        ("PATCH", f"/api/v1/users/{admin_id}", {"active": False}),
        ("PATCH", f"/api/v1/users/{shop.operator.user.id}", {"role": "admin"}),
        ("POST", f"/api/v1/users/{admin_id}/password", {"password": "Taken-over-123"}),
        ("DELETE", f"/api/v1/tokens/{admin_token_id}", None),
        ("POST", "/api/v1/users", {"username": "mole", "password": "Taken-over-123",
                                   "role": "admin"}),
    ]
    for method, url, body in attempts:
        resp = client.open(url, method=method, json=body, headers=operator)
        assert resp.status_code == 403, (method, url, resp.status_code)
        assert resp.get_json()["error"]["code"] == "forbidden"
    assert run(app, admin_state) == before
    assert run(app, lambda: User.select().where(User.username == "mole").count()) == 0
    me = client.get("/api/v1/me", headers=operator).get_json()
    assert me["role"] == "operator"
