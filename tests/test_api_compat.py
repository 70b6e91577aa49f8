"""Nothing that clients rely on is lost (issue 18): every operation of the API document as it stood
when the move to typed declarations began (tests/openapi-baseline.json, served by commit 551873e,
OpenAPI 3.0.3) keeps its path and method, its parameters and whether they are required, its
request body's required fields and accepted types, its success codes and media types, and the
keys and types of its JSON answers. The served document may be OpenAPI 3.0 or 3.1: schemas are
compared by meaning (types, required, enums), not as raw JSON. Adding is free; any intended
difference must be listed in INTENDED below, with its reason."""
import json
from pathlib import Path

import pytest

BASELINE = json.loads((Path(__file__).parent / "openapi-baseline.json").read_text("utf-8"))

# (method path, what) -> why. Empty: nothing has been taken away.
INTENDED: dict[tuple[str, str], str] = {}

ANY = None  # a schema that names no type accepts every type


def _resolve(schema, doc):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][name]
    return schema or {}


def _flat(schema, doc):
    """A schema with its $refs and allOf parts merged: (types, properties, required, enum)."""
    schema = _resolve(schema, doc)
    types, properties, required, enum = _types(schema, doc), {}, set(), schema.get("enum")
    for part in schema.get("allOf", []):
        _, more, need, _ = _flat(part, doc)
        properties.update(more)
        required |= need
    properties.update(schema.get("properties", {}))
    required |= set(schema.get("required", []))
    return types, properties, required, enum


def _types(schema, doc):
    """The JSON types a schema accepts, 3.0 (`nullable`) and 3.1 (`anyOf` null, type lists)."""
    schema = _resolve(schema, doc)
    for combiner in ("anyOf", "oneOf"):
        if combiner in schema:
            found = set()
            for part in schema[combiner]:
                part_types = _types(part, doc)
                if part_types is ANY:
                    return ANY
                found |= part_types
            return found
    if "allOf" in schema:
        return next((t for t in (_types(p, doc) for p in schema["allOf"]) if t is not ANY), ANY)
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else ANY
    found = set(kind) if isinstance(kind, list) else {kind}
    if schema.get("nullable"):
        found.add("null")
    return found


def _wider_or_same(new, old):
    """An input still accepts every type it accepted."""
    return new is ANY or (old is not ANY and old <= new | ({"integer"} if "number" in new else set()))


def _narrower_or_same(new, old):
    """An answer gives no type it never gave."""
    return old is ANY or (new is not ANY and new <= old | ({"integer"} if "number" in old else set()))


def _parameters(doc, path, method):
    item = doc["paths"][path]
    found = {}
    for parameter in [*item.get("parameters", []), *item[method].get("parameters", [])]:
        found[(parameter["in"], parameter["name"])] = parameter
    return found


def _body_schema(operation):
    content = operation.get("requestBody", {}).get("content", {})
    return {media: entry.get("schema", {}) for media, entry in content.items()}


def _fields(old_schema, new_schema, current, answer):
    """How an object's fields lost what a client relied on. A request body may not require more
    fields nor accept fewer fields or types; an answer may not give fewer keys, always-given keys
    only sometimes, nor other types."""
    _, old_props, old_need, _ = _flat(old_schema, BASELINE)
    _, new_props, new_need, _ = _flat(new_schema, current)
    problems = [(field, "no longer always given" if answer else "now required")
                for field in sorted((old_need - new_need) if answer else (new_need - old_need))]
    for field, field_schema in old_props.items():
        if field not in new_props:
            problems.append((field, "missing" if answer else "no longer accepted"))
            continue
        new_types, old_types = _types(new_props[field], current), _types(field_schema, BASELINE)
        if answer and not _narrower_or_same(new_types, old_types):
            problems.append((field, "gives other types"))
        elif not answer and not _wider_or_same(new_types, old_types):
            problems.append((field, "accepts fewer types"))
    return problems


def _differences(current):
    """Every way `current` breaks a client of the baseline, as (operation, what, detail)."""
    found = []

    def lost(op, what, detail):
        if (op, what) not in INTENDED:
            found.append((op, what, detail))

    for path, item in BASELINE["paths"].items():
        for method, old in item.items():
            if method == "parameters":
                continue
            op = f"{method.upper()} {path}"
            if method not in current["paths"].get(path, {}):
                lost(op, "operation", "missing")
                continue
            new = current["paths"][path][method]
            old_params, new_params = _parameters(BASELINE, path, method), \
                _parameters(current, path, method)
            for key, parameter in old_params.items():
                name = f"parameter {key[0]} {key[1]}"
                if key not in new_params:
                    lost(op, name, "missing")
                    continue
                other = new_params[key]
                if other.get("required", False) and not parameter.get("required", False):
                    lost(op, name, "now required")
                if not _wider_or_same(_types(other.get("schema", {}), current),
                                      _types(parameter.get("schema", {}), BASELINE)):
                    lost(op, name, "accepts fewer types")
                old_enum = _resolve(parameter.get("schema", {}), BASELINE).get("enum")
                new_enum = _resolve(other.get("schema", {}), current).get("enum")
                if old_enum and new_enum is not None and not set(old_enum) <= set(new_enum):
                    lost(op, name, f"enum lost {sorted(set(old_enum) - set(new_enum))}")
            for key, parameter in new_params.items():
                if key not in old_params and parameter.get("required", False):
                    lost(op, f"parameter {key[0]} {key[1]}", "new and required")
            old_bodies, new_bodies = _body_schema(old), _body_schema(new)
            for media, schema in old_bodies.items():
                if media not in new_bodies:
                    lost(op, f"body {media}", "missing")
                    continue
                for what, detail in _fields(schema, new_bodies[media], current, answer=False):
                    lost(op, f"body field {what}", detail)
            if old.get("requestBody", {}).get("required") is False and \
                    new.get("requestBody", {}).get("required"):
                lost(op, "body", "now required")
            for status, answer in old["responses"].items():
                if not status.startswith("2"):
                    continue
                new_answer = new["responses"].get(status)
                if new_answer is None:
                    lost(op, f"answer {status}", "missing")
                    continue
                for media, entry in answer.get("content", {}).items():
                    if media not in new_answer.get("content", {}):
                        lost(op, f"answer {status} {media}", "missing")
                        continue
                    if media != "application/json":
                        continue
                    for what, detail in _fields(entry["schema"],
                                                new_answer["content"][media]["schema"], current,
                                                answer=True):
                        lost(op, f"answer field {what}", detail)
    return found


@pytest.mark.backends("sqlite")
def test_the_served_document_keeps_every_operation_of_the_baseline(client):
    """Paths, methods, parameters, required fields, success codes and answer keys are all kept."""
    current = client.get("/api/openapi.json").get_json()
    assert len(BASELINE["paths"]) >= 40
    assert _differences(current) == []


def test_the_comparison_catches_what_a_client_would_miss():
    """The comparison itself fails on each kind of loss (a copy of the baseline, edited)."""
    assert _differences(BASELINE) == []
    edits = {
        "operation": lambda d: d["paths"]["/api/v1/cards/{card_id}/consume"].pop("post"),
        "parameter": lambda d: d["paths"]["/api/v1/customers"]["get"]["parameters"].pop(0),
        "required": lambda d: d["components"]["schemas"]["Consume"]["required"].append("remark"),
        "success": lambda d: d["paths"]["/api/v1/customers"]["post"]["responses"].pop("201"),
        "answer key": lambda d: d["components"]["schemas"]["Card"]["properties"].pop("balance"),
        "answer type": lambda d: d["components"]["schemas"]["Card"]["properties"].update(
            balance={"type": "number"}),
    }
    for kind, edit in edits.items():
        copy = json.loads(json.dumps(BASELINE))
        edit(copy)
        assert _differences(copy), kind


@pytest.mark.backends("sqlite")
def test_a_backup_answer_says_where_its_copy_went(app, client, api_token, tmp_path):
    """Keys the baseline never listed are kept too: POST /api/v1/backups answers `copy`, what
    happened to the copy in BACKUP_COPY_DIR (an answer type that dropped it hid a failed copy)."""
    app.config["BACKUP_COPY_DIR"] = str(tmp_path / "usb")
    resp = client.post("/api/v1/backups", headers=api_token("boss", role="admin"))
    assert resp.status_code == 201
    assert resp.get_json()["copy"].startswith("已复制到")


def test_an_answer_that_would_drop_a_service_key_fails_under_test(app):
    """A service that gains a key its answer type does not declare fails the suite (under
    TESTING) instead of losing the key without a sound; in a shop the answer goes out without."""
    from crm.api.cards import MoneyResult

    with app.app_context():
        with pytest.raises(AssertionError, match="new_key"):
            MoneyResult.from_service({"card_id": 1, "balance": 100, "new_key": 1})
        app.config["TESTING"] = False
        try:
            answer = MoneyResult.from_service({"card_id": 1, "balance": 100, "new_key": 1})
        finally:
            app.config["TESTING"] = True
        assert answer.model_dump(mode="json", exclude_unset=True) == {"card_id": 1,
                                                                     "balance": "1.00"}
