"""Public participation: 群众评议 surveys (codes, answers, rate-limit hits) and 公示 boards with
their 意见箱.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "public_board",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("mask_names", sa.Boolean(), nullable=False),
        sa.Column("published_by", sa.Integer(), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("until", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["published_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
    )
    with op.batch_alter_table("public_board", schema=None) as batch_op:
        batch_op.create_index("ix_public_board_run", ["run_id"], unique=False)

    op.create_table(
        "survey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("open_link", sa.Boolean(), nullable=False),
        sa.Column("code_count", sa.Integer(), nullable=False),
        sa.Column("codes_shown_at", TS, nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=True),
        sa.Column("opened_by", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closes_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["closed_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["opened_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
    )
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.create_index("ix_survey_run_stage", ["run_id", "stage"], unique=False)

    op.create_table(
        "board_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("board_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("contact", sa.String(length=100), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"],
            ["public_board.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("board_message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_board_message_board_id"), ["board_id"], unique=False)

    op.create_table(
        "board_hit",
        sa.Column("addr_hash", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("addr_hash", "slot"),
    )
    op.create_table(
        "survey_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["survey_id"],
            ["survey.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("survey_id", "code", name="uq_survey_code"),
    )
    op.create_table(
        "survey_hit",
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("addr_hash", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"],
            ["survey.id"],
        ),
        sa.PrimaryKeyConstraint("survey_id", "addr_hash", "slot"),
    )
    op.create_table(
        "survey_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("receipt", sa.String(length=16), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.Column("comment_hidden_at", TS, nullable=True),
        sa.Column("comment_hidden_by", sa.Integer(), nullable=True),
        sa.Column("comment_hidden_reason", sa.String(length=200), nullable=True),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("entered_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["survey_code.id"],
        ),
        sa.ForeignKeyConstraint(
            ["comment_hidden_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["entered_by"],
            ["app_user.id"],
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"],
            ["survey.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("survey_id", "code_id", name="uq_survey_answer_code"),
        sa.UniqueConstraint("survey_id", "device", name="uq_survey_answer_device"),
        sa.UniqueConstraint("survey_id", "receipt", name="uq_survey_answer_receipt"),
    )
    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_survey_answer_survey_id"), ["survey_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_answer_survey_id"))

    op.drop_table("survey_answer")
    op.drop_table("board_hit")
    op.drop_table("survey_hit")
    op.drop_table("survey_code")
    with op.batch_alter_table("board_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_board_message_board_id"))

    op.drop_table("board_message")
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_run_stage")

    op.drop_table("survey")
    with op.batch_alter_table("public_board", schema=None) as batch_op:
        batch_op.drop_index("ix_public_board_run")

    op.drop_table("public_board")
