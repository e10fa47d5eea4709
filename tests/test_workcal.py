"""Working-day arithmetic on the official calendar, overrides, and uncovered years."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime

import chinese_calendar
import pytest
from sqlmodel import Session

from states import workcal
from states.workcal import (
    CalendarCoverageWarning,
    WorkCalendar,
    covered,
    deadline_after_working_days,
    load_calendar,
    set_override,
    uncovered_years,
)

D = date


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    workcal.reset_warnings()
    yield
    workcal.reset_warnings()


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar({})


def _workdays(cal: WorkCalendar, first: date, last: date) -> list[date]:
    days = [date.fromordinal(o) for o in range(first.toordinal(), last.toordinal() + 1)]
    return [d for d in days if cal.is_workday(d)]


def test_coverage_matches_the_package() -> None:
    assert workcal.COVERED_YEARS == (2004, 2026)
    assert covered(2004) and covered(2024) and covered(2026)
    assert not covered(2003) and not covered(2027)
    assert uncovered_years([2031, 2024, 2027, 2031, 2003]) == [2003, 2027, 2031]
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(D(2027, 1, 4))


def test_national_day_2024_with_make_up_days(cal: WorkCalendar) -> None:
    assert cal.is_workday(D(2024, 9, 29))  # Sunday, make-up working day
    assert cal.is_workday(D(2024, 10, 12))  # Saturday, make-up working day
    assert not any(cal.is_workday(D(2024, 10, d)) for d in range(1, 8))
    assert not cal.is_workday(D(2024, 9, 28))  # an ordinary Saturday
    assert _workdays(cal, D(2024, 9, 28), D(2024, 10, 13)) == [
        D(2024, 9, 29),
        D(2024, 9, 30),
        *[D(2024, 10, d) for d in range(8, 13)],
    ]


def test_spring_festival_2025_agrees_with_the_package(cal: WorkCalendar) -> None:
    # Package data: 2025-01-28..02-04 off; Sunday 01-26 and Saturday 02-08 worked.
    off = [D(2025, 1, d) for d in range(28, 32)] + [D(2025, 2, d) for d in range(1, 5)]
    assert all(chinese_calendar.get_holiday_detail(d) == (True, "Spring Festival") for d in off)
    assert not any(cal.is_workday(d) for d in off)
    assert cal.is_workday(D(2025, 1, 26)) and cal.is_workday(D(2025, 2, 8))
    assert cal.is_workday(D(2025, 1, 27)) and cal.is_workday(D(2025, 2, 5))


def test_add_working_days_across_holidays(cal: WorkCalendar) -> None:
    assert cal.add_working_days(D(2024, 9, 27), 1) == D(2024, 9, 29)
    assert cal.add_working_days(D(2024, 9, 30), 1) == D(2024, 10, 8)
    assert cal.add_working_days(D(2024, 9, 27), 3) == D(2024, 10, 8)
    assert cal.add_working_days(D(2025, 1, 24), 3) == D(2025, 2, 5)
    assert cal.add_working_days(D(2025, 1, 27), 4) == D(2025, 2, 8)  # a make-up Saturday
    # Start on a holiday: it is not counted either way.
    assert cal.add_working_days(D(2024, 10, 3), 1) == D(2024, 10, 8)
    assert cal.add_working_days(D(2024, 10, 3), 2) == D(2024, 10, 9)


def test_zero_working_days_and_next_workday(cal: WorkCalendar) -> None:
    assert cal.add_working_days(D(2024, 9, 30), 0) == D(2024, 9, 30)
    assert cal.add_working_days(D(2024, 10, 1), 0) == D(2024, 10, 8)
    assert cal.add_working_days(D(2024, 9, 28), 0) == D(2024, 9, 29)
    assert cal.next_workday(D(2024, 9, 30)) == D(2024, 10, 8)
    assert cal.next_workday(D(2024, 10, 11)) == D(2024, 10, 12)
    with pytest.raises(ValueError):
        cal.add_working_days(D(2024, 9, 30), -1)


def test_working_days_between(cal: WorkCalendar) -> None:
    assert cal.working_days_between(D(2024, 9, 28), D(2024, 10, 12)) == 7
    assert cal.working_days_between(D(2024, 10, 12), D(2024, 9, 28)) == -7
    assert cal.working_days_between(D(2024, 10, 1), D(2024, 10, 7)) == 0
    assert cal.working_days_between(D(2024, 10, 1), D(2024, 10, 1)) == 0
    for n in range(0, 25):
        start = D(2025, 1, 20)
        assert cal.working_days_between(start, cal.add_working_days(start, n)) == n


def test_overrides_win_over_the_package() -> None:
    cal = WorkCalendar(
        {
            D(2024, 10, 8): False,  # ad-hoc extra holiday
            D(2024, 10, 12): False,  # make-up day cancelled
            D(2024, 10, 13): True,  # Sunday made a working day
            D(2024, 10, 3): True,  # a holiday worked
        }
    )
    assert not cal.is_workday(D(2024, 10, 8))
    assert not cal.is_workday(D(2024, 10, 12))
    assert cal.is_workday(D(2024, 10, 13))
    assert cal.is_workday(D(2024, 10, 3))
    assert cal.add_working_days(D(2024, 9, 30), 1) == D(2024, 10, 3)
    assert cal.add_working_days(D(2024, 10, 3), 1) == D(2024, 10, 9)
    assert cal.working_days_between(D(2024, 10, 8), D(2024, 10, 14)) == 5  # 9,10,11,13,14


def test_uncovered_year_warns_once_and_estimates(
    cal: WorkCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="states.workcal")
    with pytest.warns(CalendarCoverageWarning) as record:
        assert cal.is_workday(D(2031, 1, 6))  # Monday
        assert not cal.is_workday(D(2031, 1, 1))  # New Year's Day, a Wednesday
        assert not cal.is_workday(D(2031, 1, 4))  # Saturday
        assert not any(cal.is_workday(D(2031, 10, d)) for d in range(1, 4))
        assert cal.is_workday(D(2031, 10, 6))  # statutory days only: 1–3 Oct
        assert not cal.is_workday(D(2031, 5, 2))
        assert cal.add_working_days(D(2031, 9, 30), 1) == D(2031, 10, 6)
        assert cal.working_days_between(D(2031, 1, 3), D(2031, 1, 10)) == 5
    assert len(record) == 1
    message = str(record[0].message)
    assert "2031 年" in message and "No official holiday data for 2031" in message
    assert [r.message for r in caplog.records if r.name == "states.workcal"] == [message]
    assert workcal.warned_years() == [2031]


def test_each_uncovered_year_warns_separately(
    cal: WorkCalendar, recwarn: pytest.WarningsRecorder
) -> None:
    cal.working_days_between(D(2031, 12, 1), D(2032, 1, 31))
    cal.is_workday(D(2031, 6, 1))
    cal.is_workday(D(2024, 6, 3))  # covered: no warning
    years = [str(w.message)[:4] for w in recwarn.list if w.category is CalendarCoverageWarning]
    assert years == ["2031", "2032"]
    workcal.reset_warnings()
    with pytest.warns(CalendarCoverageWarning, match="2031"):
        cal.is_workday(D(2031, 6, 2))


def test_override_in_uncovered_year_does_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    cal = WorkCalendar({D(2031, 1, 25): True})  # a Saturday make-up day added by hand
    assert cal.is_workday(D(2031, 1, 25))
    assert not [w for w in recwarn.list if w.category is CalendarCoverageWarning]


def test_load_and_set_override(session: Session) -> None:
    assert load_calendar(session).overrides == {}
    set_override(session, day=D(2024, 10, 8), is_workday=False, note="临时放假")
    set_override(session, day=D(2024, 10, 13), is_workday=True, note=None)
    session.commit()
    set_override(session, day=D(2024, 10, 8), is_workday=True, note="取消放假")
    session.commit()
    session.expunge_all()
    cal = load_calendar(session)
    assert cal.overrides == {D(2024, 10, 8): True, D(2024, 10, 13): True}
    assert cal.is_workday(D(2024, 10, 13))
    row = session.get(workcal.CalendarOverride, D(2024, 10, 8))
    assert row is not None and row.note == "取消放假"


def test_set_override_flushes_without_committing(session: Session) -> None:
    set_override(session, day=D(2025, 2, 5), is_workday=False, note=None)
    assert load_calendar(session).overrides == {D(2025, 2, 5): False}
    session.rollback()
    assert load_calendar(session).overrides == {}


def test_deadline_after_working_days(cal: WorkCalendar) -> None:
    # 20:00 Shanghai on Monday 30 Sep 2024; the next working day is 8 Oct.
    entered = datetime(2024, 9, 30, 12, 0, tzinfo=UTC)
    assert deadline_after_working_days(entered, 1, cal) == datetime(
        2024, 10, 8, 15, 59, 59, tzinfo=UTC
    )
    assert deadline_after_working_days(entered, 0, cal) == datetime(
        2024, 9, 30, 15, 59, 59, tzinfo=UTC
    )


def test_deadline_uses_the_shanghai_date_of_entry(cal: WorkCalendar) -> None:
    # 17:00Z Friday 11 Oct is 01:00 Saturday 12 Oct in Shanghai, a make-up working day:
    # one working day after it is Monday 14 Oct (counting from the UTC date would give 12 Oct).
    entered = datetime(2024, 10, 11, 17, 0, tzinfo=UTC)
    assert deadline_after_working_days(entered, 1, cal) == datetime(
        2024, 10, 14, 15, 59, 59, tzinfo=UTC
    )
    assert deadline_after_working_days(entered, 0, cal) == datetime(
        2024, 10, 12, 15, 59, 59, tzinfo=UTC
    )
