"""The API's value types, written once: money in and out, ids, text, payment methods.

Each is a pydantic type whose JSON Schema goes into the OpenAPI document and whose parsing and
serializing run in the declared operations (crm.api.declare). Money is integer fen inside and a
yuan string with two decimals outside; the input type and the output type are kept apart, so an
internal 1230 fen can never be read back as 1230 yuan.
"""
import dataclasses
from datetime import date, datetime
from typing import Annotated, Literal

from flask import current_app
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    ValidationInfo,
    WithJsonSchema,
)

from crm.money import format_fen, parse_amount, parse_optional

# Ids are 32-bit: the app's URL converter refuses larger numbers (404) instead of overflowing
# the database driver.
MAX_ID = 2**31 - 1
MAX_PAGE = 100000

YUAN_SCHEMA = {"type": "string", "pattern": "^-?[0-9]+[.][0-9]{2}$", "example": "100.00"}
AMOUNT_SCHEMA = {"oneOf": [{"type": "string", "example": "100.00"}, {"type": "number"}],
                 "description": "元，最多两位小数，大于 0，不超过单笔上限"}
BONUS_SCHEMA = {**AMOUNT_SCHEMA, "description": "元，最多两位小数，可为 0，不超过单笔上限"}


def _fen(value, info: ValidationInfo):
    """A positive yuan amount ("12.30" or 12.3) as fen; crm.money's rule and Chinese messages.
    The per-operation limit is the service's (crm.services.cards, recharge_rules)."""
    return parse_amount(value, None, info.field_name)


def _fen_or_none(value, info: ValidationInfo):
    """An amount that may be left out (None or ""): then None, else as _fen."""
    if value is None or value == "":
        return None
    return _fen(value, info)


def _fen_or_zero(value, info: ValidationInfo):
    """An amount that may be zero or left out (a bonus): None, 0 or fen."""
    return parse_optional(value, None, info.field_name)


# Money read from a request: a yuan string or number, parsed into fen.
Amount = Annotated[int, BeforeValidator(_fen), WithJsonSchema(AMOUNT_SCHEMA)]
OptionalAmount = Annotated[int | None, BeforeValidator(_fen_or_none), WithJsonSchema(AMOUNT_SCHEMA)]
Bonus = Annotated[int | None, BeforeValidator(_fen_or_zero), WithJsonSchema(BONUS_SCHEMA)]

# Money in an answer: integer fen given by a service, written as "12.30".
Yuan = Annotated[int, Strict(), PlainSerializer(format_fen, return_type=str),
                 WithJsonSchema(YUAN_SCHEMA)]

# A moment as the API writes it: "2026-12-01 09:30:00" (local time, as the shop's clock shows).
Stamp = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(" "), return_type=str),
                  WithJsonSchema({"type": "string"})]

# A day: "2026-12-01".
Day = Annotated[date, PlainSerializer(date.isoformat, return_type=str),
                WithJsonSchema({"type": "string", "format": "date"})]
# A date given in a request, kept as its text: the services' one date rule reads it
# (crm.services.validate.iso_date), with its Chinese message.
DateText = Annotated[str, Field(json_schema_extra={"format": "date"})]
# A file field of a multipart body (read by the upload checks of crm.http, page and API alike).
Upload = Annotated[object, WithJsonSchema({"type": "string", "format": "binary"})]

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Page = Annotated[int, Field(ge=1, le=MAX_PAGE, description="页码")]
Remark = Annotated[str, Field(max_length=200)]
PaymentMethod = Literal["cash", "wechat", "alipay", "card", "other"]


class Input(BaseModel):
    """A request body or query. The contract has checked the fields the document names before
    this parses; fields it does not name are ignored, as before."""

    model_config = ConfigDict(extra="ignore")


class Query(Input):
    """Query parameters. `as_args()` gives them back as the text the shared parsers of page and
    API read (crm.services.customers.parse_filters, crm.http's period and day arguments)."""

    def as_args(self):
        return {name: str(value) for name, value in self.model_dump(exclude_none=True).items()}


class Period(Query):
    """A report period; read through crm.http.period_arg, the pages' rule too."""

    start: DateText = Field(None, description="开始日期 YYYY-MM-DD（默认本月 1 日）")
    end: DateText = Field(None, description="结束日期 YYYY-MM-DD（含当天，默认今天）")
    preset: Literal["today", "week", "month", "last_month"] = Field(None, description="常用期间")


class Form(Input):
    """A multipart body: documented and checked as a whole by its operation's file check."""


class Output(BaseModel):
    """An answer. Only the fields a view sets are written (model_dump(exclude_unset=True)), so
    an optional key is absent rather than null, as the document says."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_service(cls, data):
        """The answer made from a service's dict or typed outcome (crm.services.outcomes). A key
        the answer does not declare would be dropped without a sound: under test (TESTING) that
        fails, so a service that gains a key makes its answer declare it; in a shop the answer
        goes out without it."""
        if dataclasses.is_dataclass(data):
            data = dataclasses.asdict(data)
        names = {f.alias or name for name, f in cls.model_fields.items()}
        unknown = sorted(set(data) - names)
        if unknown and current_app and current_app.config.get("TESTING"):
            raise AssertionError(f"{cls.__name__} does not declare {unknown}")
        return cls.model_validate(data)


class Ok(Output):
    ok: bool
