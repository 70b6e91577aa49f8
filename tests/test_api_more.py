"""The API calls of the web UI's remaining functions: the Excel exports (customers, import
template, daily closing, chart data), the receipt (JSON and PDF), monitoring, and backup files
(download and upload). Each answers what the page answers, through the same service, with the
same permission."""
import datetime
import io
import zipfile
from pathlib import Path

import pytest

from crm.services import cards, customer_import, customers
from crm.services import users as user_service
from tests.conftest import PASSWORD, AuthActions, csrf_token, pdf_text
from tests.ledger_helpers import key, make_shop
from tests.xlsx_helpers import report_rows

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _token(client, username):
    resp = client.post("/api/v1/login", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    return {"Authorization": f"Bearer {resp.get_json()['token']}"}


def _rows(data):
    """The header row and the rows below it of an exported report."""
    return report_rows(data)


def _switch_off(shop, permission):
    """The admin switches one permission off for the operator."""
    shop.do(lambda: user_service.update_user(shop.admin, shop.operator.user.id,
                                             permissions={permission: False}))


def _error(resp, status, code=None):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    error = resp.get_json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


@pytest.fixture
def shop(app):
    """ann (operator, 安安), boss (admin), 张三 of a 9 折 type."""
    return make_shop(app, discount=90)


@pytest.fixture
def ann(client, shop):
    return _token(client, "ann")


@pytest.fixture
def boss(client, shop):
    return _token(client, "boss")


# --- customers: the Excel list and the import template -------------------------------------

def test_customer_export_takes_the_list_filters(app, client, shop, ann):
    """GET /customers/export.xlsx: the customers under q / archived, all of them, the same rows
    the page's export has; page (a list parameter) is refused; without "export" 403."""
    def more():
        lisi = customers.create_customer(shop.admin, {"name": "李四", "phone": "13900139000"})
        customers.create_customer(shop.admin, {"name": "王五", "phone": "13700137000"})
        customers.set_archived(shop.admin, lisi.id, True)

    shop.do(more)
    resp = client.get("/api/v1/customers/export.xlsx?q=13800138000", headers=ann)
    assert resp.status_code == 200 and resp.mimetype == XLSX
    rows = _rows(resp.data)
    assert rows[0] == customers.EXPORT_HEADERS
    assert [(r[1], r[3], r[8], r[13]) for r in rows[1:]] == [("张三", "13800138000", "VIP客户", "正常")]
    archived = _rows(client.get("/api/v1/customers/export.xlsx?archived=1", headers=ann).data)
    assert [r[1] for r in archived[1:]] == ["李四"]
    every = _rows(client.get("/api/v1/customers/export.xlsx?archived=all&sort=name",
                             headers=ann).data)
    assert sorted(r[1] for r in every[1:]) == ["张三", "李四", "王五"]
    AuthActions(client).login("ann")
    assert _rows(client.get("/customers/export.xlsx?archived=all").data) == every
    _error(client.get("/api/v1/customers/export.xlsx?page=2", headers=ann), 422,
           "unknown_parameter")
    _error(client.get("/api/v1/customers/export.xlsx?archived=2", headers=ann), 422)
    _switch_off(shop, "export")
    _error(client.get("/api/v1/customers/export.xlsx", headers=ann), 403, "forbidden")


def test_import_template_is_the_pages_template(client, shop, ann):
    """GET /customers/import/template.xlsx: the template's columns; without edit_customers 403."""
    resp = client.get("/api/v1/customers/import/template.xlsx", headers=ann)
    assert resp.status_code == 200 and resp.mimetype == XLSX
    assert _rows(resp.data)[0][:len(customer_import.COLUMNS)] == customer_import.COLUMNS
    _switch_off(shop, "edit_customers")
    _error(client.get("/api/v1/customers/import/template.xlsx", headers=ann), 403)


# --- the receipt ----------------------------------------------------------------------------

def test_receipt_json_and_pdf(app, client, shop, ann):
    """GET /records/{id}/receipt: what the receipt shows (member discount applied); the PDF has
    the same amounts; an entry that is not a consumption, or none, is 404."""
    card_id = shop.open_card(amount=50000, bonus=0)
    result = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 10000, remark="烫发"))
    record_id = result.record_id
    resp = client.get(f"/api/v1/records/{record_id}/receipt", headers=ann)
    assert resp.status_code == 200
    body = resp.get_json()
    card = shop.card(card_id)
    assert body["record_id"] == record_id and body["card_id"] == card_id
    assert body["card_no"] == card.card_no and body["customer_name"] == "张三"
    assert body["customer_id"] == shop.customer_id and body["shop_name"] == app.config["SHOP_NAME"]
    assert (body["original_amount"], body["discount"], body["amount"], body["balance"]) == \
        ("100.00", 90, "90.00", "410.00")
    assert body["operator"] == "安安" and body["remark"] == "烫发" and body["time"]
    pdf = client.get(f"/api/v1/records/{record_id}/receipt.pdf", headers=ann)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    text = pdf_text(pdf.data)
    for expected in ("消费凭证", "张三", card.card_no, "¥100.00", "90%", "¥90.00", "¥410.00",
                     "烫发", "安安", str(record_id)):
        assert expected in text, expected
    opening = shop.do(lambda: cards.records(card_id))[-1]  # the first recharge: no receipt
    assert opening.business_type != "consume"
    for path in (f"/api/v1/records/{opening.id}/receipt", "/api/v1/records/999999/receipt",
                 "/api/v1/records/999999/receipt.pdf"):
        _error(client.get(path, headers=ann), 404, "record_not_found")
    _error(client.get(f"/api/v1/records/{record_id}/receipt"), 401)


# --- daily closing and chart data -----------------------------------------------------------

def test_closing_xlsx_matches_the_closing(client, shop, ann):
    """GET /closing.xlsx: the lines and the cash due of GET /closing; needs statistics + export."""
    card_id = shop.open_card(amount=50000, bonus=0)
    shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 20000, bonus=0,
                                   payment_method="wechat"))
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 10000))
    closing = client.get("/api/v1/closing", headers=ann).get_json()
    assert closing["cash"] == "500.00"
    resp = client.get(f"/api/v1/closing.xlsx?day={closing['day']}", headers=ann)
    assert resp.status_code == 200 and resp.mimetype == XLSX
    rows = _rows(resp.data)
    assert rows[0] == ("业务", "支付方式", "笔数", "金额")
    assert ("钱箱应有现金", "现金", None, 500) in rows
    assert ("充值", "微信", 1, 200) in rows and ("消费", None, 1, -90) in rows
    other = shop.admin.user.id  # the admin moved no money: an empty closing, cash 0
    assert ("钱箱应有现金", "现金", None, 0) in _rows(
        client.get(f"/api/v1/closing.xlsx?operator_id={other}", headers=ann).data)
    _error(client.get("/api/v1/closing.xlsx?day=2026-02-30", headers=ann), 422)
    _switch_off(shop, "export")
    _error(client.get("/api/v1/closing.xlsx", headers=ann), 403)
    assert client.get("/api/v1/closing", headers=ann).status_code == 200


@pytest.mark.parametrize("chart,header,expected", [
    ("daily", ("日期", "充值", "消费"),
     lambda today: (datetime.datetime.fromisoformat(today), 500, 90)),  # a real date
    ("by_type", ("客户类型", "消费"), lambda today: ("VIP客户", 90)),
    ("top", ("客户", "电话", "消费"), lambda today: ("张三", "13800138000", 90)),
    ("activity", ("最近到店", "客户数"), lambda today: ("30 天内来过", 1)),
])
def test_chart_xlsx(client, shop, ann, chart, header, expected):
    """GET /stats/{chart}.xlsx: each chart's data for the period as on the dashboard."""
    card_id = shop.open_card(amount=50000, bonus=0)
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 10000))
    today = client.get("/api/v1/closing", headers=ann).get_json()["day"]
    resp = client.get(f"/api/v1/stats/{chart}.xlsx?start={today}&end={today}", headers=ann)
    assert resp.status_code == 200 and resp.mimetype == XLSX
    rows = _rows(resp.data)
    assert rows[0] == header and expected(today) in rows[1:]


def test_chart_xlsx_refusals(client, shop, ann):
    """No such chart 404; a bad period 422; without export (or statistics) 403."""
    _error(client.get("/api/v1/stats/pie.xlsx", headers=ann), 404, "unknown_chart")
    _error(client.get("/api/v1/stats/daily.xlsx?start=2026-02-01&end=2026-01-01",
                      headers=ann), 422)
    _error(client.get("/api/v1/stats/daily.xlsx?preset=year", headers=ann), 422)
    _switch_off(shop, "statistics")
    _error(client.get("/api/v1/stats/daily.xlsx", headers=ann), 403)


# --- monitoring -----------------------------------------------------------------------------

def test_monitor(client, shop, ann, boss, backend):
    """GET /monitor (admin): the monitoring page's facts; a backup then shows as the last one."""
    shop.open_card(amount=12345, bonus=0)
    resp = client.get("/api/v1/monitor", headers=boss)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["database"] == ("SQLite" if backend == "sqlite" else "MySQL / MariaDB")
    assert body["durable"] is True and body["outstanding"] == "123.45"
    assert body["today_entries"] == 1 and body["today_net"] == "123.45"
    assert body["counts"]["t_customer"] == 1 and body["counts"]["t_card"] == 1
    assert body["last_backup"] is None and "还没有任何备份" in body["problems"]
    assert body["last_check"] is None and body["restarts"] == 0
    assert {d["label"] for d in body["disks"]} == {"数据", "备份"}
    assert all(d["free"] > 0 for d in body["disks"])
    made = client.post("/api/v1/backups", headers=boss).get_json()
    assert client.get("/api/v1/ledger/verify", headers=boss).get_json()["ok"]
    body = client.get("/api/v1/monitor", headers=boss).get_json()
    assert body["last_backup"]["name"] == made["name"] and body["last_backup"]["verified"]
    assert body["last_check"]["ok"] is True and body["last_check"]["time"]
    assert body["problems"] == []
    _error(client.get("/api/v1/monitor", headers=ann), 403, "forbidden")
    _error(client.get("/api/v1/monitor"), 401)


# --- backup files ---------------------------------------------------------------------------

def _files(app):
    """Every file under the instance folder (the backups are there), and next to it."""
    root = Path(app.config["INSTANCE_PATH"]).parent
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not p.name.startswith("crm.db"))


def test_download_and_upload_a_backup(app, client, shop, ann, boss):
    """Download gives the file's bytes; uploading them (under any file name) keeps a checked
    copy under a name of its own, which the list then shows; operators get 403 for both."""
    shop.open_card(amount=10000, bonus=0)
    made = client.post("/api/v1/backups", headers=boss).get_json()
    folder = Path(app.config["BACKUP_DIR"])
    resp = client.get(f"/api/v1/backups/{made['name']}/download", headers=boss)
    assert resp.status_code == 200 and resp.mimetype == "application/zip"
    assert resp.data == (folder / made["name"]).read_bytes()
    assert made["name"] in resp.headers["Content-Disposition"]
    _error(client.get(f"/api/v1/backups/{made['name']}/download", headers=ann), 403)
    _error(client.post("/api/v1/backups/upload", headers=ann,
                       data={"file": (io.BytesIO(resp.data), "x.zip")}), 403)
    assert not list(folder.glob("*-upload*"))

    up = client.post("/api/v1/backups/upload", headers=boss,
                     data={"file": (io.BytesIO(resp.data), "../../../evil.zip")})
    assert up.status_code == 201, up.get_json()
    body = up.get_json()
    assert body["name"].startswith("crm-backup-") and body["name"].endswith("-upload.zip")
    assert body["verified"] is True and body["problems"] == []
    assert (folder / body["name"]).read_bytes() == resp.data
    assert not [f for f in _files(app) if "evil" in f]
    listed = client.get("/api/v1/backups", headers=boss).get_json()["items"]
    assert body["name"] in [b["name"] for b in listed]
    again = client.get(f"/api/v1/backups/{body['name']}/download", headers=boss)
    assert again.data == resp.data


def _not_a_backup_zip():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "不是备份")
    return out.getvalue()


@pytest.mark.parametrize("data,filename,status,code", [
    (b"just some text", "backup.zip", 422, "invalid_backup"),
    (b"just some text", "../../config.toml", 422, "invalid_backup"),
    (_not_a_backup_zip(), "../crm-backup-20260101-000000-manual.zip", 422, None),
    (b"PK" + b"\0" * 100, "x.zip", 422, None),
    (b"", "", 422, "missing_file"),
    (b"PK" + b"\0" * (17 * 1024 * 1024), "big.zip", 413, "too_large"),
])
def test_refused_uploads_write_nothing(app, client, shop, boss, data, filename, status, code):
    """Not a zip, a zip that is not a backup, no file, too big (over 16 MB), whatever the file
    name says (a path included): 4xx JSON error, and no file appears anywhere."""
    before = _files(app)
    resp = client.post("/api/v1/backups/upload", headers=boss,
                       data={"file": (io.BytesIO(data), filename)})
    _error(resp, status, code)
    assert _files(app) == before


def test_upload_without_a_file_part(client, shop, boss):
    """No multipart `file` at all: 422 missing_file."""
    _error(client.post("/api/v1/backups/upload", headers=boss, data={"other": "x"}), 422,
           "missing_file")


@pytest.mark.parametrize("name,status", [
    ("..", 422), ("config.toml", 422), ("crm.db", 422), ("..%2F..%2Fconfig.toml", 404),
    ("..%2Finstance%2Fconfig.toml", 404), ("crm-backup-20260101-000000-manual.zip.check.json", 422),
    ("crm-backup-20000101-000000-manual.zip", 404),
])
def test_download_takes_names_never_paths(client, shop, boss, name, status):
    """Only the name of a backup in the folder: anything else is a 4xx JSON error."""
    _error(client.get(f"/api/v1/backups/{name}/download", headers=boss), status)


def test_the_page_upload_shares_the_checks(app, client, shop):
    """The admin page's upload goes through the same service: a non-zip and a missing file are
    refused there too, and nothing is written."""
    AuthActions(client).login("boss")
    token = csrf_token(client, "/admin/backups")
    before = _files(app)
    bad = client.post("/admin/backups/upload",
                      data={"csrf_token": token, "file": (io.BytesIO(b"xx"), "../../a.zip")})
    assert bad.status_code == 422 and "上传的不是备份文件" in bad.get_data(as_text=True)
    none = client.post("/admin/backups/upload", data={"csrf_token": token})
    assert none.status_code == 422 and "请选择备份文件" in none.get_data(as_text=True)
    assert _files(app) == before
