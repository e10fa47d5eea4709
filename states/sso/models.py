"""The tables of platform sign-in: who is bound to which platform account, and pending states."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

PROVIDERS = ("wecom", "dingtalk", "feishu")


class SsoIdentity(SQLModel, table=True):
    """One user's account on one platform, bound once by the user herself."""

    __tablename__ = "sso_identity"
    __table_args__ = (
        UniqueConstraint("provider", "subject", name="uq_sso_identity_subject"),
        UniqueConstraint("user_id", "provider", name="uq_sso_identity_user"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", nullable=False, index=True)
    provider: str = Field(sa_type=String(16), nullable=False)
    # The platform's own user id (WeCom UserId, DingTalk unionId, Feishu open_id/user_id).
    subject: str = Field(sa_type=String(128), nullable=False)
    bound_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class SsoState(SQLModel, table=True):
    """A `state` handed to the platform: used once, within its lifetime, for its purpose."""

    __tablename__ = "sso_state"

    state: str = Field(sa_type=String(64), primary_key=True)
    provider: str = Field(sa_type=String(16), nullable=False)
    purpose: str = Field(sa_type=String(8), nullable=False)  # 'login' or 'bind'
    user_id: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
