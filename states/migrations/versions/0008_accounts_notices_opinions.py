"""Accounts (phone, forced password change), notices that resolve themselves, stock opinions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("password_changed_at", TS, nullable=True))
    with op.batch_alter_table("inbox_item") as batch:
        batch.add_column(sa.Column("request_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolved_at", TS, nullable=True))
    op.create_index("ix_inbox_item_request_id", "inbox_item", ["request_id"])
    op.create_table(
        "stock_opinion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "text", name="uq_stock_opinion"),
    )


def downgrade() -> None:
    op.drop_table("stock_opinion")
    op.drop_index("ix_inbox_item_request_id", table_name="inbox_item")
    with op.batch_alter_table("inbox_item") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("request_id")
    with op.batch_alter_table("app_user") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("must_change_password")
        batch.drop_column("phone")
