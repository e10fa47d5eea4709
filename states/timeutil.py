"""Time: stored in UTC, shown in Asia/Shanghai."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_local(value: datetime) -> datetime:
    """Return an aware datetime in Asia/Shanghai."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(SHANGHAI)


def local_date(value: datetime) -> date:
    """Return the Asia/Shanghai calendar date of an instant."""
    return to_local(value).date()


def end_of_local_day(day: date) -> datetime:
    """Return 23:59:59 Asia/Shanghai on `day`, as UTC: the instant a dated deadline falls."""
    local = datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)
    return local.astimezone(UTC)


def format_local(value: datetime | None) -> str:
    """Return `YYYY-MM-DD HH:MM` in Asia/Shanghai, or an em dash for none."""
    if value is None:
        return "—"
    return to_local(value).strftime("%Y-%m-%d %H:%M")


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that always stores UTC and always returns an aware UTC value."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


ONE_DAY = timedelta(days=1)
