"""The staff page of a run's survey (/runs/{id}/survey) on both databases: open, the PDF as the
one reveal of the codes, paper entry, hiding a comment, closing; refusals shown on the page."""

from __future__ import annotations

from sqlmodel import Session, select

from states.models import AuditEvent
from states.survey.models import Survey, SurveyAnswer, SurveyCode
from tests.api_world import World
from tests.browser import web_user
from tests.test_survey import FIVE, to_appraise


def test_open_reveal_paper_hide_and_close_from_the_page(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    run_id = w.runs["S1"]
    # Not at an appraisal stage: the page says why and nothing is written.
    refused = sec.post(f"/runs/{run_id}/survey", {"codes": "5", "open_link": "1"})
    assert refused.status_code == 409 and "不需要群众评议" in refused.text
    to_appraise(w)
    assert sec.post(f"/runs/{run_id}/survey", {"codes": "999"}).status_code == 422
    opened = sec.post(f"/runs/{run_id}/survey", {"codes": "3", "open_link": "1"})
    assert opened.status_code == 303
    page = sec.get(f"/runs/{run_id}/survey")
    assert page.status_code == 200 and 'id="cards-pdf"' in page.text
    with Session(w.engine) as s:
        survey = s.exec(select(Survey)).one()
    pdf = sec.get(f"/surveys/{survey.id}/cards.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    again = sec.get(f"/surveys/{survey.id}/cards")
    assert again.status_code == 409 and "只提供一次" in again.text
    assert 'id="cards-pdf"' not in sec.get(f"/runs/{run_id}/survey").text
    paper = sec.post(f"/surveys/{survey.id}/paper", {**FIVE, "comment": "路灯坏了没人修"})
    assert paper.status_code == 303, paper.text
    bad = sec.post(f"/surveys/{survey.id}/paper", {"q_1": "满意"})
    assert bad.status_code == 422
    with Session(w.engine) as s:
        answer = s.exec(select(SurveyAnswer)).one()
        assert answer.channel == "paper" and answer.entered_by == w.actors["sec_s1"].user_id
        assert len(s.exec(select(SurveyCode)).all()) == 3
    assert sec.post(f"/survey-answers/{answer.id}/hide", {"reason": ""}).status_code == 422
    assert (
        sec.post(f"/survey-answers/{answer.id}/hide", {"reason": "与评议无关"}).status_code == 303
    )
    assert "已隐藏：与评议无关" in sec.get(f"/runs/{run_id}/survey").text
    assert sec.post(f"/surveys/{survey.id}/close").status_code == 303
    assert sec.post(f"/surveys/{survey.id}/close").status_code == 409
    with Session(w.engine) as s:
        actions = set(s.exec(select(AuditEvent.action)).all())
    assert {
        "survey_opened",
        "survey_paper_entered",
        "survey_comment_hidden",
        "survey_closed",
    } <= actions
    # A supervisor-like reader in reach sees the page but no buttons; the sibling gets 404.
    viewer = web_user(w.client.app, "com_h1")
    assert viewer.get(f"/runs/{run_id}/survey").status_code == 200
    assert web_user(w.client.app, "admin_h2").get(f"/runs/{run_id}/survey").status_code == 404
