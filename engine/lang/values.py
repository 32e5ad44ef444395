"""How condition values are represented at evaluation time, shared by both compilers.

The SQL compiler and the Python closures must agree on every input, so both work on the
same plain representation:

| type      | value                                                   |
|-----------|---------------------------------------------------------|
| number    | int, or float when not whole (SQLite REAL semantics)    |
| money     | int fen (float only for avg)                            |
| string    | str                                                     |
| bool      | bool (SQLite 1/0)                                       |
| timestamp | int microseconds since the Unix epoch                   |
| date      | int days since 1970-01-01 (the calendar date itself)    |
| duration  | int microseconds                                        |
| list<T>   | tuple of T                                              |
| unknown   | None                                                    |

Literals are converted once, at compile time, by `literal()`.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from ..timeutil import to_micros
from .typed import DATE, DURATION, MONEY, TIMESTAMP

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
EPOCH_DATE = date(1970, 1, 1)


def number(d: Decimal) -> int | float:
    """Decimal literal -> int when whole, else float (what SQLite computes with)."""
    return int(d) if d == d.to_integral_value() else float(d)


def yuan_to_fen(d: Decimal | int | float) -> int | float:
    fen = Decimal(str(d)) * 100
    return int(fen) if fen == fen.to_integral_value() else float(fen)


def date_to_days(d: date) -> int:
    return (d - EPOCH_DATE).days


def days_to_date(n: int) -> date:
    return EPOCH_DATE + timedelta(days=n)


def literal(value: Any, type_: str, as_money: bool = False) -> Any:
    """A typed literal's evaluation value. `as_money`: a number compared with money (yuan)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return yuan_to_fen(value) if as_money or type_ == MONEY else number(value)
    if type_ == DURATION and isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    if type_ == TIMESTAMP and isinstance(value, datetime):
        return to_micros(value)
    if type_ == DATE and isinstance(value, date):
        return date_to_days(value)
    return value


def local_midnight_us(days: int, tz: tzinfo) -> int:
    d = days_to_date(days)
    return to_micros(datetime(d.year, d.month, d.day, tzinfo=tz))


def fixed_offset_us(tz: tzinfo, start_year: int = 2000, end_year: int = 2100) -> int | None:
    """The zone's UTC offset in microseconds if it never changes in [start_year, end_year)
    (Asia/Shanghai: +8 h), else None (the SQL side then calls back into Python)."""
    offsets = set()
    for year in range(start_year, end_year):
        for month in (1, 4, 7, 10):
            off = datetime(year, month, 1, 12, tzinfo=tz).utcoffset()
            offsets.add(off)
            if len(offsets) > 1:
                return None
    (off,) = offsets
    assert off is not None
    return off // timedelta(microseconds=1)
