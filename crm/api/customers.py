"""API: customer types and customers. Each operation is declared once (crm.api.declare)."""
from typing import Annotated, Literal

from pydantic import Field

from crm.api.declare import BODY_ERRORS, File, operation
from crm.api.types import DateText, Day, Form, Id, Input, Ok, Output, Page, Query, Stamp, Upload, Yuan
from crm.http import (
    XLSX,
    actor,
    admin_required,
    customer_list_file,
    import_template_file,
    requires,
    uploaded_file,
)
from crm.services import customer_import, customer_types, customers

Discount = Annotated[int, Field(ge=1, le=100)]


class CustomerType(Output):
    id: int
    name: str
    description: str
    discount: int | None  # what is stored (the rule 1–100 is the input's)
    customer_count: int | None

    @classmethod
    def of(cls, ctype):
        return cls(id=ctype.id, name=ctype.name, description=ctype.description,
                   discount=ctype.discount, customer_count=getattr(ctype, "customer_count", None))


class CustomerTypeList(Output):
    items: list[CustomerType]


class CustomerTypeInput(Input):
    """Fields left out keep their values (PATCH) or are empty (POST: the name is then missing)."""

    name: str = Field(None, max_length=50)
    description: str | None = Field(None, max_length=200)  # null: none (the service stores "")
    discount: Discount | None = None


class CustomerPatch(Input):
    """The fields sent, and only those, are changed (the services check each, page and API)."""

    name: str = Field(None, max_length=50)
    gender: Literal["男", "女", "未知"] = None
    phone: str = Field(None, max_length=20)
    address: str = Field(None, max_length=200)
    type_id: Id | None = None
    birthday: DateText | None = None
    remark: str = Field(None, max_length=500)


class CustomerInput(CustomerPatch):
    name: str = Field(max_length=50)
    phone: str = Field(max_length=20)


class Customer(Output):
    id: int
    customer_no: str
    name: str
    gender: str
    phone: str
    address: str
    type_id: int | None
    type_name: str | None
    birthday: Day | None
    remark: str
    archived: bool
    created_at: Stamp
    last_visit_at: Stamp | None

    @classmethod
    def of(cls, c):
        return cls(id=c.id, customer_no=c.customer_no, name=c.name, gender=c.gender,
                   phone=c.phone, address=c.address, type_id=c.type_id,
                   type_name=c.type.name if c.type_id else None, birthday=c.birthday,
                   remark=c.remark, archived=bool(c.archived), created_at=c.created_at,
                   last_visit_at=c.last_visit_at)


class CustomerList(Output):
    items: list[Customer]
    total: int
    page: int
    per_page: int


class CustomerFilters(Query):
    q: str = Field(None, max_length=50, description="姓名、电话的任意一段、客户编号或卡号（三位以上）")
    type_id: Id = Field(None, description="客户类型")
    archived: Literal["0", "1", "all"] = Field(None, description="0 正常（默认）、1 已归档、all 全部")
    sort: Literal["created", "name", "last_visit"] = Field(None, description="排序")


class CustomerSearch(CustomerFilters):
    page: Page = None


class ImportOptions(Query):
    confirm: Literal["0", "1"] = Field(None, description="1 执行导入")
    create_types: Literal["0", "1"] = Field(None, description="1 自动创建表格中缺少的客户类型")


class ImportFile(Form):
    file: Upload


class BadRow(Output):
    line: int
    reasons: list[str]


class ImportPreview(Output):
    valid: int
    opening_total: Yuan = Field(description="导入将新增的储值（各行期初余额之和）")
    unknown_types: list[str]
    bad_rows: list[BadRow]


class Skipped(Output):
    line: int
    reason: str


class ImportResult(Output):
    imported: int
    cards: int
    parts: int = Field(description="确认保存的批数（每批最多 1000 行）")
    skipped: list[Skipped] = Field(description="预览之后被别人占用电话或卡号而没有导入的行")


PHONE_TAKEN = {409: "电话已被其他客户使用"}


@operation("GET", "/v1/customer-types", "客户类型列表", "listCustomerTypes",
           answers={200: (CustomerTypeList, "OK")})
def list_customer_types():
    """All customer types with how many customers use each."""
    return CustomerTypeList(items=[CustomerType.of(t) for t in customer_types.list_types()])


@operation("POST", "/v1/customer-types", "新增客户类型（管理员）", "createCustomerType",
           body=CustomerTypeInput, answers={201: (CustomerType, "已创建")},
           errors={**BODY_ERRORS, 409: "名称已存在"})
@admin_required
def create_customer_type(body):
    """Create a customer type (admin)."""
    return CustomerType.of(customer_types.create_type(actor(), body.model_dump(exclude_unset=True)))


@operation("PATCH", "/v1/customer-types/<int:type_id>", "修改客户类型（管理员）",
           "updateCustomerType", body=CustomerTypeInput, answers={200: (CustomerType, "OK")},
           errors={**BODY_ERRORS, 409: "名称已存在"})
@admin_required
def update_customer_type(type_id, body):
    """Change a customer type (admin); fields not sent keep their values."""
    current = customer_types.get_type(type_id)
    data = {"name": current.name, "description": current.description,
            "discount": current.discount, **body.model_dump(exclude_unset=True)}
    return CustomerType.of(customer_types.update_type(actor(), type_id, data))


@operation("DELETE", "/v1/customer-types/<int:type_id>", "删除未被使用的客户类型（管理员）",
           "deleteCustomerType", answers={200: (Ok, "OK")},
           errors={409: "仍有客户使用该类型"})
@admin_required
def delete_customer_type(type_id):
    """Delete a customer type no customer uses (admin)."""
    customer_types.delete_type(actor(), type_id)
    return Ok(ok=True)


@operation("GET", "/v1/customers", "查找客户（每页 20 条，含总数）", "listCustomers",
           query=CustomerSearch, answers={200: (CustomerList, "OK")})
def list_customers(query):
    """Search customers: q (name part, phone part, number), type_id, archived (0/1/all), sort, page."""
    filters = customers.parse_filters(query.as_args())
    rows, total = customers.search(**filters)
    return CustomerList(items=[Customer.of(c) for c in rows], total=total, page=filters["page"],
                        per_page=customers.PER_PAGE)


@operation("GET", "/v1/customers/export.xlsx", "客户名单 Excel（与查找客户相同的筛选，不分页）",
           "exportCustomers", query=CustomerFilters, answers={200: (File(XLSX), "客户名单")})
@requires("export")
def export_customers(query):
    """Every customer under the list's filters (q, type_id, archived, sort; all pages) as Excel."""
    return customer_list_file(customers.parse_filters(query.as_args()))


@operation("GET", "/v1/customers/import/template.xlsx", "客户导入模板 Excel",
           "customerImportTemplate", answers={200: (File(XLSX), "空白导入模板")})
@requires("edit_customers")
def customer_import_template():
    """The blank Excel template for POST /v1/customers/import."""
    return import_template_file()


@operation("POST", "/v1/customers", "新建客户", "createCustomer", body=CustomerInput,
           answers={201: (Customer, "已创建")}, errors={**BODY_ERRORS, **PHONE_TAKEN})
@requires("edit_customers")
def create_customer(body):
    """Create a customer."""
    customer = customers.create_customer(actor(), body.model_dump(exclude_unset=True))
    return Customer.of(customers.get_customer(customer.id))


@operation("GET", "/v1/customers/<int:customer_id>", "客户详情", "getCustomer",
           answers={200: (Customer, "OK")})
def get_customer(customer_id):
    """One customer."""
    return Customer.of(customers.get_customer(customer_id))


@operation("PATCH", "/v1/customers/<int:customer_id>", "修改客户（只改传入的字段）",
           "updateCustomer", body=CustomerPatch, answers={200: (Customer, "OK")},
           errors={**BODY_ERRORS, **PHONE_TAKEN})
@requires("edit_customers")
def update_customer(customer_id, body):
    """Change the fields sent."""
    return Customer.of(customers.update_customer(actor(), customer_id,
                                                 body.model_dump(exclude_unset=True)))


def _archiving(archived, verb, summary, operation_id):
    """归档 / 恢复: hidden from the list or back, never deleted."""

    def change(customer_id):
        return Customer.of(customers.set_archived(actor(), customer_id, archived))

    change.__name__ = change.__qualname__ = f"{verb}_customer"  # api.archive_customer, …
    return operation("POST", f"/v1/customers/<int:customer_id>/{verb}", summary, operation_id,
                     answers={200: (Customer, "OK")})(
        requires("edit_customers")(change))


archive_customer = _archiving(True, "archive", "归档客户", "archiveCustomer")
restore_customer = _archiving(False, "restore", "恢复已归档客户", "restoreCustomer")


@operation("POST", "/v1/customers/import",
           "Excel 导入客户：先检查，confirm=1 时导入全部合格行"
           "（每 1000 行一批确认保存，每批要么全部导入要么都不导入）", "importCustomers",
           query=ImportOptions, form=ImportFile,
           answers={200: (ImportPreview, "检查结果"), 201: (ImportResult, "已导入")},
           errors={403: "导入期初余额需要“开卡、充值”权限",
                   409: "数据已变化，或中途停止（已确认的批次保留，消息写明到第几行）",
                   413: "文件太大", 422: "文件无法读取或缺少表头",
                   503: "数据库忙或正在恢复备份（已确认的批次保留，消息里写明）"})
@requires("edit_customers")
def import_customers(query):
    """Upload an .xlsx (multipart field `file`). Without confirm=1: the check only. With
    confirm=1: import every valid row, in confirmed parts of 1,000 rows, each all or nothing.
    create_types=1 creates unknown types."""
    filename, data = uploaded_file()
    create_types = query.create_types == "1"
    if query.confirm == "1":
        done = customer_import.run(actor(), data, filename, create_types=create_types)
        return ImportResult(imported=done.imported, cards=done.cards, parts=done.parts,
                            skipped=[Skipped(line=line, reason=reason)
                                     for line, reason in done.skipped]), 201
    preview = customer_import.preview(data, create_types=create_types)
    return ImportPreview(valid=len(preview.valid_rows), unknown_types=preview.unknown_types,
                         opening_total=preview.opening_total,
                         bad_rows=[BadRow(line=r.line, reasons=r.problems(create_types))
                                   for r in preview.bad_rows]), 200
