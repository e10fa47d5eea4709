"""Exploratory schemathesis run (draft)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis

from tests.api_world import World

MAX_EXAMPLES = int(os.environ.get("ST_MAX", "10"))


@pytest.fixture
def api_schema(world: World) -> Any:
    token = world.tokens["admin_b"]["Authorization"].removeprefix("Bearer ")
    config = schemathesis.Config.from_dict(
        {
            "seed": 20260101,
            "generation": {
                "mode": os.environ.get("ST_MODE", "all"),
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "auth": {"openapi": {"HTTPBearer": {"bearer": token}}},
            "phases": {"stateful": {"enabled": False}},
            "continue-on-failure": True,
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.client.app, config=config)
    return schema.exclude(path="/api/v1/auth/logout")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@schema.parametrize()
def test_api(case: schemathesis.Case) -> None:
    case.call_and_validate()
