"""The OpenAPI 3.1 document of /api/v1, served at /api/openapi.json, built from the operations'
declarations (crm.api.declare): pydantic's JSON Schema of each declared type as a component,
and what every operation shares (the error shape, the token, the contract's refusals)."""
import inspect
import json
from functools import lru_cache

from flask import jsonify
from pydantic import TypeAdapter

from crm import __version__
from crm.api import bp
from crm.api.contract import RULE_PARAM, documented_path
from crm.api.types import Id, Input, Output


def _error(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


AUTH_ERRORS = {"401": _error("缺少或无效的令牌"), "403": _error("角色无权执行")}
_ID = TypeAdapter(Id).json_schema()

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "object", "required": ["code", "message"],
                                  "properties": {"code": {"type": "string"},
                                                 "message": {"type": "string"}}}}}


def _binary(media, description="文件"):
    """A file answer (Excel, PDF, zip): the bytes, with their content type."""
    return {"description": description,
            "content": {media: {"schema": {"type": "string", "format": "binary"}}}}


def _refusals(declared, path_parameters):
    """What every operation answers besides its own errors, from its declaration: the refusals
    of crm.api.contract, which checks each request against this document — 404 for a path id
    that is no number, 422 for a bad parameter or field, 400 for a body that is not a JSON
    object or a missing header — and, for every change, the restore hold's 503 (or a busy
    database's: crm.web's handler of a lock timeout or deadlock, nothing done)."""
    body = declared.body is not None or declared.form is not None
    out = {}
    if path_parameters:
        out["404"] = _error("对象不存在")
    if declared.query is not None or body:
        out["422"] = _error("参数或字段不符合接口文档")
    if declared.key or body:
        out["400"] = _error("请求体不是 JSON 对象，或缺少请求头")
    if declared.method != "GET":  # the restore hold (crm.services.hold), with Retry-After
        out["503"] = _error("正在恢复数据（restore_in_progress），请按 Retry-After 稍后重试；"
                            "或数据正被其他操作占用（database_busy），本次操作未完成，可稍后重试")
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


def _models(*bases):
    """Every Input and Output type, nested ones included."""
    found = []
    for base in bases:
        for kind in base.__subclasses__():
            found += [kind, *_models(kind)]
    return found


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
    named = {kind.__name__: kind for kind in _models(Input, Output)}
    for (kind, _), ref in refs.items():  # one name per type: pydantic renames clashes
        if ref["$ref"].rsplit("/", 1)[1] != kind.__name__ or named[kind.__name__] is not kind:
            raise RuntimeError(f"two API types are named {kind.__name__}")
    for name, entry in schemas.items():  # an English docstring is for the code, not the document
        doc = named[name].__doc__ if name in named else None
        if doc and entry.get("description") == inspect.cleandoc(doc):
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
        in_path = RULE_PARAM.findall(d.rule)
        for converter, name in in_path:
            schema, description = (_ID, None) if converter == "int" \
                else d.path.get(name, ({"type": "string"}, None))
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema,
                               **({"description": description} if description else {})})
        if d.key:
            parameters.append(KEY_HEADER)
        if d.query is not None:
            query = json.loads(json.dumps(schemas[d.query.__name__]))
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
        responses = {**_refusals(d, in_path), **({} if d.public else AUTH_ERRORS)}
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
        path = "/api" + documented_path(d.rule)
        paths.setdefault(path, {})[d.method.lower()] = entry
    for kind in {d.query for d in OPERATIONS if d.query is not None}:
        schemas.pop(kind.__name__)  # said as parameters, not a component
    return paths, schemas


@lru_cache(maxsize=1)
def document():
    """The whole OpenAPI document as a dict, built from the operations' declarations."""
    paths, schemas = _declared()
    return {
        "openapi": "3.1.0",
        "info": {"title": "客户关系管理系统 API", "version": __version__,
                 "description": "金额一律为两位小数的人民币元字符串（如 \"100.00\"）；"
                                "错误统一为 {\"error\": {\"code\", \"message\"}}。"},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, **schemas},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@bp.route("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API."""
    return jsonify(document())
