"""群众评议 surveys on both databases: opening, the one reveal of the codes, answering by code, by
the open link and on paper, receipts, closing by hand and by the deadline sweep, hidden comments,
the published aggregate, and every refusal (bad input and abuse) writing nothing extra."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from states.models import AuditEvent, Evidence, EvidenceLink, Run
from states.runs import checklist, load_run
from states.survey.models import Survey, SurveyAnswer, SurveyCode, SurveyHit
from states.survey.results import public_summary
from states.timeutil import utcnow
from tests.api_world import World, build_world
from tests.pgkill import terminate
from workflows import jobs

FIVE = {f"q_{i}": "满意" for i in range(1, 7)}  # overall + five headings of 创先争优


def to_appraise(w: World, code: str = "S1") -> int:
    """Put the branch's run at 群众评议 (the stage whose guard counts appraisals)."""
    run_id = w.runs[code]
    with Session(w.engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(stage="appraise"))  # type: ignore[arg-type]
        s.commit()
    return run_id


def open_one(w: World, run_id: int, codes: int = 5, open_link: bool = True) -> dict[str, Any]:
    resp = w.post(
        "sec_s1", f"/api/v1/runs/{run_id}/survey", json={"codes": codes, "open_link": open_link}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def count(w: World, model: Any) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def answer(w: World, form_path: str, **fields: str) -> Any:
    return w.client.post(form_path, data={**FIVE, **fields})


def test_open_take_codes_once_answer_and_count(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=3)
    assert set(opened) >= {"id", "open_url", "codes_url"}
    assert opened["codes_url"] == f"/api/v1/surveys/{opened['id']}/codes"
    form = path_of(opened["form_url"])
    # The codes are not in the database in plain text, and reach the opener once.
    assert w.get("com_g1", opened["codes_url"]).status_code == 403
    codes = w.get("sec_s1", opened["codes_url"])
    assert codes.status_code == 200, codes.text
    body = codes.json()
    assert len(body["codes"]) == 3 and len(set(body["codes"])) == 3
    assert body["urls"][0].endswith(f"?code={body['codes'][0]}")
    with Session(w.engine) as s:
        stored = s.execute(select(SurveyCode.code)).scalars().all()
    assert not set(body["codes"]) & set(stored)
    again = w.get("sec_s1", opened["codes_url"])
    assert again.status_code == 409 and again.json()["details"]["rule"] == "codes_shown_once"
    assert w.get("sec_s1", f"/api/v1/surveys/{opened['id']}/codes.pdf").status_code == 409
    # The form, then an answer by code: a receipt; the code cannot answer twice.
    page = w.client.get(form)
    assert page.status_code == 200 and "总体评价" in page.text and "党性教育" in page.text
    assert page.headers["X-Robots-Tag"].startswith("noindex") and 'content="noindex' in page.text
    done = answer(w, form, code=body["codes"][0].lower().replace("-", ""), comment="很好")
    assert done.status_code == 200, done.text
    receipt = done.text.split('id="receipt">')[1].split("<")[0]
    assert len(receipt) == 10
    assert answer(w, form, code=body["codes"][0]).status_code == 409
    check = w.client.get(f"{form}/check", params={"receipt": receipt})
    assert check.status_code == 200 and "已计入" in check.text and "一次性编码" in check.text
    assert w.client.get(f"{form}/check", params={"receipt": "X" * 10}).status_code == 404
    # The answer is an appraisal record linked to the run's stage: the guard counts it.
    with Session(w.engine) as s:
        ev = s.execute(select(Evidence).where(Evidence.kind == "appraisal")).scalar_one()
        assert ev.data["rating"] == "满意" and ev.org_id == w.orgs["S1"].id
        link = s.execute(select(EvidenceLink).where(EvidenceLink.evidence_id == ev.id)).scalar_one()
        assert (link.run_id, link.stage) == (run_id, "appraise")
        ctx = load_run(s, run_id, w.actors["sec_s1"])
        status = next(c for c in checklist(s, ctx) if c.key == "appraisal_count")
        assert (status.have, status.met) == (1, False)


def test_open_link_one_answer_per_device_and_results(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=0)
    assert opened["codes_url"] is None and opened["open_url"] == opened["form_url"]
    form = path_of(opened["open_url"])
    assert "dj_device" in w.client.get(form).cookies
    assert answer(w, form, comment="<script>alert(1)</script>").status_code == 200
    second = answer(w, form)
    assert second.status_code == 409 and "本设备已经提交过" in second.text
    w.client.cookies.clear()
    assert answer(w, form, q_1="不满意").status_code == 200  # another device
    res = w.get("com_g1", f"/api/v1/runs/{run_id}/survey").json()["items"][0]
    assert res["answers"] == 2 and res["by_channel"] == {"code": 0, "link": 2, "paper": 0}
    assert res["questions"][0]["counts"] == {"满意": 1, "基本满意": 0, "不满意": 1}
    assert res["rate"] == 0.5 and res["published"] is False
    assert res["comments"][0]["text"] == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"q_1": ""}, "q_1"),
        ({"q_3": "很满意"}, "q_3"),
        ({"q_9": "满意"}, "q_9"),
        ({"comment": "长" * 501}, "comment"),
        ({"comment": "好\u202e评"}, "comment"),
        ({"comment": "控制\x07字符"}, "comment"),
    ],
)
def test_bad_forms_are_422_and_write_no_answer(
    world: World, fields: dict[str, str], field: str
) -> None:
    w = world
    form = path_of(open_one(w, to_appraise(w), codes=0)["open_url"])
    resp = answer(w, form, **fields)
    assert resp.status_code == 422, resp.text
    assert 'class="err"' in resp.text
    assert count(w, SurveyAnswer) == 0 and count(w, Evidence) == 0
    if field == "q_1":
        assert "请评价" in resp.text


def test_comment_is_escaped_on_the_closed_page(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=0)
    form = path_of(opened["open_url"])
    for i in range(5):
        w.client.cookies.clear()
        assert answer(w, form, comment=f"<script>x{i}</script>").status_code == 200
    assert w.post("sec_s1", f"/api/v1/surveys/{opened['id']}/close").status_code == 200
    closed = w.client.get(form)
    assert closed.status_code == 410
    assert "&lt;script&gt;x0&lt;/script&gt;" in closed.text and "<script>" not in closed.text
    assert answer(w, form).status_code == 410


def test_forged_truncated_and_unknown_tokens_are_one_404(world: World) -> None:
    w = world
    form = path_of(open_one(w, to_appraise(w), codes=0)["open_url"])
    token = form.rsplit("/", 1)[1]
    nonce, mac = token.split(".")
    for bad in (token[:-1], f"{nonce}.{'A' * len(mac)}", "x", f"{'A' * len(nonce)}.{mac}"):
        for resp in (w.client.get(f"/s/{bad}"), answer(w, f"/s/{bad}")):
            assert resp.status_code == 404 and "页面不存在" in resp.text
    assert count(w, SurveyAnswer) == 0 and count(w, SurveyHit) == 0


def test_one_address_is_rate_limited_and_big_bodies_refused_cheaply(world: World) -> None:
    w = world
    form = path_of(open_one(w, to_appraise(w), codes=0)["open_url"])
    statuses = []
    for _ in range(25):
        w.client.cookies.clear()
        statuses.append(answer(w, form).status_code)
    assert statuses[:20] == [200] * 20 and set(statuses[20:]) == {429}
    assert count(w, SurveyAnswer) == 20
    with Session(w.engine) as s:
        hits = s.execute(select(SurveyHit.hits)).scalars().all()
        salt = s.execute(select(Survey.salt)).scalar_one()
    assert hits == [25] and salt
    big = w.client.post(form, content=b"comment=" + b"a" * (1024 * 1024))
    assert big.status_code == 413
    assert count(w, SurveyAnswer) == 20


def test_open_is_refused_outside_an_appraisal_stage_twice_or_by_others(world: World) -> None:
    w = world
    run_id = w.runs["S1"]
    url = f"/api/v1/runs/{run_id}/survey"
    body = {"codes": 5, "open_link": False}
    wrong = w.post("sec_s1", url, json=body)
    assert wrong.status_code == 409
    assert wrong.json()["details"]["rule"] == "stage_counts_no_appraisals"
    to_appraise(w)
    for bad in ({"codes": 501}, {"codes": -1}, {"codes": 0, "open_link": False}, {"codes": "x"}):
        assert w.post("sec_s1", url, json=bad).status_code == 422, bad
    assert w.post("sec_s2", url, json=body).status_code == 404  # a sibling branch
    assert w.post("admin_h2", url, json=body).status_code == 404
    assert w.post("com_g1", url, json=body).status_code == 201  # a committee above
    dup = w.post("sec_s1", url, json=body)
    assert dup.status_code == 409 and dup.json()["details"]["rule"] == "survey_already_open"
    assert count(w, Survey) == 1


def test_paper_entry_hide_comment_close_and_publish(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=0)
    sid = opened["id"]
    for i in range(5):
        paper = {"answers": {**FIVE, "q_1": "基本满意"}, "comment": f"意见{i}"}
        resp = w.post("sec_s1", f"/api/v1/surveys/{sid}/paper", json=paper)
        assert resp.status_code == 201, resp.text
    bad = w.post("sec_s1", f"/api/v1/surveys/{sid}/paper", json={"answers": {"q_1": "满意"}})
    assert bad.status_code == 422
    items = w.get("sec_s1", f"/api/v1/runs/{run_id}/survey").json()["items"][0]
    assert items["by_channel"]["paper"] == 5
    first = items["comments"][0]["answer_id"]
    hide = f"/api/v1/survey-answers/{first}/hide"
    assert w.post("sec_s1", hide, json={"reason": ""}).status_code == 422
    assert w.post("admin_h2", hide, json={"reason": "辱骂"}).status_code == 404
    assert w.post("sec_s1", hide, json={"reason": "含人身攻击"}).status_code == 200
    assert w.post("sec_s1", hide, json={"reason": "再次"}).status_code == 409
    with Session(w.engine) as s:
        assert public_summary(s, run_id) is None  # still open
    assert w.post("sec_s1", f"/api/v1/surveys/{sid}/close").status_code == 200
    assert w.post("sec_s1", f"/api/v1/surveys/{sid}/close").status_code == 409
    with Session(w.engine) as s:
        summary = public_summary(s, run_id)
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.run_id == run_id)).all()
    assert summary is not None and summary.answers == 5 and summary.hidden == 1
    assert summary.comments == [f"意见{i}" for i in range(1, 5)] and summary.rate == 1.0
    assert summary.by_channel["paper"] == 5
    names = {a for (a,) in actions}
    assert {"survey_opened", "survey_paper_entered", "survey_comment_hidden"} <= names
    assert "survey_closed" in names
    late = w.post("sec_s1", f"/api/v1/surveys/{sid}/paper", json={"answers": FIVE})
    assert late.status_code == 409


def test_aggregates_are_published_only_from_five_answers(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=0)
    form = path_of(opened["open_url"])
    for _ in range(4):
        w.client.cookies.clear()
        assert answer(w, form).status_code == 200
    w.post("sec_s1", f"/api/v1/surveys/{opened['id']}/close")
    closed = w.client.get(form)
    assert closed.status_code == 410 and "满意率" not in closed.text
    with Session(w.engine) as s:
        assert public_summary(s, run_id) is None


def test_the_deadline_sweep_closes_due_surveys_and_drops_addresses(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=0)
    form = path_of(opened["open_url"])
    assert answer(w, form).status_code == 200
    deadline = utcnow() + timedelta(days=2)
    with Session(w.engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(deadline=deadline))  # type: ignore[arg-type]
        s.commit()
    early = jobs.sweep(w.engine, "deadline_sweep", deadline - timedelta(hours=1))
    assert "survey_closed" not in early.counts
    report = jobs.sweep(w.engine, "deadline_sweep", deadline + timedelta(minutes=1))
    assert report.counts["survey_closed"] == 1
    again = jobs.sweep(w.engine, "deadline_sweep", deadline + timedelta(minutes=2))
    assert "survey_closed" not in again.counts
    with Session(w.engine) as s:
        survey = s.execute(select(Survey)).scalar_one()
        assert survey.closed_at is not None and survey.salt is None
        assert s.execute(text("SELECT count(*) FROM survey_hit")).scalar_one() == 0
    w.client.cookies.clear()
    assert answer(w, form).status_code == 410


def test_every_survey_route_is_404_from_the_sibling_subtree(world: World) -> None:
    w = world
    run_id = to_appraise(w)
    opened = open_one(w, run_id, codes=2)
    sid = opened["id"]
    w.post("sec_s1", f"/api/v1/surveys/{sid}/paper", json={"answers": FIVE, "comment": "好"})
    with Session(w.engine) as s:
        answer_id = s.execute(select(SurveyAnswer.id)).scalar_one()
    calls = [
        ("GET", f"/api/v1/runs/{run_id}/survey", None),
        ("POST", f"/api/v1/runs/{run_id}/survey", {"codes": 1}),
        ("POST", f"/api/v1/surveys/{sid}/close", None),
        ("GET", f"/api/v1/surveys/{sid}/codes", None),
        ("GET", f"/api/v1/surveys/{sid}/codes.pdf", None),
        ("POST", f"/api/v1/surveys/{sid}/paper", {"answers": FIVE}),
        ("POST", f"/api/v1/survey-answers/{answer_id}/hide", {"reason": "x"}),
    ]
    for method, url, body in calls:
        resp = w.client.request(method, url, json=body, headers=w.as_("admin_h2"))
        assert resp.status_code == 404, (url, resp.text)
    assert count(w, SurveyAnswer) == 1 and count(w, SurveyCode) == 0
    with Session(w.engine) as s:
        assert s.execute(select(Survey.closed_at)).scalar_one() is None


def test_a_passed_deadline_refuses_posts_before_any_sweep(world: World) -> None:
    """The survey is known to the server from an earlier post; the deadline passes; the next
    post is 410 and writes nothing, although no sweep has closed the survey yet."""
    w = world
    run_id = to_appraise(w)
    form = path_of(open_one(w, run_id, codes=0)["open_url"])
    assert answer(w, form).status_code == 200
    with Session(w.engine) as s:
        past = utcnow() - timedelta(minutes=1)
        s.execute(update(Run).where(Run.id == run_id).values(deadline=past))  # type: ignore[arg-type]
        s.commit()
    w.client.cookies.clear()
    assert answer(w, form).status_code == 410
    assert count(w, SurveyAnswer) == 1 and count(w, Evidence) == 1
    with Session(w.engine) as s:
        assert s.execute(select(SurveyHit.hits)).scalars().all() == [1]


def test_a_public_post_on_postgresql_is_one_statement(pg_engine: Engine) -> None:
    """Once the server knows the survey, an answer by code or by link is one statement
    (autocommit, so one round trip); a replayed code adds one read to tell used from unknown."""
    w = build_world(pg_engine)
    with w.client:
        _one_statement_each(w)


def _one_statement_each(w: World) -> None:
    opened = open_one(w, to_appraise(w), codes=3)
    codes = w.get("sec_s1", opened["codes_url"]).json()["codes"]
    form = path_of(opened["form_url"])
    assert answer(w, form).status_code == 200  # the first post loads the survey
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(sql)

    event.listen(w.engine, "before_cursor_execute", seen)
    try:
        w.client.cookies.clear()
        assert answer(w, form).status_code == 200
        assert answer(w, form, code=codes[0]).status_code == 200
        assert answer(w, form, code=codes[0]).status_code == 409
    finally:
        event.remove(w.engine, "before_cursor_execute", seen)
    writes = [sql for sql in statements if "survey_hit" in sql]
    assert len(writes) == 3 and len(statements) == 4, statements
    assert count(w, SurveyAnswer) == 3


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_post_on_a_connection_the_server_dropped_is_answered(world: World, db_url: str) -> None:
    """The server knows the survey and holds idle pooled connections; the database drops them
    all; the next answer is still taken, once (the one statement runs again on a fresh one)."""
    w = world
    form = path_of(open_one(w, to_appraise(w), codes=0)["open_url"])
    assert answer(w, form).status_code == 200
    terminate(db_url)
    w.client.cookies.clear()
    done = answer(w, form)
    assert done.status_code == 200, done.text
    assert count(w, SurveyAnswer) == 2 and count(w, Evidence) == 2


def test_a_database_outage_on_the_public_form_is_a_plain_503_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    form = path_of(open_one(w, to_appraise(w), codes=0)["open_url"])

    def down(*_args: Any, **_kw: Any) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr("states.survey.answers.load_target", down)
    page = w.client.get(form)
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "服务暂时不可用" in page.text and "<link" not in page.text
    monkeypatch.setattr("api.security._actor", down)
    api = w.get("sec_s1", "/api/v1/me")  # the JSON API keeps its own error body
    assert api.status_code == 503 and api.json()["code"] == "database_error"
