"""Yuan text ⇄ integer fen: the only conversion, exact, with clear refusals."""
import pytest

from crm.errors import ValidationError
from crm.money import format_fen, format_yuan, parse_amount


@pytest.mark.parametrize("value,fen", [
    ("100", 10000), ("100.5", 10050), ("100.05", 10005), ("0.01", 1), (" 12.30 ", 1230),
    (12, 1200), (12.5, 1250), (0.1, 10), ("¥88", 8800), ("50000.00", 5000000),
])
def test_parse_amount(value, fen):
    """Accepted amounts become exact fen."""
    assert parse_amount(value, max_fen=5000000) == fen


@pytest.mark.parametrize("value,code,message", [
    ("0", "invalid_amount", "大于 0"), ("0.00", "invalid_amount", "大于 0"),
    ("-5", "invalid_amount", "大于 0"), ("1.234", "invalid_amount", "两位小数"),
    ("abc", "invalid_amount", "格式不正确"), ("", "invalid_amount", "格式不正确"),
    (None, "invalid_amount", "请输入金额"), (True, "invalid_amount", "请输入金额"),
    ("1e3", "invalid_amount", "格式不正确"), ("NaN", "invalid_amount", "格式不正确"),
    (0.1 + 0.2, "invalid_amount", "两位小数"), ([1], "invalid_amount", "格式不正确"),
    ("50000.01", "amount_too_large", "不能超过 50000.00"), ("1,000", "invalid_amount", "格式不正确"),
])
def test_parse_amount_refusals(value, code, message):
    """Zero, negative, three decimals, not a number, above the limit: refused with a reason."""
    with pytest.raises(ValidationError) as info:
        parse_amount(value, max_fen=5000000)
    assert info.value.code == code and message in info.value.message
    assert info.value.status == 422


@pytest.mark.parametrize("fen,text,yuan", [
    (0, "0.00", "¥0.00"), (1, "0.01", "¥0.01"), (123456, "1234.56", "¥1,234.56"),
    (-5, "-0.05", "-¥0.05"), (100000000, "1000000.00", "¥1,000,000.00"),
])
def test_format(fen, text, yuan):
    """Fen back to two-decimal yuan."""
    assert format_fen(fen) == text and format_yuan(fen) == yuan
