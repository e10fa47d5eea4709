"""The roster's table: one row per member of a branch (and optionally of one 党小组)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

CATEGORIES = ("正式党员", "预备党员")
STATUSES = ("在册", "转出", "去世")
ACTIVE = "在册"


class Member(SQLModel, table=True):
    """A Party member on a branch's roster. No national ID numbers are ever stored."""

    __tablename__ = "member"
    __table_args__ = (
        Index("ix_member_org_status", "org_id", "status"),
        Index("ix_member_identity", "org_id", "name", "joined_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    group_org_id: int | None = Field(default=None, foreign_key="organisation.id")
    name: str = Field(sa_type=String(100), nullable=False)
    category: str = Field(sa_type=String(8), nullable=False)
    joined_on: date = Field(nullable=False)
    member_no: str | None = Field(default=None, sa_type=String(32), unique=True)
    phone: str | None = Field(default=None, sa_type=String(20))
    status: str = Field(default=ACTIVE, sa_type=String(8), nullable=False)
    status_on: date | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
