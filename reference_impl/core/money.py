"""Money as integer minor units of an ISO 4217 currency.

Floats never enter the ledger: a float amount is a rounding bug waiting to happen, so parsing
rejects it outright instead of converting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, Inexact, InvalidOperation, localcontext

from reference_impl.core.errors import InvalidAmount, UnknownCurrency

MAX_AMOUNT = 2**63 - 1
"""The largest amount in minor units (a signed 64-bit integer, as most ledgers store it)."""

# ISO 4217 active codes and their minor-unit exponents.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
        "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
        "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
        "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB "
        "PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC "
        "SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST "
        "XCD YER ZAR ZMW ZWL".split(),
        2,
    ),
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int


def currency(code: object) -> Currency:
    """The ISO 4217 currency for `code`, or UnknownCurrency."""
    if not isinstance(code, str) or code not in _EXPONENTS:
        raise UnknownCurrency(f"currency: {code!r} is not an ISO 4217 currency code")
    return Currency(code, _EXPONENTS[code])


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in _EXPONENTS


def check_amount(value: object, field: str = "amount") -> int:
    """An amount in minor units: a true int (not bool, not float), 1 <= value <= MAX_AMOUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(
            f"{field}: must be an integer number of minor units, got {type(value).__name__}"
        )
    if value < 1:
        raise InvalidAmount(f"{field}: must be at least 1 minor unit, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidAmount(f"{field}: must be at most 2^63-1 minor units, got {value}")
    return value


def parse_major(text: str, code: str, field: str = "amount") -> int:
    """Parse a decimal string in major units ("12.34" EUR) to minor units (1234).

    More decimals than the currency has is an error, never a rounding.
    """
    cur = currency(code)
    if not isinstance(text, str):
        raise InvalidAmount(f"{field}: must be a decimal string, got {type(text).__name__}")
    try:
        # Decimal() accepts digit separators ("1_000"); an amount with them is a typo, not money.
        if "_" in text:
            raise InvalidOperation
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidAmount(f"{field}: {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise InvalidAmount(f"{field}: {text!r} is not a finite number")
    # Decimal arithmetic rounds to the context precision and overflows past its exponent range,
    # so bound the magnitude exactly first (10**19 > MAX_AMOUNT), then scale with Inexact trapped.
    if value.adjusted() + cur.exponent >= 19:
        raise InvalidAmount(f"{field}: {text!r} is out of range (1 to 2^63-1 minor units)")
    too_many_decimals = InvalidAmount(
        f"{field}: {text!r} has more than {cur.exponent} decimals for {code}"
    )
    with localcontext() as ctx:
        ctx.traps[Inexact] = True
        try:
            minor = value.scaleb(cur.exponent)
        except Inexact:
            raise too_many_decimals from None
    if minor != minor.to_integral_value():
        raise too_many_decimals
    return check_amount(int(minor), field)


def format_minor(amount: int, code: str) -> str:
    """Minor units as a decimal string in major units: format_minor(1234, "EUR") == "12.34"."""
    exponent = currency(code).exponent
    return str(Decimal(amount).scaleb(-exponent)) if exponent else str(amount)
