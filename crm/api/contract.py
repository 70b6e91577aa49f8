"""The OpenAPI document is the contract, and this module enforces it on every API request.

Before a view runs, the query parameters, the headers and the JSON body are checked against the
operation's entry in crm.api.openapi (built from its declaration, crm.api.declare) with
jsonschema. A request the document does not allow is refused here with a 422 in Chinese that
names the field — the one translation of schema errors — so the services (which also serve the
web forms and the Excel import, and are lenient about "numbers typed as text") never see a
wrong type from the API, and the document cannot drift from what the API accepts: the
schemathesis run in the suite sends requests that break the document and expects them refused.
"""
import json
import re
from functools import lru_cache

from flask import g, request
from jsonschema import Draft202012Validator

from crm.errors import ValidationError

RULE_PARAM = re.compile(r"<(?:([a-z]+):)?(\w+)>")  # a Flask rule's <converter:name>
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_TYPE_NAMES = {"string": "文字", "integer": "整数", "number": "数字", "boolean": "true 或 false",
               "object": "对象", "array": "列表", "null": "null"}


def _to_json_schema(schema, components):
    """An OpenAPI 3.1 schema as plain JSON Schema: $refs inlined, annotations dropped."""
    if isinstance(schema, list):
        return [_to_json_schema(item, components) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _to_json_schema(components[schema["$ref"].rsplit("/", 1)[1]], components)
    alternatives = schema.get("anyOf", [])
    if len(alternatives) == 2 and {"type": "null"} in alternatives:
        # pydantic's `X | None`, said as one type list, so a refusal reads "必须是整数或null"
        # rather than "不符合接口文档".
        other = _to_json_schema(next(a for a in alternatives if a != {"type": "null"}),
                                components)
        if isinstance(other.get("type"), str):
            merged = {**other, "type": [other["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**_to_json_schema(rest, components), **merged}
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):  # names, not keywords
            out[key] = {name: _to_json_schema(sub, components) for name, sub in value.items()}
        elif key not in ("example", "examples", "description", "title"):
            out[key] = _to_json_schema(value, components)
    return out


class Operation:
    """The checks of one documented operation."""

    def __init__(self, operation, path_parameters, components):
        parameters = [*path_parameters, *operation.get("parameters", [])]
        self.query = {p["name"]: (_label(p), self._validator(p["schema"], components))
                      for p in parameters if p["in"] == "query"}
        self.headers = {p["name"]: (p.get("required", False),
                                    self._validator(p["schema"], components))
                        for p in parameters if p["in"] == "header"}
        content = operation.get("requestBody", {}).get("content", {})
        body = content.get("application/json")
        self.body = self._validator(body["schema"], components) if body else None

    @staticmethod
    def _validator(schema, components):
        return Draft202012Validator(_to_json_schema(schema, components),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)

    def check(self):
        unknown = sorted(set(request.args) - set(self.query))
        if unknown:
            raise _refusal(f"接口不认识参数 {unknown[0][:50]}", unknown[0][:50],
                           code="unknown_parameter")
        for name, (label, validator) in self.query.items():
            values = request.args.getlist(name)
            if not values:
                continue
            if len(values) > 1:
                raise _refusal(f"{label}只能给一次", name)
            value = values[0]
            if validator.schema.get("type") == "integer":
                if not _INTEGER.match(value):
                    raise _refusal(f"{label}必须是整数", name)
                value = int(value)
            _raise_first(validator, value, label, name)
        for name, (required, validator) in self.headers.items():
            value = request.headers.get(name)
            if value is None:
                if required:
                    code = "missing_" + name.lower().replace("-", "_")
                    raise ValidationError(f"缺少请求头 {name}", code=code, field=name, status=400)
                continue
            _raise_first(validator, value, f"请求头 {name} ", name, status=400)
        if self.body is not None:
            _raise_first(self.body, json_object(), "", "")


MAX_JSON_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_object():
    """The request's JSON body, parsed once here for the whole API: it must be a JSON object
    (400 otherwise), nested at most MAX_JSON_DEPTH deep (100,000 levels made Python's parser
    raise RecursionError: a 500), and hold no lone surrogate such as "\\ud800" in any key or
    text (a 500 when the database got it) — 422 naming the field."""
    if "crm_json" in g:
        return g.crm_json
    if not request.is_json:
        raise ValidationError("请求体必须是 JSON 对象", code="invalid_json", status=400)
    try:
        data = json.loads(request.get_data(cache=True))
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise ValidationError("请求体不是有效的 JSON（须为 UTF-8 编码的 JSON 对象）",
                              code="invalid_json", status=400) from None
    if not isinstance(data, dict):
        raise ValidationError("请求体必须是 JSON 对象", code="invalid_json", status=400)
    _check_tree(data)
    g.crm_json = data
    return data


def _too_deep():
    return ValidationError(f"请求体嵌套太深（最多 {MAX_JSON_DEPTH} 层）", code="invalid_json",
                           status=400)


def _check_tree(data):
    """Depth and lone surrogates, walked without recursion."""
    stack = [(data, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for key, value in items:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                raise _refusal("请求体的字段名含有无效的字符（单独的代理码位）", "", 422,
                               "invalid_text")
            if isinstance(value, str) and _SURROGATE.search(value):
                raise _refusal(f"字段 {_SURROGATE.sub('?', where)[:60]} 含有无效的字符"
                               "（单独的代理码位，如 \\ud800）", _SURROGATE.sub("?", where)[:60],
                               422, "invalid_text")
            if isinstance(value, dict | list):
                stack.append((value, depth + 1, where))


def _label(parameter):
    """What the message calls a query parameter: the first words of its description."""
    words = re.split(r"[\s（(]", parameter.get("description", ""), maxsplit=1)[0]
    return words or f"参数 {parameter['name']} "


def _refusal(message, field, status=422, code=None):
    return ValidationError(message, code=code or f"invalid_{field or 'body'}", field=field,
                           status=status)


def _raise_first(validator, value, label, field, status=422):
    """Refuse with the first problem jsonschema finds, said in Chinese."""
    # By field; within one field a wrong type first (whatever order the schema's keywords have).
    error = next(iter(sorted(validator.iter_errors(value),
                             key=lambda e: (list(e.path), e.validator != "type"))), None)
    if error is None:
        return
    path = ".".join(str(p) for p in error.absolute_path)
    if not label:
        label, field = (f"字段 {path} ", path) if path else ("请求体", "")
    kind, limit = error.validator, error.validator_value
    if kind == "required":
        missing = next((n for n in limit if n not in error.instance), "")
        raise _refusal(f"缺少字段 {missing}", missing, status, "missing_field")
    if kind == "type":
        names = "或".join(_TYPE_NAMES.get(t, t) for t in (limit if isinstance(limit, list)
                                                          else [limit]))
        raise _refusal(f"{label}必须是{names}", field, status, "invalid_type")
    if kind == "maxLength":
        message = f"{label}最多 {limit} 个字"
    elif kind == "minLength":
        message = f"{label}至少 {limit} 个字" if limit > 1 else f"{label}不能为空"
    elif kind == "enum":
        message = f"{label}只能是：" + "、".join("null" if v is None else str(v) for v in limit)
    elif kind == "minimum":
        message = f"{label}不能小于 {limit}"
    elif kind == "maximum":
        message = f"{label}不能大于 {limit}"
    elif kind == "format" and limit == "date":
        message = f"{label}格式不正确，请写成 2000-01-31"
    else:
        message = f"{label}的值不符合接口文档"
    raise _refusal(message, field, status)


@lru_cache(maxsize=1)
def _operations():
    from crm.api.openapi import document

    doc = document()
    components = doc["components"]["schemas"]
    table = {}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                table[(path, method.upper())] = Operation(operation, item.get("parameters", []),
                                                          components)
    return table


def documented_path(rule):
    """A Flask rule ("/api/v1/cards/<int:card_id>") as the document writes it."""
    return RULE_PARAM.sub(r"{\2}", rule)


def enforce():
    """Check this request against its operation in the document (before the view runs)."""
    if request.url_rule is None:
        return
    operation = _operations().get((documented_path(request.url_rule.rule), request.method))
    if operation is not None:
        operation.check()
