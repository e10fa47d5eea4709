"""The supervision tables: findings (督导意见) with a due date, and 通报 with their listed orgs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

FINDING_STATUSES = ("open", "answered", "closed")


class Finding(SQLModel, table=True):
    """A supervisor's finding on a run or an organisation, to be answered by a deadline."""

    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_status_due", "status", "due"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False, index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    text: str = Field(sa_type=String(2000), nullable=False)
    due: datetime = Field(sa_type=UTCDateTime, nullable=False)
    status: str = Field(default="open", sa_type=String(8), nullable=False)
    created_by: int = Field(foreign_key="app_user.id", nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    response: str | None = Field(default=None, sa_type=String(2000))
    responded_by: int | None = Field(default=None, foreign_key="app_user.id")
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalation_level: int = Field(default=0, nullable=False)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Circular(SQLModel, table=True):
    """A 通报 issued to a subtree: a title, a text and the organisations it names."""

    __tablename__ = "circular"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False, index=True)
    title: str = Field(sa_type=String(200), nullable=False)
    text: str = Field(sa_type=Text, nullable=False)
    created_by: int = Field(foreign_key="app_user.id", nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class CircularItem(SQLModel, table=True):
    """One organisation named in a 通报, with the reason."""

    __tablename__ = "circular_item"

    circular_id: int = Field(foreign_key="circular.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    reason: str = Field(sa_type=String(500), nullable=False)
