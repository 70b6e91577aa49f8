"""The only place that turns yuan text into integer fen and back. Never a float."""
import re
import unicodedata
from decimal import Decimal

from crm.errors import ValidationError

# ASCII digits with at most two decimals; no sign, no exponent, no thousands separators. Not
# \d: in Python it takes any script's digits ("１２", "٣", "𝟏𝟐"), and int() reads them all.
_AMOUNT = re.compile(r"^([0-9]{1,12})(?:\.([0-9]{1,2}))?$")


def typed(value):
    """What a person typed into a form, with full-width characters made plain (NFKC): a Chinese
    input method in full-width mode types "１２.５０" for 12.50. Forms only; the API is strict."""
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


def parse_amount(value, max_fen=None, field="amount"):
    """Parse a positive yuan amount ("12.3", "12.34", 12, 12.5) into fen; raise ValidationError."""
    if isinstance(value, bool) or value is None:
        raise ValidationError("请输入金额", code="invalid_amount", field=field)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        # A JSON number: take its shortest decimal text, so 0.1 stays "0.1" and 1e-7 is refused.
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip().replace("，", ",")
    else:
        raise ValidationError("金额格式不正确", code="invalid_amount", field=field)
    if text.startswith("¥"):
        text = text[1:].strip()
    match = _AMOUNT.match(text)
    if not match:
        if re.match(r"^[0-9]+\.[0-9]{3,}$", text):
            raise ValidationError("金额最多两位小数", code="invalid_amount", field=field)
        if text.startswith("-"):
            raise ValidationError("金额必须大于 0", code="invalid_amount", field=field)
        raise ValidationError("金额格式不正确，请输入数字，例如 100 或 99.50",
                              code="invalid_amount", field=field)
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return check_fen(int(whole) * 100 + int(cents), max_fen, field)


def parse_optional(value, max_fen=None, field="bonus"):
    """An optional amount that may be zero: None when not given ("" or None), else fen ≥ 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip() in ("0", "0.0", "0.00"):
        return 0
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0
    return parse_amount(value, max_fen, field)


def check_fen(fen, max_fen=None, field="amount"):
    """An amount in fen must be a whole number above zero and within the per-operation limit."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise ValidationError("金额格式不正确", code="invalid_amount", field=field)
    if fen <= 0:
        raise ValidationError("金额必须大于 0", code="invalid_amount", field=field)
    if max_fen is not None and fen > max_fen:
        raise ValidationError(f"单笔金额不能超过 {format_fen(max_fen)} 元",
                              code="amount_too_large", field=field)
    return fen


def format_fen(fen):
    """Format fen as yuan with two decimals: 123456 → "1234.56", -5 → "-0.05"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def format_yuan(fen):
    """Format fen for people: 123456 → "¥1,234.56"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def yuan_decimal(fen):
    """Fen as an exact Decimal of yuan, for spreadsheet cells: 123456 → Decimal("1234.56")."""
    return Decimal(fen) / 100
