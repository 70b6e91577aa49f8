"""One rule per text column on both databases (issue 16.3, design rule 11): byte-wise text for
keys and card numbers, one stored form for user names (NFKC, case-folded) and type names (NFKC);
an upgrade that would merge names stops and names them; a SQLite backup holding case variants
restores into MariaDB."""
from pathlib import Path

import pytest
from playhouse.migrations import Runner

from crm import create_app
from crm import db as crm_db
from crm.errors import CrmError
from crm.models import AuditLog, Card, CustomerType, User
from crm.services import SYSTEM, backups, cards, customer_types, ledger
from crm.services import users as user_service
from tests.conftest import PASSWORD
from tests.ledger_helpers import make_shop, run


def _login(client, username, password=PASSWORD):
    return client.post("/api/v1/login", json={"username": username, "password": password})


@pytest.mark.parametrize("typed, logs_in", [
    ("boss", True), ("BOSS", True), (" Boss ", True), ("ＢＯＳＳ", True), ("ｂｏｓｓ", True),
    ("bóss", False), ("boss\u200b", False), ("\u200bboss", False), ("bos", False),
    ("boss\u00ad", False), ("b\u0307oss", False),
])
def test_user_names_bóss_and_boss_zwsp_do_not_log_in_as_boss(client, make_user, typed, logs_in):
    """MariaDB's old collation let `bóss`, `ｂｏｓｓ` and `boss\\u200b` log in as `boss`; now one
    rule on both: the NFKC, case-folded form must be the stored name exactly."""
    make_user("Boss", role="admin")
    resp = _login(client, typed)
    assert resp.status_code == (200 if logs_in else 401), (typed, resp.get_json())


def test_user_names_are_stored_and_unique_in_one_form(app, make_user, client):
    """`Boss` is stored as `boss` (so shown the same on both databases); `ＢＯＳＳ` is then taken;
    `bóss` is another name; an invisible character is refused."""
    user = make_user("Boss")
    assert user.username == "boss"
    for taken in ("boss", "ＢＯＳＳ", "BOSS"):
        with pytest.raises(CrmError) as error:
            make_user(taken)
        assert error.value.code == "username_taken" and error.value.status == 409
    assert make_user("bóss").username == "bóss"
    for hostile in ("boss\u200b", "bo\u202ess", "boss\u00ad"):
        with pytest.raises(CrmError) as error:
            make_user(hostile)
        assert error.value.code == "invalid_username"
    assert run(app, lambda: sorted(u.username for u in User.select())) == ["boss", "bóss"]


def test_card_numbers_differing_in_case_are_two_cards(app):
    """MariaDB called `CASE-CARD-1` and `case-card-1` one card (duplicate key); now binary on
    both: two cards, each found by its own number."""
    shop = make_shop(app)
    upper = shop.open_card(amount=1000, card_no="CASE-CARD-1")
    lower = shop.open_card(amount=2000, card_no="case-card-1")
    assert upper != lower
    found = run(app, lambda: {c.card_no: c.money for c in
                              Card.select().where(Card.card_no == "case-card-1")})
    assert found == {"case-card-1": 2000}
    with pytest.raises(CrmError) as error:
        shop.open_card(card_no="CASE-CARD-1")
    assert error.value.status == 409


def test_type_names_compare_by_their_nfkc_form(app):
    """`ＶＩＰ` is `VIP` (taken); `vip` is another type, as SQLite always said."""
    def make(name):
        return customer_types.create_type(SYSTEM, {"name": name})

    assert run(app, lambda: make("VIP")).name == "VIP"
    with pytest.raises(CrmError) as error:
        run(app, lambda: make("ＶＩＰ"))
    assert error.value.code == "duplicate_type_name"
    assert run(app, lambda: make("vip")).name == "vip"
    assert run(app, lambda: sorted(t.name for t in CustomerType.select())) == ["VIP", "vip"]


def test_idempotency_keys_differing_in_case_are_two_requests(client, app):
    """MariaDB replayed key `abc` for `ABC` (the same request answered twice from one charge);
    now two keys, two charges, on both databases."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000)
    headers = {"Authorization": "Bearer " + _login(client, "ann").get_json()["token"]}
    first = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "1.00"},
                        headers={**headers, "Idempotency-Key": "key-abcdef"})
    second = client.post(f"/api/v1/cards/{card_id}/consume", json={"amount": "1.00"},
                         headers={**headers, "Idempotency-Key": "KEY-ABCDEF"})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["record_id"] != second.get_json()["record_id"]
    assert second.get_json()["balance"] == "98.00"


@pytest.mark.backends("mysql")
def test_every_text_column_is_binary_on_mariadb(app, backend):
    """After the migrations no MariaDB column or table is left on a case-blind collation."""
    database = app.extensions["crm_db"]
    with database.connection_context():
        columns = database.execute_sql(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND collation_name IS NOT NULL").fetchall()
        tables = database.execute_sql(
            "SELECT table_name, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE()").fetchall()
        binary = crm_db.binary_collation(database)
    assert binary in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")
    assert columns and all(c[2] == binary for c in columns), \
        [c for c in columns if c[2] != binary]
    assert all(t[1] == binary for t in tables), tables


@pytest.mark.xdist_group("mysql")  # both variants reach MariaDB (the [sqlite] one as its source)
def test_a_sqlite_backup_with_case_variants_restores_into_mariadb(app, backend, scratch, tmp_path,
                                                                  request):
    """The documented SQLite → MySQL move (and back): a shop on the other database holding
    `CASE-CARD-1` and `case-card-1`, types `VIP` and `vip` and keys differing in case restores
    into this one (into MariaDB it was a 500 with a duplicate key), and its ledger verifies."""
    other = "sqlite" if backend == "mysql" else "mysql"
    if other == "mysql":
        request.getfixturevalue("mysql_server")  # as every MariaDB test: in CI, never a skip
    home = tmp_path / f"{other}-shop"
    source = create_app({"TESTING": True, "INSTANCE_PATH": str(home), "BCRYPT_ROUNDS": 4,
                         "DATABASE_URL": scratch.url(other), "OPEN_BROWSER": False})
    crm_db.migrate(source.extensions["crm_db"])
    shop = make_shop(source)
    shop.open_card(amount=1000, card_no="CASE-CARD-1")
    shop.open_card(amount=2000, card_no="case-card-1")
    run(source, lambda: [customer_types.create_type(SYSTEM, {"name": n}) for n in ("VIP", "vip")])
    card = shop.open_card(amount=5000)
    for request_key in ("move-key-1", "MOVE-KEY-1"):
        run(source, lambda k=request_key: cards.consume(shop.operator, card, k, 100))
    folder = Path(source.config["BACKUP_DIR"])
    made = run(source, lambda: backups.create(folder, "manual", "店", None))
    old_key = source.config["LEDGER_KEY"]
    crm_db.close_all(source.extensions["crm_db"])
    crm_db.db.initialize(app.extensions["crm_db"])  # the proxy follows the last app made
    ledger.configure(app.config)

    target = Path(app.config["BACKUP_DIR"])
    target.mkdir(parents=True, exist_ok=True)
    (target / made["name"]).write_bytes((folder / made["name"]).read_bytes())
    try:
        result = run(app, lambda: backups.restore(target, made["name"], shop_name="店",
                                                  key=old_key.encode()))
        assert result["ledger_ok"] and result["entries_checked"] == 5
        assert run(app, lambda: sorted((c.card_no, c.money) for c in Card.select()
                                       if c.card_no.lower() == "case-card-1")) == [
            ("CASE-CARD-1", 1000), ("case-card-1", 2000)]
        assert run(app, lambda: Card.get_by_id(card).money) == 4800
        assert run(app, lambda: sorted(t.name for t in CustomerType.select())) == ["VIP", "vip"]
    finally:
        ledger.configure(app.config)


def test_trailing_spaces_make_another_value_on_both_databases(app):
    """utf8mb4_bin pads: MariaDB called 'pad' and 'pad ' equal (a duplicate key) while SQLite
    did not. The binary collation without padding makes them two values on both."""
    database = app.extensions["crm_db"]
    param = database.param
    with database.connection_context():
        for name in ("pad", "pad "):
            database.execute_sql(f"INSERT INTO t_customer_type (name, description, discount, "
                                 f"created_at, updated_at) VALUES ({param}, '', NULL, "
                                 "'2026-11-27 09:30:00', '2026-11-27 09:30:00')", (name,))
    assert run(app, lambda: CustomerType.select().where(CustomerType.name == "pad").count()) == 1
    assert run(app, lambda: CustomerType.select().where(CustomerType.name.startswith("pad"))
               .count()) == 2


# --- the upgrade of a shop whose names the rule would merge -------------------------------

def _database_at_0010(url):
    """A database migrated up to 0010 (the schema before this rule), as a shop has it."""
    database = crm_db.database_from_url(url)
    with database.connection_context():
        Runner(database, str(crm_db.MIGRATIONS_DIR), table_name=crm_db.SCHEMA_TABLE).up(
            target="0010_card_owner_seal")
    return database


def _add_user(database, username, display_name=""):
    param = database.param
    with database.connection_context():
        database.execute_sql(
            "INSERT INTO t_user (username, display_name, password_hash, role, active, permissions,"
            f" created_at, updated_at) VALUES ({', '.join([param] * 8)})",
            (username, display_name, user_service.hash_password(PASSWORD), "admin", True, "",
             "2026-11-01 10:00:00", "2026-11-01 10:00:00"))


def _usernames(database):
    with database.connection_context():
        return sorted((r[0], r[1]) for r in database.execute_sql(
            "SELECT username, display_name FROM t_user"))


def test_an_upgrade_that_would_merge_boss_and_Boss_stops_and_names_them(scratch, tmp_path):
    """SQLite let `Boss` and `boss` be two users. The upgrade stops with a Chinese list of them
    and the rename command, changing nothing; after `crm rename-user` it goes through."""
    url = scratch.url("sqlite")
    database = _database_at_0010(url)
    _add_user(database, "boss")
    _add_user(database, "Boss", "老板")
    _add_user(database, "ＡＮＮ")
    before = _usernames(database)
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "home"),
                      "DATABASE_URL": url, "OPEN_BROWSER": False})
    cli = app.test_cli_runner()
    stopped = cli.invoke(args=["migrate"])
    assert stopped.exit_code == 1, stopped.output
    assert "升级已停止" in stopped.output and "“boss”、“Boss”" in stopped.output \
        and "crm rename-user" in stopped.output, stopped.output
    assert _usernames(database) == before
    assert "0011_one_text_rule" not in crm_db.schema_version(database)

    renamed = cli.invoke(args=["rename-user", "Boss", "laoban"])
    assert renamed.exit_code == 0 and "laoban" in renamed.output, renamed.output
    wrong = cli.invoke(args=["rename-user", "nobody", "x1"])
    assert wrong.exit_code == 1 and "没有用户名" in wrong.output
    done = cli.invoke(args=["migrate"])
    assert done.exit_code == 0 and "0011_one_text_rule" in done.output, done.output
    # ＡＮＮ is now ann, keeping its old spelling as the name shown; the renames are audited.
    assert _usernames(database) == [("ann", "ＡＮＮ"), ("boss", ""), ("laoban", "老板")]
    with database.connection_context():
        actions = [r[0] for r in database.execute_sql("SELECT action FROM t_audit_log")]
    assert actions.count("user.rename") == 2
    client = app.test_client()
    assert _login(client, "ANN").status_code == 200
    crm_db.close_all(database)


@pytest.mark.backends("mysql")
def test_the_upgrade_on_mariadb_makes_text_binary_and_keeps_names(backend, scratch, tmp_path):
    """MariaDB at 0010 (case-blind text, a user `Boss`): the upgrade stores `boss`, converts
    every table to binary text, and a second run changes nothing."""
    url = scratch.url("mysql")
    database = _database_at_0010(url)
    _add_user(database, "Boss")
    applied = crm_db.migrate(database)
    assert applied[0] == "0011_one_text_rule"
    assert _usernames(database) == [("boss", "Boss")]
    with database.connection_context():
        left = database.execute_sql(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND collation_name <> %s", (crm_db.binary_collation(database),)).fetchone()[0]
    assert left == 0
    assert crm_db.migrate(database) == []
    crm_db.close_all(database)


def test_an_old_backup_holding_names_that_would_merge_is_refused_before_anything_changes(
        app, backend, scratch, tmp_path):
    """A backup made before this rule holding users `boss` and `Boss` is refused, on both
    databases, naming them; the shop's data stays as it was."""
    url = scratch.url("sqlite")
    database = _database_at_0010(url)
    _add_user(database, "boss")
    _add_user(database, "Boss")
    crm_db.db.initialize(database)
    key = app.config["LEDGER_KEY"]
    folder = Path(app.config["BACKUP_DIR"])
    with database.connection_context():
        made = backups.create(folder, "manual", "店", None)
    crm_db.db.initialize(app.extensions["crm_db"])
    shop = make_shop(app)
    shop.open_card(amount=1234)
    before = shop.counts(), run(app, lambda: sorted(u.username for u in User.select()))
    with pytest.raises(CrmError) as refused:
        run(app, lambda: backups.restore(folder, made["name"], shop_name="店"))
    assert "“boss”、“Boss”" in refused.value.message and "crm rename-user" in refused.value.message
    assert (shop.counts(), run(app, lambda: sorted(u.username for u in User.select()))) == before
    assert key == app.config["LEDGER_KEY"]
    assert "重名自动改名" in refused.value.message
    # Asked to, the restore keeps the first of each pair and renames the other, audited.
    result = run(app, lambda: backups.restore(folder, made["name"], actor=SYSTEM, shop_name="店",
                                              accept_unsigned=True, rename_clashes=True))
    assert result["ledger_ok"] and result["renamed"] == [
        {"what": "用户名", "old": "Boss", "new": "Boss-2"}]
    assert run(app, lambda: sorted(u.username for u in User.select())) == ["boss", "boss-2"]
    detail = run(app, lambda: __import__("json").loads(AuditLog.get(
        AuditLog.action == "backup.restore").detail))
    assert detail["renamed"] == [["用户名", "Boss", "Boss-2"]]
    ledger.configure(app.config)
    crm_db.close_all(database)
