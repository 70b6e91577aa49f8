"""One declaration per API operation (issue 18.1).

    @operation("POST", "/v1/cards/<int:card_id>/consume", "消费", "consume", body=Consume,
               key=True, answers={201: (MoneyResult, "已办理（或同一编号的第一次结果）")},
               errors=MONEY_ERRORS)
    @requires("consume")
    def consume(card_id, body: Consume, key: str): ...

The declaration is the route (registered on the API blueprint), the typed input (`body`, `query`,
`form`, the `Idempotency-Key` header), the answers by status with their types, the errors and
the permission (the view's @requires / @admin_required mark). From it come:
- the operation's entry in the OpenAPI document (crm.api.openapi), with pydantic's JSON Schema
  of each type as a component;
- the request check: crm.api.contract validates every request against that entry before the
  view runs and refuses in Chinese naming the field (its messages are the one translation);
- the parsed input the view receives (`body=`, `query=`, `key=`), money already in fen (a
  multipart `form` is documented here and read by crm.http's upload checks, page and API);
- the answer: a view returns an Output model (or `(model, status)`); it is written as JSON with
  only the fields the view set, money as yuan strings. File answers (`File(...)`) are Responses.

Why not spectree or flask-openapi3 (docs/api-declaration-library.md has the measurements): both
parse the body leniently themselves (a malformed body becomes "missing field", our depth and
surrogate checks are skipped), report pydantic's English errors that would need a second
translation beside the contract's, document only JSON answers (our xlsx/pdf/zip need patching),
and cost 0.15–0.4 ms per request; spectree has had two breaking majors in a year. pydantic gives
the typed schemas and the serializing; the registry below is what is left, and it is small.
"""
import functools
import inspect
from dataclasses import dataclass, field

import pydantic
from flask import jsonify, request

from crm.api import PUBLIC_ENDPOINTS, bp, contract
from crm.errors import ValidationError


@dataclass(frozen=True)
class File:
    """A file answer (Excel, PDF, zip) of this media type."""

    media: str


@dataclass
class Declared:
    method: str
    rule: str  # as registered on the blueprint: "/v1/cards/<int:card_id>/consume"
    summary: str
    operation_id: str
    body: type | None = None
    form: type | None = None  # multipart: documented; the view reads it with crm.http's upload checks
    query: type | None = None
    key: bool = False
    public: bool = False
    answers: dict = field(default_factory=dict)  # status -> (Output type | File | None, description)
    errors: dict = field(default_factory=dict)  # status -> description
    path: dict = field(default_factory=dict)  # path parameter -> (schema, description), non-int


OPERATIONS: list[Declared] = []

# What many operations answer besides their own errors (a path id's 404 and the contract's
# refusals are added to every operation by crm.api.openapi).
BODY_ERRORS = {400: "请求体不是 JSON 对象", 422: "字段值不合规"}


def operation(method, rule, summary, operation_id, **details):
    """Declare and route one API operation (see the module docstring)."""
    declared = Declared(method, rule, summary, operation_id, **details)

    def decorate(view):
        # A view that reads its query through a parser the pages share (crm.http.period_arg)
        # does not take `query`; the declaration still documents and checks it.
        typed_query = declared.query is not None and \
            "query" in inspect.signature(view).parameters

        @functools.wraps(view)
        def run(**kwargs):
            if declared.body is not None:
                kwargs["body"] = _parse(declared.body, contract.json_object(), "字段")
            if typed_query:
                kwargs["query"] = _parse(declared.query, request.args.to_dict(), "参数")
            if declared.key:
                kwargs["key"] = request.headers.get("Idempotency-Key", "")
            return _answer(view(**kwargs), declared)

        if declared.public != (f"{bp.name}.{run.__name__}" in PUBLIC_ENDPOINTS):
            raise RuntimeError(f"{run.__name__}: public=True and crm.api.PUBLIC_ENDPOINTS disagree")
        bp.add_url_rule(rule, view_func=run, methods=[method])
        OPERATIONS.append(declared)
        return run

    return decorate


def _parse(model, data, what):
    """The typed input. The contract has checked the types already; a value only a type's own
    rule refuses (an amount's format) raises its Chinese ValidationError from inside pydantic."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:  # a rule the document cannot say: still named
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise ValidationError(f"{what} {where} 的值不符合接口文档", code=f"invalid_{where}",
                              field=where) from None


def _success(declared):
    return min((s for s in declared.answers if 200 <= s < 300), default=200)


def _answer(value, declared):
    status = None
    if isinstance(value, tuple):
        value, status = value
    if isinstance(value, pydantic.BaseModel):
        response = jsonify(value.model_dump(mode="json", exclude_unset=True, by_alias=True))
        response.status_code = status or _success(declared)
        return response
    return value if status is None else (value, status)
