"""Evidence owned by the organisation and linked to many (run, stage) uses; corrections kept;
attachments stored by SHA-256.

Every existing evidence row becomes a record of its run's organisation with one link to the
(run, stage) it was recorded for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _evidence_columns() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.add_column(sa.Column("org_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("status", sa.String(length=8), nullable=False, server_default="active")
        )
        batch.add_column(
            sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(sa.Column("amended_at", TS, nullable=True))
        batch.add_column(sa.Column("voided_at", TS, nullable=True))
        batch.add_column(sa.Column("voided_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("void_reason", sa.String(length=500), nullable=True))
    op.execute(
        "UPDATE evidence SET org_id = (SELECT run.org_id FROM run WHERE run.id = evidence.run_id)"
    )
    with op.batch_alter_table("evidence") as batch:
        batch.alter_column("org_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("run_id", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("stage", existing_type=sa.String(length=64), nullable=True)
        batch.create_foreign_key("fk_evidence_org_id", "organisation", ["org_id"], ["id"])
        batch.create_foreign_key("fk_evidence_voided_by", "app_user", ["voided_by"], ["id"])
    op.create_index("ix_evidence_org_kind_created", "evidence", ["org_id", "kind", "created_at"])


def _links() -> None:
    op.create_table(
        "evidence_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("linked_by", sa.Integer(), nullable=True),
        sa.Column("linked_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["linked_by"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("evidence_id", "run_id", "stage", name="uq_evidence_link"),
    )
    op.create_index("ix_evidence_link_run_stage", "evidence_link", ["run_id", "stage"])
    op.execute(
        "INSERT INTO evidence_link (evidence_id, run_id, stage, linked_by, linked_at) "
        "SELECT id, run_id, stage, recorded_by, created_at FROM evidence ORDER BY id"
    )


def _revisions_and_attachments() -> None:
    op.create_table(
        "evidence_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("replaced_by", sa.Integer(), nullable=True),
        sa.Column("replaced_at", TS, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["replaced_by"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("evidence_id", "version", name="uq_evidence_revision"),
    )
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("thumb_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attachment_evidence_id", "attachment", ["evidence_id"])


def upgrade() -> None:
    _evidence_columns()
    _links()
    _revisions_and_attachments()


def downgrade() -> None:
    op.drop_index("ix_attachment_evidence_id", table_name="attachment")
    op.drop_table("attachment")
    op.drop_table("evidence_revision")
    op.drop_index("ix_evidence_link_run_stage", table_name="evidence_link")
    op.drop_table("evidence_link")
    op.drop_index("ix_evidence_org_kind_created", table_name="evidence")
    with op.batch_alter_table("evidence") as batch:
        batch.drop_constraint("fk_evidence_voided_by", type_="foreignkey")
        batch.drop_constraint("fk_evidence_org_id", type_="foreignkey")
        for name in ("void_reason", "voided_by", "voided_at", "amended_at", "version", "status"):
            batch.drop_column(name)
        batch.drop_column("org_id")
    op.execute("DELETE FROM evidence WHERE run_id IS NULL")
    with op.batch_alter_table("evidence") as batch:
        batch.alter_column("run_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("stage", existing_type=sa.String(length=64), nullable=False)
