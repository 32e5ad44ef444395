"""Cron strings mean what crontab(5) says, whatever a scheduler library's convention is:
0 and 7 are Sunday, names work, a day matches if EITHER restricted day field matches."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.cron import CronError, parse

SHANGHAI = ZoneInfo("Asia/Shanghai")
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30, no DST either


def days(spec: str, year: int, month: int) -> list[int]:
    """Days of the month on which a daily-time cron spec matches (checked at 00:00)."""
    c = parse(spec)
    out = []
    d = date(year, month, 1)
    while d.month == month:
        if c.matches(datetime(d.year, d.month, d.day, 0, 0)):
            out.append(d.day)
        d += timedelta(days=1)
    return out


def month_days(year: int, month: int, keep: object) -> list[int]:
    d, out = date(year, month, 1), []
    while d.month == month:
        if keep(d):  # type: ignore[operator]
            out.append(d.day)
        d += timedelta(days=1)
    return out


@pytest.mark.parametrize("spec", ["0 10 * * 0", "0 10 * * 7", "0 10 * * sun", "0 10 * * SUN",
                                  "0 10 * * 7-7", "0 10 * * 6-7"])
def test_sunday_is_0_and_7(spec: str) -> None:
    sunday = datetime(2026, 11, 15, 10, 0)
    assert sunday.isoweekday() == 7
    c = parse(spec)
    assert c.matches(sunday)
    assert not c.matches(sunday.replace(hour=11))
    assert not c.matches(sunday - timedelta(days=2))  # a Friday


def test_weekday_fields_fold_7_into_0() -> None:
    assert parse("0 0 * * 7").weekdays == frozenset({0})
    assert parse("0 0 * * 5-7").weekdays == frozenset({5, 6, 0})
    assert parse("0 0 * * 0-7").weekdays == frozenset(range(7))
    assert parse("0 0 * * 1/2").weekdays == frozenset({1, 3, 5, 0})  # 1-7/2, as cronie reads it


@pytest.mark.parametrize("spec, minutes", [
    ("*/15 * * * *", {0, 15, 30, 45}),
    ("1-10/3 * * * *", {1, 4, 7, 10}),
    ("5/20 * * * *", {5, 25, 45}),
    ("0,30,59 * * * *", {0, 30, 59}),
    ("10-12,40 * * * *", {10, 11, 12, 40}),
    ("* * * * *", set(range(60))),
], ids=["step", "range-step", "start-step", "list", "range-and-list", "star"])
def test_minute_fields(spec: str, minutes: set[int]) -> None:
    assert parse(spec).minutes == frozenset(minutes)


def test_names_are_case_insensitive_and_work_in_ranges_and_lists() -> None:
    c = parse("0 9 * JAN,jul Mon-FRI")
    assert c.months == frozenset({1, 7}) and c.weekdays == frozenset({1, 2, 3, 4, 5})
    assert parse("0 9 * jan-mar *").months == frozenset({1, 2, 3})
    assert parse("0 9 * * sat,sun").weekdays == frozenset({6, 0})


@pytest.mark.parametrize("macro, spec", [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"),
                                         ("@midnight", "0 0 * * *"), ("@weekly", "0 0 * * 0"),
                                         ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
                                         ("@annually", "0 0 1 1 *")])
def test_macros(macro: str, spec: str) -> None:
    a, b = parse(macro), parse(spec)
    assert (a.minutes, a.hours, a.days, a.months, a.weekdays) == \
        (b.minutes, b.hours, b.days, b.months, b.weekdays)


def test_both_day_fields_restricted_means_either_matches() -> None:
    """crontab(5): `0 0 13 * 5` runs on every 13th AND on every Friday, not only Friday the 13th."""
    got = days("0 0 13 * 5", 2026, 12)  # 2026-12-13 is a Sunday
    assert got == month_days(2026, 12, lambda d: d.day == 13 or d.isoweekday() == 5)
    assert got == [4, 11, 13, 18, 25]
    assert days("0 0 1-7 * mon", 2026, 11) == month_days(
        2026, 11, lambda d: d.day <= 7 or d.isoweekday() == 1)


def test_one_day_field_restricted_means_only_it_counts() -> None:
    assert days("0 0 13 * *", 2026, 11) == [13]
    assert days("0 0 * * 5", 2026, 11) == month_days(2026, 11, lambda d: d.isoweekday() == 5)


def test_a_day_field_starting_with_star_is_not_restricted() -> None:
    """crontab(5): 'restricted (i.e., don't start with *)'. So `*/2` days AND Mondays."""
    assert days("0 0 */2 * 1", 2026, 11) == month_days(
        2026, 11, lambda d: d.day % 2 == 1 and d.isoweekday() == 1)
    assert days("0 0 1 * */2", 2026, 11) == month_days(
        2026, 11, lambda d: d.day == 1 and d.isoweekday() % 7 in (0, 2, 4, 6))


@pytest.mark.parametrize("spec, offset, fragment", [
    ("0 24 * * *", 2, "hour 24 is out of range"),
    ("60 * * * *", 0, "minute 60 is out of range"),
    ("* * 0 * *", 4, "day of month 0 is out of range"),
    ("* * 32 * *", 4, "day of month 32"),
    ("* * * 13 *", 6, "month 13 is out of range"),
    ("0 10 * * 8", 9, "(0 and 7 are Sunday)"),
    ("*/0 * * * *", 2, "not a valid step"),
    ("5-1 * * * *", 0, "runs backwards"),
    ("0 10 * * funday", 9, "`funday` is not a valid day of week"),
    ("0 10 * foo *", 7, "`foo` is not a valid month"),
    ("1,,2 * * * *", 2, "empty item"),
    ("0 10 * *", 0, "has 5 fields"),
    ("0 10 * * * *", 0, "found 6"),
    ("", 0, "found 0"),
    ("@every", 0, "unknown cron shorthand"),
    ("0 10 * * 1 # monday", 0, "found 7"),
], ids=lambda v: str(v))
def test_errors_say_what_and_where(spec: str, offset: int, fragment: str) -> None:
    with pytest.raises(CronError) as info:
        parse(spec)
    assert fragment in info.value.message
    assert info.value.offset == offset
    assert info.value.length >= 0


def test_error_offset_counts_leading_space() -> None:
    with pytest.raises(CronError) as info:
        parse("  0 25 * * *")
    assert info.value.offset == 4 and info.value.length == 2


# -- slots ----------------------------------------------------------------------------------------

def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, sec: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, sec, tzinfo=tz)


def test_slots_are_after_exclusive_until_inclusive_in_the_project_timezone() -> None:
    c = parse("0 10 * * *")
    after = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)   # 10:00 in Shanghai
    until = datetime(2026, 11, 4, 2, 0, tzinfo=timezone.utc)
    got = c.slots(after, until, SHANGHAI)
    assert got == [at(SHANGHAI, 2026, 11, d, 10, 0) for d in (2, 3, 4)]
    assert all(s.tzinfo == SHANGHAI for s in got)
    assert [s.astimezone(timezone.utc).hour for s in got] == [2, 2, 2]


def test_slots_in_another_fixed_offset_zone() -> None:
    c = parse("30 9 * * 1-5")
    got = c.slots(at(KOLKATA, 2026, 11, 1, 0, 0), at(KOLKATA, 2026, 11, 15, 0, 0), KOLKATA)
    assert len(got) == 10  # two working weeks
    assert all(s.isoweekday() <= 5 and (s.hour, s.minute) == (9, 30) for s in got)
    assert got[0].astimezone(timezone.utc) == datetime(2026, 11, 2, 4, 0, tzinfo=timezone.utc)


def test_slots_skip_seconds_and_stop_at_until() -> None:
    c = parse("* * * * *")
    got = c.slots(at(SHANGHAI, 2026, 11, 1, 10, 0, 30), at(SHANGHAI, 2026, 11, 1, 10, 3, 59),
                  SHANGHAI)
    assert [s.minute for s in got] == [1, 2, 3]
    assert c.slots(at(SHANGHAI, 2026, 11, 1, 10, 0), at(SHANGHAI, 2026, 11, 1, 11, 0),
                   SHANGHAI)[-1] == at(SHANGHAI, 2026, 11, 1, 11, 0)
    assert len(c.slots(at(SHANGHAI, 2026, 11, 1, 10, 0), at(SHANGHAI, 2026, 11, 1, 11, 0),
                       SHANGHAI)) == 60


def test_slots_cross_months_and_years() -> None:
    got = parse("0 0 1 * *").slots(at(SHANGHAI, 2026, 11, 15, 0, 0),
                                   at(SHANGHAI, 2027, 3, 1, 0, 0), SHANGHAI)
    assert got == [at(SHANGHAI, 2026, 12, 1, 0, 0), at(SHANGHAI, 2027, 1, 1, 0, 0),
                   at(SHANGHAI, 2027, 2, 1, 0, 0), at(SHANGHAI, 2027, 3, 1, 0, 0)]


def test_slots_leap_day_and_impossible_dates() -> None:
    leap = parse("0 12 29 2 *").slots(at(SHANGHAI, 2026, 1, 1, 0, 0),
                                      at(SHANGHAI, 2030, 1, 1, 0, 0), SHANGHAI)
    assert leap == [at(SHANGHAI, 2028, 2, 29, 12, 0)]
    assert parse("0 0 31 2 *").slots(at(SHANGHAI, 2026, 1, 1, 0, 0),
                                     at(SHANGHAI, 2030, 1, 1, 0, 0), SHANGHAI) == []


def test_slots_use_the_or_rule_and_sunday_7() -> None:
    got = parse("0 8 13 * 7").slots(at(SHANGHAI, 2026, 11, 1, 0, 0),
                                    at(SHANGHAI, 2026, 12, 1, 0, 0), SHANGHAI)
    assert [s.day for s in got] == month_days(2026, 11,
                                              lambda d: d.day == 13 or d.isoweekday() == 7)


def test_slots_limit() -> None:
    got = parse("* * * * *").slots(at(SHANGHAI, 2026, 1, 1, 0, 0),
                                   at(SHANGHAI, 2027, 1, 1, 0, 0), SHANGHAI, limit=5)
    assert len(got) == 5 and got[-1] == at(SHANGHAI, 2026, 1, 1, 0, 5)


def test_slots_empty_when_until_is_not_after() -> None:
    c = parse("* * * * *")
    t = at(SHANGHAI, 2026, 11, 1, 10, 0)
    assert c.slots(t, t, SHANGHAI) == []
    assert c.slots(t, t - timedelta(hours=1), SHANGHAI) == []
