"""The job table: one long export, its progress, and the file it leaves behind for a while."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

STATUSES = ("queued", "running", "done", "failed")


class Job(SQLModel, table=True):
    """A background job asked for by one user (e.g. a committee's 台账 workbook)."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_type=String(32), nullable=False)  # e.g. 'ledger'
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    requested_by: int = Field(foreign_key="app_user.id", nullable=False, index=True)
    org_id: int | None = Field(default=None, foreign_key="organisation.id")
    status: str = Field(default="queued", sa_type=String(8), nullable=False)
    done: int = Field(default=0, nullable=False)
    total: int = Field(default=0, nullable=False)
    error: str | None = Field(default=None, sa_type=String(500))
    # The finished file (relative to the data directory) and its download address's nonce.
    file_path: str | None = Field(default=None, sa_type=String(500))
    file_name: str | None = Field(default=None, sa_type=String(200))
    download_nonce: str | None = Field(default=None, sa_type=String(64), unique=True)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Touched with every chunk of progress: a queued or running job whose heartbeat stopped
    # (its process ended) is marked failed instead of staying "running" for ever.
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
