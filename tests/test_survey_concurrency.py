"""PostgreSQL: 200 posts at once over 100 one-time codes (each code posted twice) give exactly
100 answers and 100 refusals (409), with one appraisal record and one link per answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from states.db import unit_of_work
from states.models import Evidence, EvidenceLink, Run
from states.survey import answers as answering
from states.survey import service
from states.survey.answers import Refused
from states.survey.forms import check_answer
from states.survey.models import SurveyAnswer, SurveyCode
from tests.api_world import build_world

FORM = {f"q_{i}": "满意" for i in range(1, 7)}
POSTS = 200
THREADS = 40


def _count(engine: Engine, model: object) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())  # type: ignore[call-overload]


def test_200_concurrent_posts_over_100_codes(pg_engine: Engine) -> None:
    w = build_world(pg_engine)
    run_id = w.runs["S1"]
    sec = w.actors["sec_s1"]
    with unit_of_work(pg_engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(stage="appraise"))  # type: ignore[arg-type]
    with unit_of_work(pg_engine) as s:
        survey = service.open_survey(s, run_id=run_id, actor=sec, codes=100, open_link=False)
        nonce = survey.nonce
    with unit_of_work(pg_engine) as s:
        _, codes = service.reveal_codes(s, survey_id=survey.id or 0, actor=sec)
    posts = [codes[i % 100] for i in range(POSTS)]
    start = threading.Barrier(THREADS)

    def post(i: int) -> int:
        if i < THREADS:
            start.wait()
        try:
            with unit_of_work(pg_engine) as s:
                target = answering.load_target(s, nonce)
                assert target is not None
                answer = check_answer(target.questions, FORM)
                answering.answer_public(
                    s, target, answer, address=f"10.0.{i % 7}.1", code=posts[i], device=None
                )
            return 200
        except Refused as exc:
            return exc.status

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(post, range(POSTS)))
    assert statuses.count(200) == 100 and statuses.count(409) == 100, sorted(set(statuses))
    assert _count(pg_engine, SurveyAnswer) == 100
    assert _count(pg_engine, Evidence) == 100 and _count(pg_engine, EvidenceLink) == 100
    with Session(pg_engine) as s:
        used = s.execute(
            select(func.count()).where(SurveyCode.used_at.is_not(None))  # type: ignore[union-attr]
        ).scalar_one()
        codes_answered = s.execute(
            select(func.count(func.distinct(SurveyAnswer.code_id)))
        ).scalar_one()
    assert used == 100 and codes_answered == 100
