"""The API keeps the promises of its OpenAPI document: Schemathesis, in-process, on SQLite.

Every operation in `/openapi.json` is called with generated requests, valid and invalid, by the
admin of the root organisation (who reaches every object), through ASGI with no server. Each
response must: not be a 5xx; have a documented status code and content type; match the
documented body schema. Invalid requests must get a 4xx, never a 2xx or a 5xx. Authentication
must be enforced where the document says it is.

Each operation gets a fresh test world (tests/api_world.py plus a pending request and a
notification); the generated requests for one operation run against it in turn, so a request may
see what an earlier one created. The run is bounded (`MAX_EXAMPLES` fuzzed requests per operation
plus Schemathesis's deterministic coverage cases) and derandomised, so CI sees the same requests
every time.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine
from sqlmodel import Session, select

from api.app import create_app
from states import inbox, runs
from states.catalog import DONE, builtin_templates
from states.models import ORG_KINDS, InboxItem, Request
from states.tokens import issue_token
from tests.api_world import MEETING, World

MAX_EXAMPLES = 20
LOGOUT = "/api/v1/auth/logout"
CALLER = "admin_b"

# Values the generator draws half of the time for these parameters, so that valid requests often
# reach real objects (and their 2xx bodies get checked) instead of always ending in a 404.
TEMPLATE_KEYS = sorted(builtin_templates())
STAGES = sorted({s for t in builtin_templates().values() for s in t.stage_ids} | {DONE})
#: Ids of the objects `api` creates on its fresh database (checked there): organisations 1-8,
#: campaign 1, runs 1-4, request 1, notification 1.
IDS = list(range(1, 9))


def _pick(dictionary: str) -> dict[str, Any]:
    return {"dictionary": dictionary, "probability": 0.5}


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260101,
        "generation": {
            # Valid and invalid requests alike.
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # The bearer token is ours (sent on every call), not a generated header.
            "with-security-parameters": False,
        },
        "phases": {
            # Examples (none in our document), coverage (boundary and invalid values, plus
            # methods the path does not declare) and fuzzing. Stateful link-following is a
            # separate, far longer run.
            "stateful": {"enabled": False},
        },
        "checks": {
            # Off unless listed: the checks below are the contract this file tests.
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            # An invalid request gets a 4xx (404 counts: an object out of reach is a 404).
            "negative_data_rejection": {"enabled": True},
            "missing_required_header": {"enabled": True},
            # A declared-secure operation refuses the request without our token (probe).
            "ignored_auth": {"enabled": True},
            # A method the path does not declare gets 405.
            "unsupported_method": {"enabled": True},
            # The 405's Allow header names every method of the path (api/errors.py).
            "allow_header_conformance": {"enabled": True},
            # Not checked, deliberately:
            # - positive_data_acceptance: a schema-valid request may still break a business rule
            #   that JSON Schema cannot state (a new deadline later than the current one, a stage
            #   of this campaign's template, a .csv/.xlsx file name) and gets 422/409/404 by
            #   design.
        },
        "dictionaries": {
            "templates": {"values": TEMPLATE_KEYS},
            "stages": {"values": STAGES},
            "kinds": {"values": list(ORG_KINDS)},
            "ids": {"values": IDS},
            "usernames": {"values": [CALLER]},
            "passwords": {"values": ["password-123"]},
        },
        "parameters": {
            "path.key": _pick("templates"),
            "body.template": _pick("templates"),
            "query.stage": _pick("stages"),
            "query.current": _pick("stages"),
            "body.to_stage": _pick("stages"),
            "query.kind": _pick("kinds"),
            "body.kinds[*]": _pick("kinds"),
            "path.org_id": _pick("ids"),
            "path.campaign_id": _pick("ids"),
            "path.run_id": _pick("ids"),
            "path.request_id": _pick("ids"),
            "path.notification_id": _pick("ids"),
            "query.org": _pick("ids"),
            "body.root_org_id": _pick("ids"),
            "body.username": _pick("usernames"),
            "body.password": _pick("passwords"),
        },
    }
)

# The OpenAPI document does not depend on the database: read it from an app on an engine that is
# never connected. Requests go to each test's own app (`app=` below); one sent here by mistake
# would fail loudly (no tables: 503).
# The public pages in the document (`/s/…`, `/b/…`) answer HTML and have their own tests
# (tests/test_survey.py, tests/test_board.py): only the JSON API is fuzzed here.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(create_engine("sqlite://")), config=CONFIG
).exclude(path_regex=r"^/(s|b)/")


@pytest.fixture
def api(world: World) -> World:
    """The API test world plus a pending request (S1 asks to advance) and a notification."""
    with Session(world.engine, expire_on_commit=False) as s:
        sec = world.actors["sec_s1"]
        runs.record_evidence(s, run_id=world.runs["S1"], actor=sec, kind="meeting", data=MEETING)
        runs.request_advance(s, run_id=world.runs["S1"], actor=sec, comment="请审批")
        s.commit()
        inbox.post(
            s,
            user_ids=[world.actors[CALLER].user_id],
            kind="reminder",
            title="提醒",
            run_id=world.runs["S1"],
        )
        s.commit()
        made = {
            "orgs": [o.id for o in world.orgs.values()],
            "campaign": [world.campaign_id],
            "runs": list(world.runs.values()),
            "requests": list(s.execute(select(Request.id)).scalars()),
            "notifications": list(s.execute(select(InboxItem.id)).scalars()),
        }
    # The generator's `ids` dictionary must name these objects, or valid requests stop reaching
    # them; the test would still pass, checking error bodies only.
    assert all(made.values()), made
    assert {i for ids in made.values() for i in ids} <= set(IDS), made
    return world


def _throwaway_token(world: World) -> dict[str, str]:
    """A new token for the caller: log-out revokes the token it is called with."""
    with Session(world.engine) as s:
        token = issue_token(s, world.actors[CALLER].user_id).token
        s.commit()
    return {"Authorization": f"Bearer {token}"}


def error_body_is_error_out(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every 4xx and 5xx body is `{"code", "message", "details"}` (api/errors.py).

    Stricter than the document: it declares FastAPI's `HTTPValidationError` for the 422 of some
    routes, a schema with no required field that any object matches.
    """
    if response.status_code < 400 or response.request.method == "HEAD":
        return
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str) and body["message"], body


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@schema.parametrize()
@settings(
    # One world per operation, shared by its generated requests (see the module docstring).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, api: World) -> None:
    app = api.client.app
    headers = _throwaway_token(api) if case.path == LOGOUT else api.as_(CALLER)
    response = case.call(app=app, headers=headers)
    case.validate_response(
        response,
        headers=headers,
        additional_checks=[error_body_is_error_out],
        transport_kwargs={"app": app, "headers": headers},
    )
