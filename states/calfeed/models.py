"""The calendar feed table: one current feed address per user; replacing it revokes the old."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow


class CalendarFeed(SQLModel, table=True):
    """A user's personal deadline feed (`/calendar/<token>.ics`)."""

    __tablename__ = "calendar_feed"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    nonce: str = Field(sa_type=String(64), nullable=False, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
