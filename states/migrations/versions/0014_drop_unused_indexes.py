"""Drop two indexes that every approval kept up and no query used: `ix_decision_request_id`
(the unique `uq_decision_step` on (request_id, step) already serves every lookup by request)
and `ix_outbox_run_id` (the relay reads notices by status and due time, never by run).
Measured with a bench of 2,000 approvals, A B A B on one database: WAL per approval
2,798 -> 2,640 bytes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_decision_request_id", table_name="decision")
    op.drop_index("ix_outbox_run_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_run_id", "outbox", ["run_id"])
    op.create_index("ix_decision_request_id", "decision", ["request_id"])
