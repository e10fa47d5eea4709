"""Campaign templates: list, detail, state diagram."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api import schemas as S
from api.diagram import template_svg
from api.errors import responses
from api.security import authenticated
from states.catalog import DONE, Template, builtin_templates, get_template
from states.machines import machine_for, trigger_label
from states.requirements import describe
from states.schedule import default_schedule
from states.timeutil import local_date, utcnow
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["模板"])


def _summary(tpl: Template) -> S.TemplateSummary:
    return S.TemplateSummary(
        key=tpl.key,
        version=tpl.version,
        name=tpl.name,
        description=tpl.description,
        participants=tpl.participants,
        stages=tpl.stage_ids,
    )


def _transitions(tpl: Template) -> list[S.TransitionOut]:
    machine = machine_for(tpl)
    out = []
    for trigger, event in machine.events.items():
        for source, ts in event.transitions.items():
            for t in ts:
                out.append(
                    S.TransitionOut(
                        trigger=trigger,
                        label=trigger_label(tpl, trigger),
                        source=source,
                        dest=t.dest or source,
                    )
                )
    order = {sid: i for i, sid in enumerate([*tpl.stage_ids, DONE])}
    return sorted(out, key=lambda t: (order.get(t.source, 99), t.trigger != "advance", t.dest))


def _detail(tpl: Template) -> S.TemplateOut:
    defaults = default_schedule(tpl, local_date(utcnow()).year)
    stages = []
    for st in tpl.stages:
        reqs: list[S.RequirementOut] = []
        for r in st.requirements:
            spec: dict[str, Any] = r.model_dump(mode="json")
            reqs.append(S.RequirementOut(type=spec.pop("type"), label=describe(r), spec=spec))
        d = defaults.get(st.id)
        stages.append(
            S.StageOut(
                id=st.id,
                name=st.name,
                description=st.description,
                evidence=st.evidence,
                requirements=reqs,
                default_deadline=d.model_dump(mode="json", exclude_none=True) if d else None,
            )
        )
    return S.TemplateOut(
        **_summary(tpl).model_dump(),
        digest=tpl.digest(),
        source=tpl.source,
        stage_details=stages,
        transitions=_transitions(tpl),
        headings=tpl.headings,
        grades=tpl.grades,
        approval=tpl.approval.model_dump(mode="json"),
        reminders=tpl.reminders.model_dump(mode="json"),
        escalation=tpl.escalation.model_dump(mode="json"),
    )


@router.get(
    "/templates",
    summary="活动模板列表",
    response_model=list[S.TemplateSummary],
    responses=responses(401),
)
def list_templates(actor: Actor = Depends(authenticated)) -> list[S.TemplateSummary]:
    """返回可用于发起活动的模板（当前版本）。"""
    return [_summary(t) for t in builtin_templates().values()]


@router.get(
    "/templates/{key}",
    summary="模板详情：阶段、转换、条件、版本",
    response_model=S.TemplateOut,
    responses=responses(401, 404, 422),
)
def template_detail(key: str, actor: Actor = Depends(authenticated)) -> S.TemplateOut:
    """返回模板的各阶段、可录材料、推进条件（文字说明）、状态转换、审批链与提醒设置。"""
    return _detail(get_template(key))


@router.get(
    "/templates/{key}/diagram",
    summary="模板状态图（SVG）",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "SVG 图"},
        **responses(401, 404, 422),
    },
)
def template_diagram(
    key: str,
    current: str | None = Query(None, max_length=64, description="高亮此阶段"),
    actor: Actor = Depends(authenticated),
) -> Response:
    """以 SVG 返回模板的阶段流程图：实线为审批通过后推进，虚线为退回。"""
    tpl = get_template(key)
    return Response(template_svg(tpl, current=current), media_type="image/svg+xml")
