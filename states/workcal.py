"""Working days on China's official calendar, with make-up working days (调休) and overrides.

The published calendar comes from `chinesecalendar` (import name `chinese_calendar`), which
covers only the years whose State Council notice it has shipped (1.11.0: 2004–2026). For any
other year the answer is an estimate (Monday–Friday, minus the fixed-date holidays below) and a
`CalendarCoverageWarning` is issued once per year per process. Rows of `calendar_override` win
over both: they are how an administrator adds a new year's notice, or an ad-hoc holiday, before
the package catches up.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from functools import lru_cache

import chinese_calendar
from sqlmodel import Session, select

from states.models import CalendarOverride
from states.timeutil import ONE_DAY, end_of_local_day, local_date

logger = logging.getLogger(__name__)

#: First and last year `chinese_calendar` has data for (the same bounds it validates against).
COVERED_YEARS: tuple[int, int] = (
    min(chinese_calendar.holidays).year,
    max(chinese_calendar.holidays).year,
)

#: Statutory holidays on fixed solar dates (as revised in 2025), used only for years the package
#: does not cover. Lunar holidays and the bridging days of each year's notice cannot be estimated.
FIXED_HOLIDAYS: frozenset[tuple[int, int]] = frozenset(
    [(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)]
)

_warned_years: set[int] = set()
_warned_lock = threading.Lock()


class CalendarCoverageWarning(UserWarning):
    """A date fell in a year with no official holiday data; the answer is an estimate."""


def covered(year: int) -> bool:
    """Whether `chinese_calendar` has official data for `year`.

    Only the package's coverage counts: overrides for a year do not make it covered, since a
    handful of override rows rarely amount to a whole year's notice.
    """
    return COVERED_YEARS[0] <= year <= COVERED_YEARS[1]


def uncovered_years(years: Iterable[int]) -> list[int]:
    """Return the sorted distinct years of `years` that `covered` rejects."""
    return sorted({year for year in years if not covered(year)})


def coverage_message(year: int) -> str:
    """The bilingual notice shown when `year` has no official data."""
    zh = (
        f"{year} 年的法定节假日数据尚未发布/未收录，按周一至周五推算"
        "（仅按元旦、五一、国庆的法定固定日期），春节等农历节日及调休未计入；"
        "可用 `dangjian calendar override` 补充"
    )
    en = (
        f"No official holiday data for {year}: assuming Monday–Friday working days minus "
        "1 Jan, 1–2 May and 1–3 Oct; lunar holidays and make-up working days are not included. "
        "Add them with `dangjian calendar override`."
    )
    return f"{zh} / {en}"


def reset_warnings() -> None:
    """Forget which years have been warned about, so the next use warns again (for tests)."""
    with _warned_lock:
        _warned_years.clear()


def warned_years() -> list[int]:
    """The uncovered years this process has met (and warned about) so far, sorted."""
    with _warned_lock:
        return sorted(_warned_years)


def _warn_uncovered(year: int) -> None:
    with _warned_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    message = coverage_message(year)
    logger.warning(message)
    warnings.warn(message, CalendarCoverageWarning, stacklevel=3)


@lru_cache(maxsize=8192)
def _official_workday(day: date) -> bool:
    # Cached: the package re-derives its year bounds on every call.
    return bool(chinese_calendar.is_workday(day))


def _estimated_workday(day: date) -> bool:
    return day.weekday() < 5 and (day.month, day.day) not in FIXED_HOLIDAYS


class WorkCalendar:
    """Working-day arithmetic: overrides first, then the official calendar, then an estimate."""

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        self.overrides: dict[date, bool] = dict(overrides or {})

    def is_workday(self, day: date) -> bool:
        """Whether `day` is a working day (warns once per year if the answer is estimated)."""
        if day in self.overrides:
            return self.overrides[day]
        if covered(day.year):
            try:
                return _official_workday(day)
            except NotImplementedError:
                pass  # the package disagrees with its own bounds: estimate rather than crash
        _warn_uncovered(day.year)
        return _estimated_workday(day)

    def next_workday(self, day: date) -> date:
        """The first working day strictly after `day`."""
        day += ONE_DAY
        while not self.is_workday(day):
            day += ONE_DAY
        return day

    def add_working_days(self, start: date, n: int) -> date:
        """The date `n` working days after `start`, which is not counted.

        `n == 0` gives `start` if it is a working day, else the next working day.
        """
        if n < 0:
            raise ValueError("n must not be negative")
        if n == 0:
            return start if self.is_workday(start) else self.next_workday(start)
        day = start
        for _ in range(n):
            day = self.next_workday(day)
        return day

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b]; negative (the count in (b, a]) when b < a."""
        if b < a:
            return -self.working_days_between(b, a)
        count = 0
        day = a + ONE_DAY
        while day <= b:
            count += self.is_workday(day)
            day += ONE_DAY
        return count


def load_calendar(session: Session) -> WorkCalendar:
    """Build a calendar from every `calendar_override` row (the table is small)."""
    rows = session.exec(select(CalendarOverride)).all()
    return WorkCalendar({row.day: row.is_workday for row in rows})


#: Calendars kept per database for the command path: (loaded at, calendar), by database URL.
_CACHE: dict[str, tuple[float, WorkCalendar]] = {}
#: How long a cached calendar is trusted (an override set by another process shows after this).
CACHE_SECONDS = 30.0


def cached_calendar(session: Session) -> WorkCalendar:
    """`load_calendar`, kept per process for `CACHE_SECONDS`; `set_override` here refreshes it."""
    key = str(session.get_bind().engine.url)
    hit = _CACHE.get(key)
    now = time.monotonic()
    if hit is None or now - hit[0] > CACHE_SECONDS:
        hit = _CACHE[key] = (now, load_calendar(session))
    return hit[1]


def set_override(session: Session, *, day: date, is_workday: bool, note: str | None) -> None:
    """Insert or update the override for `day`; flushes, the caller commits."""
    _CACHE.clear()
    row = session.get(CalendarOverride, day)
    if row is None:
        row = CalendarOverride(day=day, is_workday=is_workday, note=note)
    else:
        row.is_workday = is_workday
        row.note = note
    session.add(row)
    session.flush()


def deadline_after_working_days(entered_at: datetime, n: int, cal: WorkCalendar) -> datetime:
    """UTC instant of 23:59:59 Asia/Shanghai on the n-th working day after the local entry date."""
    return end_of_local_day(cal.add_working_days(local_date(entered_at), n))
