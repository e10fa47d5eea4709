"""The public board tables: a published 公示 board per branch and campaign, and its 意见箱."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow


class PublicBoard(SQLModel, table=True):
    """A branch's 公示 board for one campaign, behind an unguessable, revocable address."""

    __tablename__ = "public_board"
    __table_args__ = (Index("ix_public_board_run", "run_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    campaign_id: int = Field(foreign_key="campaign.id", nullable=False)
    # The random part of the public address (/b/<nonce>.<signature>); unique.
    nonce: str = Field(sa_type=String(64), nullable=False, unique=True)
    mask_names: bool = Field(default=True, nullable=False)
    published_by: int = Field(foreign_key="app_user.id", nullable=False)
    published_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: int | None = Field(default=None, foreign_key="app_user.id")


class BoardMessage(SQLModel, table=True):
    """A message left in a board's 意见箱 (with an optional contact)."""

    __tablename__ = "board_message"

    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="public_board.id", nullable=False, index=True)
    message: str = Field(sa_type=String(2000), nullable=False)
    contact: str | None = Field(default=None, sa_type=String(100))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class BoardHit(SQLModel, table=True):
    """Messages posted from one network address in one hour, for the 意见箱's rate limit.

    The address is kept only as a keyed hash (HMAC with the installation's secret and the day),
    so the table never holds a raw address and hashes of different days cannot be linked.
    """

    __tablename__ = "board_hit"

    addr_hash: str = Field(sa_type=String(64), primary_key=True)
    slot: int = Field(primary_key=True)  # the hour: epoch seconds // 3600
    hits: int = Field(default=0, nullable=False)
