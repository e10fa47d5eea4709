"""Exploratory schemathesis run (draft)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine

from api.app import create_app
from tests.api_world import World

MAX_EXAMPLES = int(os.environ.get("ST_MAX", "10"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260101,
        "generation": {
            "mode": os.environ.get("ST_MODE", "all"),
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(create_engine("sqlite://")), config=CONFIG
).exclude(path="/api/v1/auth/logout")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@schema.parametrize()
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None
)
def test_api(case: schemathesis.Case, world: World) -> None:
    case.call_and_validate(app=world.client.app, headers=world.as_("admin_b"))
