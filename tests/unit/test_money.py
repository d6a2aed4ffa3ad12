"""Money: integer minor units, ISO 4217 exponents, floats and rounding refused everywhere."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.core.errors import InvalidAmount, InvalidInput, UnknownCurrency
from reference_impl.core.money import (
    MAX_AMOUNT,
    check_amount,
    currency,
    format_minor,
    is_currency,
    parse_major,
)


def test_max_amount_is_a_signed_64_bit_integer() -> None:
    assert MAX_AMOUNT == 9_223_372_036_854_775_807


@pytest.mark.parametrize("value", [1, 42, MAX_AMOUNT])
def test_check_amount_accepts_positive_integers_up_to_the_maximum(value: int) -> None:
    assert check_amount(value) == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (1.0, "integer"),
        (12.5, "integer"),
        (float("nan"), "integer"),
        (float("inf"), "integer"),
        (True, "integer"),
        (False, "integer"),
        (Decimal("1"), "integer"),
        (Fraction(1), "integer"),
        ("1", "integer"),
        (None, "integer"),
        (0, "at least 1"),
        (-1, "at least 1"),
        (-MAX_AMOUNT, "at least 1"),
        (MAX_AMOUNT + 1, "at most 2^63-1"),
        (2**64, "at most 2^63-1"),
    ],
)
def test_check_amount_rejects_with_a_message_naming_field_and_rule(
    value: object, rule: str
) -> None:
    with pytest.raises(InvalidAmount) as err:
        check_amount(value, "payment.amount")
    assert str(err.value).startswith("payment.amount: ")
    assert rule in str(err.value)


def test_invalid_amount_and_unknown_currency_are_the_callers_fault() -> None:
    assert issubclass(InvalidAmount, InvalidInput)
    assert issubclass(UnknownCurrency, InvalidInput)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("EUR", 2),
        ("USD", 2),
        ("GBP", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("CLF", 4),
    ],
)
def test_currency_exponents(code: str, exponent: int) -> None:
    cur = currency(code)
    assert (cur.code, cur.exponent) == (code, exponent)
    assert is_currency(code)


@pytest.mark.parametrize("code", ["", "eur", "EURO", "XXX", "ABC", None, 978, b"EUR"])
def test_unknown_currency(code: object) -> None:
    assert not is_currency(code)
    with pytest.raises(UnknownCurrency, match="currency"):
        currency(code)


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("12.34", "EUR", 1234),
        ("12.3", "EUR", 1230),
        ("12", "EUR", 1200),
        ("0.01", "EUR", 1),
        (" 7.50 ", "EUR", 750),
        ("12.340", "EUR", 1234),
        ("1.5e1", "EUR", 1500),
        ("1500", "JPY", 1500),
        ("1.000", "JPY", 1),
        ("1.234", "KWD", 1234),
        ("0.001", "KWD", 1),
        ("92233720368547758.07", "EUR", MAX_AMOUNT),
        ("9223372036854775807", "JPY", MAX_AMOUNT),
    ],
)
def test_parse_major(text: str, code: str, minor: int) -> None:
    assert parse_major(text, code) == minor


@pytest.mark.parametrize(
    ("text", "code", "rule"),
    [
        ("12.345", "EUR", "more than 2 decimals"),
        ("0.001", "EUR", "more than 2 decimals"),
        ("1.5", "JPY", "more than 0 decimals"),
        ("0.0001", "KWD", "more than 3 decimals"),
        # More significant digits than the default decimal context keeps: must not be rounded.
        ("1.0000000000000000000000000001", "EUR", "more than 2 decimals"),
        ("1.00000000000000000000000000000000000001", "EUR", "more than 2 decimals"),
        ("1e-999999999", "EUR", "more than 2 decimals"),
        ("NaN", "EUR", "finite"),
        ("sNaN", "EUR", "finite"),
        ("inf", "EUR", "finite"),
        ("-Infinity", "EUR", "finite"),
        ("", "EUR", "not a decimal"),
        ("12,34", "EUR", "not a decimal"),
        ("twelve", "EUR", "not a decimal"),
        ("1_000", "EUR", "not a decimal"),
        ("0", "EUR", "at least 1"),
        ("0.00", "EUR", "at least 1"),
        ("-1.00", "EUR", "at least 1"),
        ("92233720368547758.08", "EUR", "at most 2^63-1"),
        ("1e999999999", "EUR", "out of range"),
        ("-1e999999999", "EUR", "out of range"),
    ],
)
def test_parse_major_rejects(text: str, code: str, rule: str) -> None:
    with pytest.raises(InvalidAmount) as err:
        parse_major(text, code, "body.amount")
    assert str(err.value).startswith("body.amount: ")
    assert rule in str(err.value)


@pytest.mark.parametrize("value", [12.34, 12.0, 1, Decimal("12.34"), None])
def test_parse_major_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidAmount, match="decimal string"):
        parse_major(value, "EUR")  # type: ignore[arg-type]


def test_parse_major_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        parse_major("1.00", "XYZ")


@pytest.mark.parametrize(
    ("minor", "code", "text"),
    [
        (1234, "EUR", "12.34"),
        (1, "EUR", "0.01"),
        (100, "EUR", "1.00"),
        (1500, "JPY", "1500"),
        (1234, "KWD", "1.234"),
        (5, "KWD", "0.005"),
        (MAX_AMOUNT, "EUR", "92233720368547758.07"),
    ],
)
def test_format_minor(minor: int, code: str, text: str) -> None:
    assert format_minor(minor, code) == text


def test_format_minor_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        format_minor(1, "XYZ")


@given(
    minor=st.integers(min_value=1, max_value=MAX_AMOUNT),
    code=st.sampled_from(["JPY", "EUR", "KWD", "CLF"]),
)
def test_format_then_parse_round_trips(minor: int, code: str) -> None:
    assert parse_major(format_minor(minor, code), code) == minor
