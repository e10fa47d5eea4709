"""Index the inbox by run: a command that moves a run resolves the run's open notices (reminders,
督办) with one UPDATE by `run_id`, which otherwise reads the whole inbox (66 ms at a million
notices on PostgreSQL, against 0.4 ms with the index).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 01:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_inbox_item_run_id", "inbox_item", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_inbox_item_run_id", table_name="inbox_item")
