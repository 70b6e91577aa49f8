"""Customers and customer types: web pages and API, validation, search, audit, export."""
import datetime
import json

import pytest
from playhouse.test_utils import count_queries

from crm.models import AuditLog, Customer, CustomerType
from crm.services import SYSTEM, customer_types, customers
from tests.conftest import csrf_token
from tests.xlsx_helpers import report_rows

GOOD = {"name": "张三", "gender": "男", "phone": "13800138000", "address": "朝阳区建国路 1 号",
        "remark": "老客户"}


def _db(app, fn):
    with app.app_context(), app.extensions["crm_db"].connection_context():
        return fn()


def _count(app):
    return _db(app, lambda: Customer.select().count())


def _post_form(client, path, data, form_path=None):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, form_path or path)})


@pytest.fixture
def operator(make_user, auth):
    """An operator, logged in on `client`."""
    make_user("boss", role="admin")
    make_user("ann", display_name="安安")
    auth.login("ann")


@pytest.fixture
def make_customer(app):
    """Create customers through the service."""

    def make(**fields):
        return _db(app, lambda: customers.create_customer(SYSTEM, {**GOOD, **fields}))

    return make


def test_create_customer_through_the_form(app, client, operator):
    """The new-customer form saves, numbers the customer and audits the creation."""
    resp = _post_form(client, "/customers/new", {**GOOD, "phone": "+86 138-0013-8000"})
    assert resp.status_code == 302
    customer = _db(app, lambda: Customer.get())
    assert customer.phone == "13800138000" and customer.customer_no == "000001"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "张三" in page and "000001" in page and "暂无会员卡" in page
    entry = _db(app, lambda: AuditLog.get(AuditLog.action == "customer.create"))
    assert entry.username == "ann" and json.loads(entry.detail)["after"]["phone"] == "13800138000"


@pytest.mark.parametrize("field,value,message", [
    ("name", "", "请填写姓名"),
    ("name", "长" * 200, "姓名最多 50 个字"),
    ("phone", "1380013800a", "电话只能包含数字"),
    ("phone", "12345", "电话号码“12345”不正确"),
    ("phone", "", "请填写电话"),
    ("gender", "阿", "性别只能是"),
    ("type_id", "99999", "所选客户类型不存在"),
    ("type_id", "abc", "客户类型必须是"),
    ("birthday", "2999-01-01", "生日不合理"),
    ("birthday", "31/31/2000", "生日格式不正确"),
    ("address", "路" * 201, "地址最多 200 个字"),
])
def test_bad_customer_input_web(app, client, operator, field, value, message):
    """Each bad value: a Chinese message beside the form, 422, nothing saved."""
    resp = _post_form(client, "/customers/new", {**GOOD, field: value})
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _count(app) == 0


@pytest.mark.parametrize("body,code", [
    ({**GOOD, "name": ""}, "missing_name"),
    ({**GOOD, "phone": "abc"}, "invalid_phone"),
    ({**GOOD, "type_id": 99999}, "invalid_type_id"),
    ({**GOOD, "name": ["x"]}, "invalid_type"),
    ({**GOOD, "type_id": True}, "invalid_type"),
])
def test_bad_customer_input_api(app, client, api_token, body, code):
    """The API answers 422 with the error code and saves nothing."""
    resp = client.post("/api/v1/customers", json=body, headers=api_token("ann"))
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == code
    assert _count(app) == 0


def test_duplicate_phone_names_the_holder(app, client, operator, make_customer):
    """A phone already used is refused, naming the customer who has it; nothing is saved."""
    make_customer(name="李四")
    resp = _post_form(client, "/customers/new", {**GOOD, "name": "王五", "phone": "138 0013 8000"})
    assert resp.status_code == 409
    assert "已被客户“李四”（编号 000001）使用" in resp.get_data(as_text=True)
    assert _count(app) == 1


def test_duplicate_phone_api(app, client, api_token, make_customer):
    """The API says duplicate_phone with 409; an edit onto a taken phone too."""
    make_customer(name="李四")
    other = make_customer(name="王五", phone="13900139000")
    headers = api_token("ann")
    resp = client.post("/api/v1/customers", json=GOOD, headers=headers)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "duplicate_phone"
    assert "李四" in resp.get_json()["error"]["message"]
    resp = client.patch(f"/api/v1/customers/{other.id}", json={"phone": GOOD["phone"]},
                        headers=headers)
    assert resp.status_code == 409
    assert _db(app, lambda: Customer.get_by_id(other.id).phone) == "13900139000"


def test_markup_and_sql_text_are_stored_as_typed_and_shown_escaped(app, client, operator):
    """<script> and SQL text are just text: saved as typed, escaped on every page."""
    name = "<script>alert(1)</script>"
    remark = "Robert'); DROP TABLE t_customer;--"
    resp = _post_form(client, "/customers/new", {**GOOD, "name": name, "remark": remark})
    assert resp.status_code == 302
    customer = _db(app, lambda: Customer.get())
    assert customer.name == name and customer.remark == remark
    for page in (client.get(resp.headers["Location"]), client.get("/customers?q=script")):
        html = page.get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert(1)" not in html


def test_landline_and_odd_phone_formats(app, make_customer):
    """Landlines with area codes and mobiles with +86 and separators are kept as digits."""
    assert make_customer(phone="0571-8888 6666").phone == "057188886666"
    assert make_customer(phone="(+86)139 0013 9000").phone == "13900139000"


def test_search_by_last_four_digits_name_and_number(app, client, operator, make_customer):
    """One box finds by any part of the phone, part of the name, or the customer number."""
    make_customer(name="张三", phone="13800138000")
    make_customer(name="李小四", phone="13912345678")
    make_customer(name="王五", phone="13700001111")
    for q, names in (("5678", ["李小四"]), ("小四", ["李小四"]), ("000003", ["王五"]),
                     ("138001", ["张三"]), ("不存在", []), ("%", []), ("_", [])):
        page = client.get("/customers", query_string={"q": q}).get_data(as_text=True)
        found = [n for n in ("张三", "李小四", "王五") if f">{n}</a>" in page]
        assert found == names, q
        assert f"共 {len(names)} 位客户" in page


def test_live_search_returns_only_the_results(client, operator, make_customer):
    """An htmx request gets the results table alone, not a whole page."""
    make_customer()
    resp = client.get("/customers?q=8000", headers={"HX-Request": "true"})
    html = resp.get_data(as_text=True)
    assert "<html" not in html and "customer-table" in html and ">张三</a>" in html


def test_filters_sort_and_pages(app, client, api_token, make_customer):
    """Type and archived filters, sorting and pages of 20 with the total."""
    headers = api_token("ann")
    vip = _db(app, lambda: customer_types.create_type(SYSTEM, {"name": "VIP客户"}))
    for i in range(25):
        make_customer(name=f"客户{i:02d}", phone=f"1380000{i:04d}", type_id=vip.id if i < 3 else None)
    one = _db(app, lambda: Customer.get(Customer.name == "客户05"))
    _db(app, lambda: customers.set_archived(SYSTEM, one.id, True))

    body = client.get("/api/v1/customers", headers=headers).get_json()
    assert body["total"] == 24 and len(body["items"]) == 20
    assert body["items"][0]["name"] == "客户24"  # newest first
    page2 = client.get("/api/v1/customers?page=2", headers=headers).get_json()
    assert len(page2["items"]) == 4
    by_name = client.get("/api/v1/customers?sort=name", headers=headers).get_json()
    assert by_name["items"][0]["name"] == "客户00"
    assert client.get(f"/api/v1/customers?type_id={vip.id}", headers=headers).get_json()["total"] == 3
    archived = client.get("/api/v1/customers?archived=1", headers=headers).get_json()
    assert [c["name"] for c in archived["items"]] == ["客户05"]
    assert client.get("/api/v1/customers?archived=all", headers=headers).get_json()["total"] == 25
    # The API holds callers to its document; a hand-edited address bar falls back to defaults.
    bad = client.get("/api/v1/customers?page=abc&type_id=x&sort=evil", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_type_id"


def test_list_page_query_count_does_not_grow_with_rows(app, client, operator, make_customer):
    """The list page runs a fixed number of queries, whether it shows 2 or 20 customers."""
    ctype = _db(app, lambda: customer_types.create_type(SYSTEM, {"name": "普通"}))
    for i in range(2):
        make_customer(phone=f"1390000{i:04d}", type_id=ctype.id)
    with count_queries() as few:
        assert client.get("/customers").status_code == 200
    for i in range(2, 22):
        make_customer(phone=f"1390000{i:04d}", type_id=ctype.id)
    with count_queries() as many:
        assert client.get("/customers").status_code == 200
    assert few.count == many.count <= 8


def test_edit_writes_a_field_by_field_diff(app, client, operator, make_customer):
    """An edit is audited field by field (before → after) and shown on the detail page."""
    customer = make_customer()
    vip = _db(app, lambda: customer_types.create_type(SYSTEM, {"name": "VIP客户"}))
    form = {**GOOD, "phone": "13900001111", "address": "", "type_id": str(vip.id)}
    resp = _post_form(client, f"/customers/{customer.id}/edit", form)
    assert resp.status_code == 302
    entry = _db(app, lambda: AuditLog.get(AuditLog.action == "customer.update"))
    changes = json.loads(entry.detail)["changes"]
    assert changes == {"phone": ["13800138000", "13900001111"],
                       "address": ["朝阳区建国路 1 号", ""], "type": ["", "VIP客户"]}
    assert entry.username == "ann" and entry.ip == "127.0.0.1"
    page = client.get(f"/customers/{customer.id}").get_data(as_text=True)
    assert "<del>13800138000</del> → 13900001111" in page
    # Saving the same values again records nothing new.
    _post_form(client, f"/customers/{customer.id}/edit", form)
    assert _db(app, lambda: AuditLog.select().where(AuditLog.action == "customer.update").count()) == 1


def test_archive_and_restore(app, client, operator, make_customer):
    """Archived customers are hidden by default, kept, and can be restored; both audited."""
    customer = make_customer()
    token = csrf_token(client, f"/customers/{customer.id}")
    assert client.post(f"/customers/{customer.id}/archive",
                       data={"csrf_token": token}).status_code == 302
    assert "共 0 位客户" in client.get("/customers").get_data(as_text=True)
    assert "张三" in client.get("/customers?archived=1").get_data(as_text=True)
    assert client.post(f"/customers/{customer.id}/restore",
                       data={"csrf_token": token}).status_code == 302
    assert "共 1 位客户" in client.get("/customers").get_data(as_text=True)
    actions = _db(app, lambda: [a.action for a in AuditLog.select().order_by(AuditLog.id)])
    assert actions[-2:] == ["customer.archive", "customer.restore"]


def test_unknown_customer_is_404(client, operator, api_token):
    """A customer id that does not exist: Chinese 404 page, JSON 404 in the API."""
    resp = client.get("/customers/9999")
    assert resp.status_code == 404 and "客户不存在" in resp.get_data(as_text=True)
    resp = client.get("/api/v1/customers/9999", headers=api_token("bob"))
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "customer_not_found"


def test_export_follows_the_filters(app, client, operator, make_customer):
    """The Excel export holds every customer under the current filters, all pages."""
    for i in range(23):
        make_customer(name=f"客户{i:02d}", phone=f"1380000{i:04d}")
    make_customer(name="别人", phone="13999999999")
    resp = client.get("/customers/export.xlsx?q=1380000")
    assert resp.status_code == 200
    assert resp.mimetype.endswith("spreadsheetml.sheet")
    rows = report_rows(resp.data)
    assert rows[0][:4] == ("客户编号", "姓名", "性别", "电话")
    assert len(rows) == 24 and "别人" not in [r[1] for r in rows]


def test_api_customer_crud(app, client, api_token):
    """Create, read, patch, archive and restore through the API."""
    headers = api_token("ann")
    resp = client.post("/api/v1/customers", json={**GOOD, "birthday": "1990-05-01"},
                       headers=headers)
    assert resp.status_code == 201
    created = resp.get_json()
    assert created["customer_no"] == "000001" and created["birthday"] == "1990-05-01"
    cid = created["id"]
    resp = client.patch(f"/api/v1/customers/{cid}", json={"remark": "改过"}, headers=headers)
    assert resp.status_code == 200 and resp.get_json()["remark"] == "改过"
    assert resp.get_json()["name"] == "张三"
    assert client.post(f"/api/v1/customers/{cid}/archive", headers=headers).get_json()["archived"]
    assert not client.post(f"/api/v1/customers/{cid}/restore",
                           headers=headers).get_json()["archived"]
    assert client.get(f"/api/v1/customers/{cid}", headers=headers).get_json()["remark"] == "改过"


# --- customer types -------------------------------------------------------------------------

def test_admin_manages_types_through_the_pages(app, client, make_user, auth):
    """Create, edit and delete a type; names are unique; discounts are 1–100."""
    make_user("boss", role="admin")
    auth.login("boss")
    assert _post_form(client, "/customer-types", {"name": "VIP客户", "discount": "95"}).status_code == 302
    assert "9.5 折" in client.get("/customer-types").get_data(as_text=True)
    resp = _post_form(client, "/customer-types", {"name": "VIP客户"})
    assert resp.status_code == 409 and "已存在" in resp.get_data(as_text=True)
    for bad in ("0", "101", "abc", "9.5"):
        resp = _post_form(client, "/customer-types", {"name": "金卡", "discount": bad})
        assert resp.status_code == 422 and "折扣必须是 1–100" in resp.get_data(as_text=True)
    ctype = _db(app, lambda: CustomerType.get(CustomerType.name == "VIP客户"))
    resp = _post_form(client, f"/customer-types/{ctype.id}/edit",
                      {"name": "钻石VIP", "description": "年消费满万", "discount": ""})
    assert resp.status_code == 302
    ctype = _db(app, lambda: CustomerType.get_by_id(ctype.id))
    assert (ctype.name, ctype.discount) == ("钻石VIP", None)
    token = csrf_token(client, "/customer-types")
    assert client.post(f"/customer-types/{ctype.id}/delete",
                       data={"csrf_token": token}).status_code == 302
    assert _db(app, lambda: CustomerType.select().count()) == 0
    actions = _db(app, lambda: [a.action for a in AuditLog.select().where(
        AuditLog.object_type == "customer_type").order_by(AuditLog.id)])
    assert actions == ["customer_type.create", "customer_type.update", "customer_type.delete"]


def test_type_in_use_cannot_be_deleted(app, client, make_user, auth, make_customer):
    """Deleting a type that customers use says how many, and keeps it."""
    make_user("boss", role="admin")
    auth.login("boss")
    ctype = _db(app, lambda: customer_types.create_type(SYSTEM, {"name": "VIP客户"}))
    make_customer(type_id=ctype.id)
    make_customer(phone="13900000000", type_id=ctype.id)
    resp = client.post(f"/customer-types/{ctype.id}/delete",
                       data={"csrf_token": csrf_token(client, "/customer-types")})
    assert resp.status_code == 409
    assert "仍有 2 位客户在用" in resp.get_data(as_text=True)
    assert _db(app, lambda: CustomerType.select().count()) == 1


def test_operator_cannot_manage_types(client, operator, api_token):
    """Operators get 403 on type management (web and API) but may list types in the API."""
    assert client.get("/customer-types").status_code == 403
    headers = api_token("bob")
    assert client.get("/api/v1/customer-types", headers=headers).status_code == 200
    assert client.post("/api/v1/customer-types", json={"name": "x"}, headers=headers).status_code == 403


def test_api_types(app, client, api_token, make_customer):
    """Type CRUD through the API, with the usage count and the in-use refusal."""
    headers = api_token("boss", role="admin")
    resp = client.post("/api/v1/customer-types", json={"name": "VIP客户", "discount": 90},
                       headers=headers)
    assert resp.status_code == 201
    tid = resp.get_json()["id"]
    resp = client.patch(f"/api/v1/customer-types/{tid}", json={"description": "贵宾"},
                        headers=headers)
    assert resp.get_json()["description"] == "贵宾" and resp.get_json()["discount"] == 90
    make_customer(type_id=tid)
    items = client.get("/api/v1/customer-types", headers=headers).get_json()["items"]
    assert items[0]["customer_count"] == 1
    resp = client.delete(f"/api/v1/customer-types/{tid}", headers=headers)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "customer_type_in_use"
    resp = client.post("/api/v1/customer-types", json={"name": "VIP客户"}, headers=headers)
    assert resp.status_code == 409
    assert client.delete("/api/v1/customer-types/999", headers=headers).status_code == 404


def test_a_birthday_after_today_is_refused_by_the_apps_clock(client, api_token, clock):
    """Today is a possible birthday (a newborn's card); tomorrow, by the app's clock, is not."""
    headers = api_token("ann")
    tomorrow = (clock.today() + datetime.timedelta(days=1)).isoformat()
    resp = client.post("/api/v1/customers", json={**GOOD, "birthday": tomorrow}, headers=headers)
    assert resp.status_code == 422 and "生日不合理" in resp.get_json()["error"]["message"]
    resp = client.post("/api/v1/customers", json={**GOOD, "birthday": clock.today().isoformat()},
                       headers=headers)
    assert resp.status_code == 201, resp.get_json()
