"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import states.models  # noqa: F401  (registers the tables)
from states.migrate import current_revision, head_revision, is_up_to_date


def test_migrated_schema_matches_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision() and is_up_to_date(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(engine: Engine) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from states.migrate import alembic_config, upgrade

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert is_up_to_date(engine)
    assert "audit_event" in inspect(engine).get_table_names()


def test_shipped_head_read_from_the_files_equals_alembics(engine: Engine) -> None:
    from states.schema_version import database_revision, shipped_head

    assert shipped_head() == head_revision() is not None
    assert database_revision(engine) == current_revision(engine) == shipped_head()
