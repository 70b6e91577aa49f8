"""Shared checks for text typed by staff or read from a sheet: one rule, one place."""
import datetime
import re

from crm import clock
from crm.errors import ValidationError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text(value, label, field, max_length, required=False):
    """Trimmed text without control characters; markup is kept as typed (pages escape it)."""
    if value is None:
        value = ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"{label}必须是文字", code="invalid_type", field=field)
    value = _CONTROL.sub("", str(value)).strip()
    if required and not value:
        raise ValidationError(f"请填写{label}", code=f"missing_{field}", field=field)
    if len(value) > max_length:
        raise ValidationError(f"{label}最多 {max_length} 个字（现有 {len(value)} 个）",
                              code=f"invalid_{field}", field=field)
    return value


def ascii_int(value, default=None):
    """A whole number of ASCII digits (at most 18: within BIGINT); anything else the default.
    str.isdigit() alone takes "²" and "１", which int() then reads or refuses with a 500."""
    value = value if isinstance(value, str) else ""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else default


_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
PERIOD_FIRST, PERIOD_LAST = datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)


def iso_date(value, label, field):
    """A date of a query or report period: YYYY-MM-DD in ASCII digits, between 2000-01-01 and
    2099-12-31 (9999-12-31 made the day after it overflow: a 500)."""
    text = str(value).strip()
    try:
        day = datetime.date.fromisoformat(text) if _ISO_DATE.match(text) else None
    except ValueError:
        day = None
    if day is None:
        raise ValidationError(f"{label}格式不正确，请写成 2026-01-31", code=f"invalid_{field}",
                              field=field)
    if not PERIOD_FIRST <= day <= PERIOD_LAST:
        raise ValidationError(f"{label}须在 {PERIOD_FIRST} 至 {PERIOD_LAST} 之间",
                              code=f"invalid_{field}", field=field)
    return day


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y%m%d")


def date(value, label, field, allow_future=False):
    """A date from a form string, an ISO string or a spreadsheet cell; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime.datetime):
        value = value.date()
    if isinstance(value, str):
        raw = value.strip().split(" ")[0]
        for fmt in _DATE_FORMATS:
            try:
                value = datetime.datetime.strptime(raw, fmt).date()
                break
            except ValueError:
                continue
    if not isinstance(value, datetime.date):
        raise ValidationError(f"{label}格式不正确，请写成 2000-01-31", code=f"invalid_{field}",
                              field=field)
    if value.year < 1900 or (not allow_future and value > clock.today()):
        raise ValidationError(f"{label}不合理：{value.isoformat()}", code=f"invalid_{field}",
                              field=field)
    return value


def whole_number(value, label, field, low, high):
    """An integer in [low, high] from a form string or JSON number; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        value = "x"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValidationError(f"{label}必须是 {low}–{high} 之间的整数", code=f"invalid_{field}",
                              field=field)
    return number


def record_id(value, label, field):
    """A positive integer id from a form or JSON; None when empty."""
    return whole_number(value, label, field, 1, 2**31 - 1)
