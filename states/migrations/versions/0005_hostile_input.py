"""Hostile input: codes unique case-insensitively; failing notice wordings are recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_case_duplicates() -> None:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(code) AS c, count(*) AS n FROM organisation "
                "GROUP BY lower(code) HAVING count(*) > 1 ORDER BY 1 LIMIT 20"
            )
        )
        .all()
    )
    if rows:
        shown = "、".join(r[0] for r in rows)
        raise RuntimeError(
            f"组织编码仅大小写不同的重复：{shown}。请先合并或改名，再升级数据库。"
            f" / Organisation codes that differ only in case: {shown}; merge or rename them first."
        )


def upgrade() -> None:
    _refuse_case_duplicates()
    op.create_index(
        "uq_organisation_code_ci", "organisation", [sa.text("lower(code)")], unique=True
    )
    with op.batch_alter_table("notice_template") as batch:
        batch.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("notice_template") as batch:
        batch.drop_column("failures")
        batch.drop_column("last_error_at")
        batch.drop_column("last_error")
    op.drop_index("uq_organisation_code_ci", table_name="organisation")
