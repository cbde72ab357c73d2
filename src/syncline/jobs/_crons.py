"""``crons.py``: periodic jobs, declared next to the functions they run.

::

    from syncline import cron_jobs, internal

    crons = cron_jobs()
    crons.interval("clear presence", internal.presence.clear, minutes=5)
    crons.daily("digest", internal.mail.digest, {"kind": "daily"}, hour_utc=17, minute_utc=30)
    crons.cron("cleanup", "0 */6 * * *", internal.jobs.cleanup)

Times are UTC. ``hourly``, ``daily``, ``weekly`` and ``monthly`` are cron
expressions written for you; ``monthly`` on day 29-31 skips shorter months, as
cron does. After an outage a cron runs once for all the ticks it missed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncline._errors import ConfigError

_MAX_NAME = 128
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True)
class IntervalSchedule:
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"interval": self.seconds}

    def first_run_ms(self, now_ms: float) -> float:
        return now_ms + self.seconds * 1000.0

    def next_run_ms(self, previous_ms: float, now_ms: float) -> float:
        """The first tick after ``now_ms`` in the phase of ``previous_ms``."""
        step = self.seconds * 1000.0
        missed = max(math.floor((now_ms - previous_ms) / step) + 1, 1)
        return previous_ms + missed * step


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression (minute hour day-of-month month day-of-week), UTC."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday."""
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        if not isinstance(expression, str):
            raise ConfigError(f"cron expression must be a string, got {type(expression).__name__}")
        fields = expression.split()
        if len(fields) != 5:
            raise ConfigError(
                f"cron expression {expression!r} must have 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, 0, 7, "day-of-week", expression, names=_DAYS)
        return cls(
            expression=" ".join(fields),
            minutes=_field(minute, 0, 59, "minute", expression),
            hours=_field(hour, 0, 23, "hour", expression),
            days=_field(day, 1, 31, "day-of-month", expression),
            months=_field(month, 1, 12, "month", expression, names=_MONTH_NAMES, first=1),
            weekdays=frozenset(d % 7 for d in weekdays),
            any_day=day == "*",
            any_weekday=weekday == "*",
        )

    def to_json(self) -> dict[str, Any]:
        return {"cron": self.expression}

    def first_run_ms(self, now_ms: float) -> float:
        return self.next_run_ms(now_ms, now_ms)

    def next_run_ms(self, previous_ms: float, now_ms: float) -> float:
        """The first matching minute strictly after ``now_ms``."""
        t = datetime.fromtimestamp(now_ms / 1000.0, UTC).replace(second=0, microsecond=0)
        t += timedelta(minutes=1)
        limit = t + timedelta(days=366 * 8)  # every valid expression matches within this
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t.timestamp() * 1000.0
        raise ConfigError(f"cron expression {self.expression!r} never matches a date")

    def _day_matches(self, t: datetime) -> bool:
        weekday = t.isoweekday() % 7
        if self.any_day or self.any_weekday:
            return t.day in self.days and weekday in self.weekdays
        # Both restricted: either matches (as in Vixie cron).
        return t.day in self.days or weekday in self.weekdays


Schedule = IntervalSchedule | CronSchedule


def _field(
    text: str,
    low: int,
    high: int,
    what: str,
    expression: str,
    *,
    names: tuple[str, ...] = (),
    first: int = 0,
) -> frozenset[int]:
    def number(token: str) -> int:
        lowered = token.lower()
        for i, name in enumerate(names):
            if lowered in (name, name[:3]):
                return i + first
        if not token.isdigit():
            raise ConfigError(f"cron expression {expression!r}: {what} {token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise ConfigError(
                f"cron expression {expression!r}: {what} {value} is outside {low}-{high}"
            )
        return value

    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"([^/]+)(?:/(\d+))?", part)
        if match is None:
            raise ConfigError(f"cron expression {expression!r}: {what} {part!r} is malformed")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigError(f"cron expression {expression!r}: {what} step must be >= 1")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            start, end = number(a), number(b)
            if start > end:
                raise ConfigError(f"cron expression {expression!r}: {what} range {span} is empty")
        else:
            start = end = number(span)
            if step_text:
                end = high
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronJob:
    """One declared cron: what runs, with which arguments, when."""

    name: str
    ref: object
    args: dict[str, Any]
    schedule: Schedule
    path: str = ""
    """The function's path, set when the app loads (``ref`` resolved)."""


class Crons:
    """The crons of an app: build one with ``cron_jobs()`` in ``crons.py``."""

    def __init__(self) -> None:
        self.jobs: dict[str, CronJob] = {}

    def interval(
        self,
        name: str,
        ref: object,
        args: dict[str, Any] | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
    ) -> None:
        """Run every ``seconds + minutes + hours`` (at least one second); first one
        interval after the cron is deployed."""
        total = 0.0
        for amount, unit in ((seconds, 1), (minutes, 60), (hours, 3600)):
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
                raise ConfigError(f"cron {name!r}: interval amounts must be numbers >= 0")
            total += float(amount) * unit
        if not math.isfinite(total) or total < 1:
            raise ConfigError(f"cron {name!r}: the interval must be at least 1 second")
        self._add(name, ref, args, IntervalSchedule(total))

    def hourly(
        self, name: str, ref: object, args: dict[str, Any] | None = None, *, minute_utc: int
    ) -> None:
        self._add(name, ref, args, _parse(name, f"{minute_utc} * * * *"))

    def daily(
        self,
        name: str,
        ref: object,
        args: dict[str, Any] | None = None,
        *,
        hour_utc: int,
        minute_utc: int,
    ) -> None:
        self._add(name, ref, args, _parse(name, f"{minute_utc} {hour_utc} * * *"))

    def weekly(
        self,
        name: str,
        ref: object,
        args: dict[str, Any] | None = None,
        *,
        day_of_week: str,
        hour_utc: int,
        minute_utc: int,
    ) -> None:
        if not isinstance(day_of_week, str) or day_of_week.lower() not in _DAYS:
            raise ConfigError(f"cron {name!r}: day_of_week must be one of {', '.join(_DAYS)}")
        self._add(
            name, ref, args, _parse(name, f"{minute_utc} {hour_utc} * * {day_of_week.lower()}")
        )

    def monthly(
        self,
        name: str,
        ref: object,
        args: dict[str, Any] | None = None,
        *,
        day: int,
        hour_utc: int,
        minute_utc: int,
    ) -> None:
        self._add(name, ref, args, _parse(name, f"{minute_utc} {hour_utc} {day} * *"))

    def cron(
        self, name: str, expression: str, ref: object, args: dict[str, Any] | None = None
    ) -> None:
        """Run on a five-field cron expression, in UTC."""
        self._add(name, ref, args, _parse(name, expression))

    def _add(self, name: str, ref: object, args: object, schedule: Schedule) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
            raise ConfigError(f"cron name must be a non-empty string of at most {_MAX_NAME} chars")
        if name in self.jobs:
            raise ConfigError(f"cron {name!r} is declared twice")
        if args is not None and not isinstance(args, dict):
            raise ConfigError(f"cron {name!r}: args must be an object, got {type(args).__name__}")
        self.jobs[name] = CronJob(name, ref, dict(args or {}), schedule)


def _parse(name: str, expression: str) -> CronSchedule:
    try:
        return CronSchedule.parse(expression)
    except ConfigError as exc:
        raise ConfigError(f"cron {name!r}: {exc.message}") from None


def cron_jobs() -> Crons:
    """The object ``crons.py`` declares its crons on (``crons = cron_jobs()``)."""
    return Crons()
