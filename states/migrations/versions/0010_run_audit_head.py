"""The head of each run's audit stream on the run's row (last seq and hash).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The last event of each run's stream (`run:<id>`), copied onto the run.
BACKFILL = """
UPDATE run SET
  audit_seq = COALESCE((SELECT max(e.seq) FROM audit_event e WHERE e.stream = 'run:' || run.id), 0),
  audit_hash = (SELECT e.hash FROM audit_event e WHERE e.stream = 'run:' || run.id
                ORDER BY e.seq DESC LIMIT 1)
"""


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("audit_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("audit_hash", sa.String(length=64), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("audit_hash")
        batch.drop_column("audit_seq")
