"""Drop three indexes that every command kept up and no query used: `ix_decision_request_id`
(the unique `uq_decision_step` on (request_id, step) already serves every lookup by request),
`ix_outbox_run_id` (the relay reads notices by status and due time, never by run) and
`ix_audit_event_run_id` (a run's events are read by their stream, `run:<id>`, through the
unique `(stream, seq)`). Measured with 2,000 approvals, A B A B on one database: WAL per
approval 2,798 -> 2,640 bytes for the first two, 2,646 -> 2,556 for the third.

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
    op.drop_index("ix_audit_event_run_id", table_name="audit_event")


def downgrade() -> None:
    op.create_index("ix_audit_event_run_id", "audit_event", ["run_id"])
    op.create_index("ix_outbox_run_id", "outbox", ["run_id"])
    op.create_index("ix_decision_request_id", "decision", ["request_id"])
