"""Idempotency-Key on state-changing POSTs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, func, select

from states.models import Evidence, IdempotencyRecord
from states.timeutil import utcnow
from tests.api_world import MEETING, World


def _evidence(w: World) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.count()).select_from(Evidence)).scalar_one())


def test_same_key_same_body_replays_the_first_response(world: World) -> None:
    w = world
    url = f"/api/v1/runs/{w.runs['S1']}/evidence"
    body = {"kind": "meeting", "data": MEETING}
    first = w.post("sec_s1", url, json=body, headers={"Idempotency-Key": "m-1"})
    again = w.post("sec_s1", url, json=body, headers={"Idempotency-Key": "m-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _evidence(w) == 1
    # A new key records anew.
    assert w.post("sec_s1", url, json=body, headers={"Idempotency-Key": "m-2"}).status_code == 201
    assert _evidence(w) == 2


def test_same_key_other_body_is_422(world: World) -> None:
    w = world
    url = f"/api/v1/runs/{w.runs['S1']}/evidence"
    w.post(
        "sec_s1", url, json={"kind": "meeting", "data": MEETING}, headers={"Idempotency-Key": "k"}
    )
    other = {"kind": "meeting", "data": {**MEETING, "title": "另一次会议"}}
    r = w.post("sec_s1", url, json=other, headers={"Idempotency-Key": "k"})
    assert r.status_code == 422
    assert r.json()["details"][0]["rule"] == "key_reused"
    assert _evidence(w) == 1


def test_key_in_flight_is_409_and_a_dead_claim_is_taken_over(world: World) -> None:
    w = world
    url = f"/api/v1/runs/{w.runs['S1']}/evidence"
    body = {"kind": "meeting", "data": MEETING}
    # Claim the key as a first request would, and leave it unfinished.
    from states import idempotency

    raw = w.client.build_request("POST", url, json=body)
    fingerprint = idempotency.request_hash("POST", url, raw.content)
    with Session(w.engine) as s:
        assert (
            idempotency.claim(
                s, user_id=w.actors["sec_s1"].user_id, key="busy", fingerprint=fingerprint
            )
            is None
        )
        s.commit()
    r = w.post("sec_s1", url, json=body, headers={"Idempotency-Key": "busy"})
    assert r.status_code == 409 and r.json()["details"]["rule"] == "idempotency_in_flight"
    assert _evidence(w) == 0
    # A claim whose process died long ago is taken over by the retry.
    with Session(w.engine) as s:
        s.execute(update(IdempotencyRecord).values(created_at=utcnow() - timedelta(minutes=10)))
        s.commit()
    r = w.post("sec_s1", url, json=body, headers={"Idempotency-Key": "busy"})
    assert r.status_code == 201
    assert _evidence(w) == 1


def test_a_failed_request_releases_its_key(world: World) -> None:
    w = world
    run = w.runs["S1"]
    r = w.post(
        "sec_s1", f"/api/v1/runs/{run}/requests", json={}, headers={"Idempotency-Key": "adv"}
    )
    assert r.status_code == 409  # requirements unmet: nothing changed, the key is free again
    w.post("sec_s1", f"/api/v1/runs/{run}/evidence", json={"kind": "meeting", "data": MEETING})
    r = w.post(
        "sec_s1", f"/api/v1/runs/{run}/requests", json={}, headers={"Idempotency-Key": "adv"}
    )
    assert r.status_code == 201
    again = w.post(
        "sec_s1", f"/api/v1/runs/{run}/requests", json={}, headers={"Idempotency-Key": "adv"}
    )
    assert again.status_code == 201 and again.json()["id"] == r.json()["id"]


def test_keys_are_per_user_and_kept_24_hours(world: World) -> None:
    w = world
    body = {"kind": "meeting", "data": MEETING}
    a = w.post(
        "sec_s1",
        f"/api/v1/runs/{w.runs['S1']}/evidence",
        json=body,
        headers={"Idempotency-Key": "same"},
    )
    b = w.post(
        "sec_s2",
        f"/api/v1/runs/{w.runs['S2']}/evidence",
        json=body,
        headers={"Idempotency-Key": "same"},
    )
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    with Session(w.engine) as s:
        s.execute(update(IdempotencyRecord).values(created_at=utcnow() - timedelta(hours=25)))
        s.commit()
    # After 24 hours the key is forgotten (purged at the next claim): the POST runs again.
    c = w.post(
        "sec_s1",
        f"/api/v1/runs/{w.runs['S1']}/evidence",
        json=body,
        headers={"Idempotency-Key": "same"},
    )
    assert c.status_code == 201 and c.json()["id"] != a.json()["id"]
    with Session(w.engine) as s:
        assert s.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one() == 1


def test_response_is_recorded_in_the_same_transaction_as_the_change(world: World) -> None:
    w = world
    body = {"kind": "meeting", "data": MEETING}
    r = w.post(
        "sec_s1",
        f"/api/v1/runs/{w.runs['S1']}/evidence",
        json=body,
        headers={"Idempotency-Key": "tx"},
    )
    with Session(w.engine) as s:
        rec = s.execute(select(IdempotencyRecord)).scalar_one()
    assert rec.status == "done" and rec.response_status == 201
    assert rec.response_body == r.json()
