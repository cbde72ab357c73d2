"""Cron schedules: parsing five-field expressions and finding the next run, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncline._errors import ConfigError
from syncline.jobs import Crons, CronSchedule, IntervalSchedule


def ms(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000.0


def iso(value: float) -> str:
    return datetime.fromtimestamp(value / 1000.0, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("* * * * *", "2026-11-25 10:00:30", "2026-11-25 10:01"),
        ("*/15 * * * *", "2026-11-25 10:00:00", "2026-11-25 10:15"),
        ("0 * * * *", "2026-11-25 10:59:59", "2026-11-25 11:00"),
        ("30 17 * * *", "2026-11-25 18:00:00", "2026-11-26 17:30"),
        ("0 9 * * mon", "2026-11-25 10:00:00", "2026-11-30 09:00"),  # the 25th is a Wednesday
        ("0 9 * * 7", "2026-11-25 10:00:00", "2026-11-29 09:00"),  # 7 is Sunday too
        ("0 0 31 * *", "2026-11-25 00:00:00", "2026-12-31 00:00"),  # November has no 31st
        ("0 0 29 feb *", "2026-03-01 00:00:00", "2028-02-29 00:00"),
        ("0 12 1 * 5", "2026-11-25 00:00:00", "2026-11-27 12:00"),  # day OR weekday
        ("5-10/5 1,3 * * *", "2026-11-25 02:00:00", "2026-11-25 03:05"),
    ],
)
def test_the_next_run_is_the_first_matching_minute_after_now(
    expression: str, now: str, expected: str
) -> None:
    assert iso(CronSchedule.parse(expression).next_run_ms(0, ms(now))) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "must have 5 fields"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("* 24 * * *", "hour 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month 0 is outside 1-31"),
        ("* * * 13 *", "month 13 is outside 1-12"),
        ("* * * * funday", "day-of-week 'funday' is not a number"),
        ("*/0 * * * *", "step must be >= 1"),
        ("5-1 * * * *", "range 5-1 is empty"),
        ("0 0 30 feb *", "never matches"),
    ],
)
def test_bad_expressions_are_refused_with_the_field_named(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CronSchedule.parse(expression).first_run_ms(ms("2026-01-01 00:00:00"))


def test_an_interval_keeps_its_phase_and_runs_once_after_missed_ticks() -> None:
    every_minute = IntervalSchedule(60)
    first = every_minute.first_run_ms(ms("2026-11-25 10:00:00"))
    assert iso(first) == "2026-11-25 10:01"
    # Ten ticks missed: the next run is the first tick after now, not ten catch-ups.
    assert iso(every_minute.next_run_ms(first, ms("2026-11-25 10:11:30"))) == "2026-11-25 10:12"
    assert iso(every_minute.next_run_ms(first, first)) == "2026-11-25 10:02"


def test_declarations_are_checked_when_made() -> None:
    crons = Crons()
    crons.daily("digest", "mail:digest", hour_utc=17, minute_utc=30)
    assert crons.jobs["digest"].schedule == CronSchedule.parse("30 17 * * *")
    with pytest.raises(ConfigError, match="declared twice"):
        crons.hourly("digest", "mail:digest", minute_utc=0)
    with pytest.raises(ConfigError, match="at least 1 second"):
        crons.interval("fast", "mail:digest", seconds=0.5)
    with pytest.raises(ConfigError, match="day_of_week must be one of"):
        crons.weekly("w", "mail:digest", day_of_week="someday", hour_utc=0, minute_utc=0)
    with pytest.raises(ConfigError, match="cron 'h': cron expression '61 \\* \\* \\* \\*'"):
        crons.hourly("h", "mail:digest", minute_utc=61)
