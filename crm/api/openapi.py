"""The OpenAPI 3.1 document of /api/v1, served at /api/openapi.json: built from the operations' declarations
(crm.api.declare) and, until each has moved there, the hand-written paths below."""
import inspect
import re
from functools import lru_cache

from flask import jsonify

from crm import __version__
from crm.api import bp
from crm.api.types import MAX_ID
from crm.services import stats


def _error(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema_ref, description="OK"):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _body(schema_ref):
    return {"required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


AUTH_ERRORS = {"401": _error("缺少或无效的令牌"), "403": _error("角色无权执行")}
BODY_ERRORS = {"400": _error("请求体不是 JSON 对象"), "422": _error("字段值不合规")}
NOT_FOUND = {"404": _error("对象不存在")}


_TEXT_SCHEMA = {"type": "string"}


_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_PAGE = {"type": "integer", "minimum": 1, "maximum": 100000}


def _id_param(name):
    return [{"name": name, "in": "path", "required": True, "schema": _ID}]


def _query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _binary(media, description="文件"):
    """A file answer (Excel, PDF, zip): the bytes, with their content type."""
    return {"description": description,
            "content": {media: {"schema": {"type": "string", "format": "binary"}}}}


# The customer list's filters: GET /customers and its Excel export take the same ones.
_CUSTOMER_FILTERS = [
    _query("q", {"type": "string", "maxLength": 50}, "姓名、电话的任意一段或客户编号"),
    _query("type_id", _ID, "客户类型"),
    _query("archived", {"type": "string", "enum": ["0", "1", "all"]}, "0 正常（默认）、1 已归档、all 全部"),
    _query("sort", {"type": "string", "enum": ["created", "name", "last_visit"]}, "排序"),
]

PATHS = {
}

_PERIOD = [_query("start", {"type": "string", "format": "date"}, "开始日期 YYYY-MM-DD（默认本月 1 日）"),
           _query("end", {"type": "string", "format": "date"}, "结束日期 YYYY-MM-DD（含当天，默认今天）"),
           _query("preset", {"type": "string", "enum": ["today", "week", "month", "last_month"]},
                  "常用期间")]
_CLOSING = [_query("day", {"type": "string", "format": "date"}, "日期，默认今天"),
            _query("operator_id", _ID, "只看某位操作员")]
_PERIOD_ERRORS = {**AUTH_ERRORS, **NOT_FOUND,
                  "422": _error("日期格式不正确、结束早于开始、或期间超过 5 年")}


def _file(media, summary, op_id, errors=None):
    return {"summary": summary, "operationId": op_id, "parameters": _PERIOD,
            "responses": {"200": {"description": "文件", "content": {media: {"schema": {
                "type": "string", "format": "binary"}}}}, **_PERIOD_ERRORS, **(errors or {})}}


PATHS.update({
    "/api/v1/customers/{customer_id}/statement": {
        "parameters": _id_param("customer_id"),
        "get": {"summary": "客户对账单：期间内所有卡的全部流水（按时间，分页）和合计",
                "operationId": "customerStatement",
                "parameters": [*_PERIOD, _query("page", _PAGE, "页码")],
                "responses": {"200": _json("Statement"), **_PERIOD_ERRORS}},
    },
    "/api/v1/customers/{customer_id}/statement.xlsx": {
        "parameters": _id_param("customer_id"),
        "get": _file("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     "对账单 Excel", "customerStatementXlsx"),
    },
    "/api/v1/customers/{customer_id}/statement.pdf": {
        "parameters": _id_param("customer_id"),
        "get": _file("application/pdf", "对账单 PDF（最多 2000 笔流水，更多请导出 Excel）",
                     "customerStatementPdf",
                     {"422": _error("日期不正确，或这段期间超过 PDF 的 2000 笔上限（请导出 Excel）")}),
    },
})

PATHS.update({
    "/api/v1/stats": {
        "get": {"summary": "统计分析：充值、消费、赠送、储值余额、客户数、客单价、复购率与图表数据",
                "operationId": "stats", "parameters": _PERIOD,
                "responses": {"200": _json("Stats"), **AUTH_ERRORS,
                              "422": _error("日期格式不正确、结束早于开始、或期间超过 5 年")}},
    },
    "/api/v1/closing": {
        "get": {"summary": "日结 / 交班：当天按支付方式的收款、各业务合计、钱箱应有现金",
                "operationId": "dailyClosing",
                "parameters": _CLOSING,
                "responses": {"200": _json("Closing"), **AUTH_ERRORS,
                              "422": _error("日期格式不正确")}},
    },
})

# Every function of the web pages has its call: the exports, the receipt, monitoring, backup files.
PATHS.update({
    "/api/v1/closing.xlsx": {
        "get": {"summary": "日结 Excel（参数同日结）", "operationId": "dailyClosingXlsx",
                "parameters": _CLOSING,
                "responses": {"200": _binary(XLSX, "日结"), **AUTH_ERRORS,
                              "422": _error("日期格式不正确")}},
    },
    "/api/v1/stats/{chart}.xlsx": {
        "parameters": [{"name": "chart", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(stats.CHARTS)},
                        "description": "daily 每日充值与消费、by_type 各客户类型消费、"
                                       "top 消费前十的客户、activity 客户活跃度"}],
        "get": {"summary": "统计图表的数据 Excel", "operationId": "chartXlsx", "parameters": _PERIOD,
                "responses": {"200": _binary(XLSX, "图表数据"), **AUTH_ERRORS,
                              "404": _error("没有这个图表"),
                              "422": _error("日期格式不正确、结束早于开始、或期间超过 5 年")}},
    },
    "/api/v1/monitor": {
        "get": {"summary": "数据监控（管理员）：数据库、断电保护、备份、账本校验、磁盘、运行时间",
                "operationId": "monitor",
                "responses": {"200": _json("Monitor"), **AUTH_ERRORS}},
    },
    "/api/v1/backups/{name}/download": {
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"},
                        "description": "备份文件名（备份列表中的 name），不是路径"}],
        "get": {"summary": "下载备份文件（管理员）", "operationId": "downloadBackup",
                "responses": {"200": _binary("application/zip", "备份文件"),
                              "206": _binary("application/zip", "请求头 Range 所要的一段（断点续传）"),
                              **AUTH_ERRORS,
                              "404": _error("没有这个备份"), "422": _error("备份文件名不正确")}},
    },
    "/api/v1/backups/upload": {
        "post": {"summary": "上传备份文件（管理员）：以系统自己的文件名保存并核对，通过才保留，之后可以恢复",
                 "operationId": "uploadBackup",
                 "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": {"type": "string", "format": "binary"},
                                    "recovery_key": {
                                        "type": "string",
                                        "description": "另一台电脑的备份：那台电脑的恢复密钥"}}}}}},
                 "responses": {"201": _json("Backup", "已保存并通过核对"),
                               **AUTH_ERRORS, "413": _error("文件太大"),
                               "422": _error("没有文件、不是备份文件、无法读取或未通过核对"
                                             "（未保留）")}},
    },
})

PATHS.update({
    "/api/v1/backups": {
        "get": {"summary": "备份列表（管理员）", "operationId": "listBackups",
                "responses": {"200": _json("BackupList"), **AUTH_ERRORS}},
        "post": {"summary": "立即备份并读回核对（管理员）", "operationId": "createBackup",
                 "responses": {"201": _json("Backup", "已备份"), **AUTH_ERRORS,
                               "409": _error("另一个备份或恢复正在进行"),
                               "422": _error("无法写入备份文件夹")}},
    },
    "/api/v1/backups/{name}/restore": {
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "post": {"summary": "恢复到某个备份（管理员；需输入店名确认）", "operationId": "restoreBackup",
                 "requestBody": _body("RestoreRequest"),
                 "responses": {"200": _json("RestoreResult"), "400": _error("请求体不是 JSON 对象"),
                               **AUTH_ERRORS, "404": _error("没有这个备份"),
                               "409": _error("另一个备份或恢复正在进行"),
                               "422": _error("店名不符、备份未通过核对或恢复密钥不正确")}},
    },
})

PATHS.update({
})

PATHS.update({
})

_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_CUSTOMER_FIELDS = {
    "name": {"type": "string", "maxLength": 50}, "gender": {"type": "string", "enum": ["男", "女", "未知"]},
    "phone": {"type": "string", "maxLength": 20}, "address": {"type": "string", "maxLength": 200},
    "type_id": {**_ID, "nullable": True},
    "birthday": {"type": "string", "format": "date", "nullable": True},
    "remark": {"type": "string", "maxLength": 500},
}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"},
                                                "message": {"type": "string"}}}},
    },
}

_YUAN = {"type": "string", "pattern": "^-?[0-9]+[.][0-9]{2}$", "example": "100.00"}
_AMOUNT_IN = {"oneOf": [{"type": "string", "example": "100.00"}, {"type": "number"}],
              "description": "元，最多两位小数，大于 0，不超过单笔上限"}
_METHOD = {"type": "string", "enum": ["cash", "wechat", "alipay", "card", "other"]}
SCHEMAS.update({
    "Statement": {"type": "object", "required": ["entries", "totals"], "properties": {
        "customer_id": {"type": "integer"}, "start": _TEXT, "end": _TEXT,
        "page": {"type": "integer"}, "pages": {"type": "integer"},
        "total_entries": {"type": "integer"},
        "entries": {"type": "array", "items": {"type": "object", "properties": {
            "time": _TEXT, "card_no": _TEXT, "business_type": _TEXT, "amount": _YUAN,
            "balance": _YUAN, "operator": _TEXT, "remark": _TEXT,
            "payment_method": _NULLABLE_TEXT}}},
        "totals": {"type": "object", "properties": {k: _YUAN for k in (
            "recharge", "bonus", "consume", "reversal", "refund", "net", "opening", "closing")}}}},
    "Stats": {"type": "object", "required": ["total_recharge", "total_consume",
                                             "outstanding_balance", "active_customers",
                                             "new_customers"],
              "properties": {**{k: _YUAN for k in (
                  "total_recharge", "total_consume", "bonus_given", "outstanding",
                  "outstanding_balance", "outstanding_paid", "outstanding_bonus",
                  "average_per_visit")},
                  "active_customers": {"type": "integer"}, "new_customers": {"type": "integer"},
                  "visits": {"type": "integer"}, "repurchase_rate": {"type": "number"},
                  "start": _TEXT, "end": _TEXT,
                  "as_of": {"type": "string", "description": "统计时刻（最多缓存 STATS_CACHE_SECONDS 秒）"},
                  "daily": {"type": "array", "items": {"type": "object"}},
                  "by_type": {"type": "array", "items": {"type": "object"}},
                  "top": {"type": "array", "items": {"type": "object"}},
                  "activity": {"type": "array", "items": {"type": "object"}}}},
    "Closing": {"type": "object", "properties": {
        "day": _TEXT, "cash": _YUAN, "money_in": {"type": "object"},
        "lines": {"type": "array", "items": {"type": "object"}}}},
    "Backup": {"type": "object", "required": ["name", "verified"], "properties": {
        "name": _TEXT, "created_at": _TEXT, "kind": _TEXT, "size": {"type": "integer"},
        "counts": {"type": "object"}, "verified": {"type": "boolean"}, "checked_at": _TEXT,
        "problems": {"type": "array", "items": _TEXT}}},
    "BackupList": {"type": "object", "properties": {"items": {
        "type": "array", "items": {"$ref": "#/components/schemas/Backup"}}}},
    "RestoreRequest": {"type": "object", "required": ["confirm"], "properties": {
        "confirm": {"type": "string", "description": "店名，与设置中的 SHOP_NAME 相同"},
        "recovery_key": {"type": "string", "maxLength": 80,
                         "pattern": "^\\s*([0-9a-fA-F]{64})?\\s*$",
                         "description": "另一台电脑的恢复密钥（换电脑恢复时）：64 位十六进制字符"},
        "accept_unsigned": {"type": "boolean", "description": "确认恢复升级前做的未签名旧备份"
                                                               "（只限本机或所给恢复密钥的备份）"},
        "rename_clashes": {"type": "boolean", "description": "旧备份里按新规则重名的用户名或客户类型："
                                                              "每组第一个保留，其余加 -2 等后缀"}}},
    "RestoreResult": {"type": "object", "properties": {
        "name": _TEXT, "safety_backup": _TEXT, "ledger_ok": {"type": "boolean"},
        "renamed": {"type": "array", "items": {"type": "object", "properties": {
            "what": _TEXT, "old": _TEXT, "new": _TEXT}}},
        "cards_checked": {"type": "integer"}, "entries_checked": {"type": "integer"}}},
})

SCHEMAS["Monitor"] = {
    "type": "object", "required": ["database", "durable", "counts", "problems"], "properties": {
        "database": _TEXT, "version": _TEXT, "size": {"type": "integer"},
        "durable": {"type": "boolean"}, "durability_setting": _TEXT,
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "today_entries": {"type": "integer"}, "today_net": _YUAN, "outstanding": _YUAN,
        "last_backup": {**SCHEMAS["Backup"], "nullable": True},
        "next_backup": _TEXT,
        "last_check": {"type": "object", "nullable": True, "properties": {
            "time": _TEXT, "ok": {"type": "boolean"}, "cards_checked": {"type": "integer"},
            "entries_checked": {"type": "integer"},
            "problems": {"type": "array", "items": {"type": "object"}}}},
        "disks": {"type": "array", "items": {"type": "object", "properties": {
            "label": _TEXT, "path": _TEXT, "free": {"type": "integer"}}}},
        "app_version": _TEXT, "uptime": _TEXT, "restarts": {"type": "integer"},
        "problems": {"type": "array", "items": _TEXT}}}


def _contract_errors(paths):
    """Every operation also documents the refusals of crm.api.contract, which checks each
    request against this document: 422 for a bad parameter or field, 400 for a body that is not
    a JSON object or a missing header, 404 for a path id that is not a number; and every change
    503 while a restore holds the data."""
    out = {}
    for path, item in paths.items():
        out[path] = dict(item)
        for method, operation in item.items():
            if method == "parameters":
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            extra = {}
            if any(p["in"] == "path" for p in parameters):
                extra["404"] = _error("对象不存在")
            if any(p["in"] == "query" for p in parameters) or "requestBody" in operation:
                extra["422"] = _error("参数或字段不符合接口文档")
            if any(p["in"] == "header" for p in parameters) or "requestBody" in operation:
                extra["400"] = _error("请求体不是 JSON 对象，或缺少请求头")
            if method != "get":  # the restore hold (crm.services.hold), with Retry-After
                extra["503"] = _error("正在恢复数据（restore_in_progress），请按 Retry-After 稍后重试")
            out[path][method] = {**operation,
                                 "responses": {**extra, **operation["responses"]}}
    return out


def _as_31(node):
    """A hand-written OpenAPI 3.0 schema in 3.1 terms: `nullable` becomes a null type."""
    if isinstance(node, list):
        return [_as_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_31(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _tidy(schema):
    """pydantic's JSON Schema without the titles it gives every field (names say it)."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: _tidy(sub) for name, sub in value.items()}
        else:
            out[key] = _tidy(value)
    return out


KEY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": True,
              "schema": {"type": "string", "minLength": 8, "maxLength": 64,
                         "pattern": "^[A-Za-z0-9_-]{8,64}$"},
              "description": "每笔资金请求一个唯一编号；同一编号重发返回第一次的结果，不会重复扣款"}
_RULE_PARAM = re.compile(r"<(?:([a-z]+):)?(\w+)>")


def _declared():
    """The paths and component schemas of the declared operations (crm.api.declare)."""
    from pydantic import BaseModel
    from pydantic.json_schema import models_json_schema

    from crm.api import auth, backups, cards, customers, reports  # noqa: F401 — they declare
    from crm.api.declare import OPERATIONS, File

    def model(kind):
        return isinstance(kind, type) and issubclass(kind, BaseModel)

    inputs = {m for d in OPERATIONS for m in (d.body, d.form, d.query) if m is not None}
    outputs = {kind for d in OPERATIONS for kind, _ in d.answers.values() if model(kind)}
    refs, top = models_json_schema(
        [(m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)]
        + [(m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}")
    schemas = _tidy(top.get("$defs", {}))
    for kind in inputs | outputs:  # a class's English docstring is for the code, not the document
        entry = schemas.get(kind.__name__, {})
        if kind.__doc__ and entry.get("description") == inspect.cleandoc(kind.__doc__):
            del entry["description"]
    input_names = {kind.__name__ for kind in inputs}
    for name, entry in schemas.items():
        for field in entry.get("properties", {}).values():
            # An answer's defaults are the code's (a key the view did not set is absent); an
            # input's None default only means "may be left out".
            if name not in input_names or field.get("default", 0) is None:
                field.pop("default", None)
    paths = {}
    for d in OPERATIONS:
        parameters = []
        for converter, name in _RULE_PARAM.findall(d.rule):
            schema, description = d.path.get(name, (_ID, None)) if converter != "int" \
                else (_ID, None)
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema,
                               **({"description": description} if description else {})})
        if d.key:
            parameters.append(KEY_HEADER)
        if d.query is not None:
            query = schemas.pop(refs[(d.query, "validation")]["$ref"].rsplit("/", 1)[1])
            need = set(query.get("required", []))
            for name, schema in query["properties"].items():
                text = schema.pop("description", "")
                schema.pop("default", None)
                others = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
                if len(others) == 1:  # a query value is never null: optional is enough
                    schema = others[0]
                parameters.append({"name": name, "in": "query", "required": name in need,
                                   "schema": schema, "description": text})
        entry = {"summary": d.summary, "operationId": d.operation_id}
        if d.public:
            entry["security"] = []
        if parameters:
            entry["parameters"] = parameters
        if d.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[(d.body, "validation")]}}}
        if d.form is not None:
            entry["requestBody"] = {"required": True, "content": {
                "multipart/form-data": {"schema": refs[(d.form, "validation")]}}}
        responses = {} if d.public else dict(AUTH_ERRORS)
        for status, (kind, description) in d.answers.items():
            if isinstance(kind, File):
                responses[str(status)] = _binary(kind.media, description)
            elif model(kind):
                responses[str(status)] = {"description": description, "content": {
                    "application/json": {"schema": refs[(kind, "serialization")]}}}
            else:
                responses[str(status)] = {"description": description}
        responses.update({str(status): _error(text) for status, text in d.errors.items()})
        entry["responses"] = responses
        path = "/api" + _RULE_PARAM.sub(r"{\2}", d.rule)
        if d.method.lower() in PATHS.get(path, {}):
            raise RuntimeError(f"{d.method} {path} is both declared and hand-written")
        paths.setdefault(path, {})[d.method.lower()] = entry
    return paths, schemas


@lru_cache(maxsize=1)
def document():
    """The whole OpenAPI document as a dict: the declared operations and, while the move to
    declarations goes on (issue 18), the hand-written ones above."""
    paths, schemas = _declared()
    legacy = _as_31(PATHS)
    for path, item in paths.items():
        legacy.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {"title": "客户关系管理系统 API", "version": __version__,
                 "description": "金额一律为两位小数的人民币元字符串（如 \"100.00\"）；"
                                "错误统一为 {\"error\": {\"code\", \"message\"}}。"},
        "paths": _contract_errors(legacy),
        "components": {
            "schemas": {**_as_31(SCHEMAS), **schemas},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@bp.route("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API."""
    return jsonify(document())
