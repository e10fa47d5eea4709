"""A branch's run: its state, checklist, evidence, requests, extensions and history."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from api.v1.convert import campaign_brief, requests_out, run_brief, timeline, users_by_id
from states import runs
from states.evidence import queries as evidence_queries
from states.evidence import records
from states.models import Organisation
from states.models import Request as RequestRow
from states.queries import evidence_of
from states.timeutil import format_local, utcnow
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["创建进度"])


def run_out(s: Session, run_id: int, actor: Actor) -> S.RunOut:
    ctx = runs.load_run(s, run_id, actor)
    run = ctx.run
    root = s.get(Organisation, ctx.campaign.root_org_id)
    assert root is not None
    pending = s.get(RequestRow, run.pending_request_id) if run.pending_request_id else None
    brief = run_brief(run, ctx.org, ctx.tpl, utcnow())
    return S.RunOut(
        **brief.model_dump(),
        version=run.version,
        campaign=campaign_brief(ctx.campaign, root),
        deadline_text=format_local(run.deadline) if run.deadline else "无期限",
        timeline=timeline(ctx.tpl, run.stage),
        checklist=[
            S.CheckItem.model_validate(c, from_attributes=True) for c in runs.checklist(s, ctx)
        ],
        pending_request=requests_out(s, [pending])[0] if pending else None,
        allowed_actions=runs.allowed_actions(s, ctx, actor),
    )


@router.get(
    "/runs/{run_id}",
    summary="创建进度详情：阶段、期限、条件清单、待审批申请、可执行操作",
    response_model=S.RunOut,
    responses=responses(401, 404, 422),
)
def get_run(
    run_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> S.RunOut:
    """期限按上海时间给出；条件清单逐条说明已满足或未满足及原因；allowed_actions 是调用者此刻可做的操作。"""
    return run_out(s, run_id, actor)


def _evidence_out(ev: object) -> S.EvidenceOut:
    return S.EvidenceOut.model_validate(ev, from_attributes=True)


@router.post(
    "/runs/{run_id}/evidence",
    summary="录入本阶段材料",
    status_code=201,
    response_model=S.EvidenceOut,
    responses=responses(401, 403, 404, 409, 422),
)
def add_evidence(
    run_id: IdPath,
    body: S.EvidenceIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """按类型录入会议、承诺、活动、点评、群众评议、评定或文件材料；须为本组织书记、委员，或上级委员代办。"""

    def change(s: Session, actor: Actor) -> S.EvidenceOut:
        ev = records.record(
            s,
            run_id=run_id,
            actor=actor,
            kind=body.kind,
            data=body.data.model_dump(mode="json", exclude_none=True),
        )
        return _evidence_out(ev)

    return write(request, who, idem, 201, change)


@router.post(
    "/runs/{run_id}/evidence/batch",
    summary="一次录入多项材料（全部成功或全部不写入）",
    status_code=201,
    response_model=S.EvidenceBatchOut,
    responses=responses(401, 403, 404, 409, 413, 422),
)
def add_evidence_batch(
    run_id: IdPath,
    body: S.EvidenceBatchIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """例如每名党员一条承诺，一次提交（至多 500 项）。任何一项有误则全部不写入，返回 422，
    details 逐项给出 item（从 0 起的序号）、field 与原因。"""
    items = [(i.kind, i.data.model_dump(mode="json", exclude_none=True)) for i in body.items]

    def change(s: Session, actor: Actor) -> S.EvidenceBatchOut:
        evs = records.record_batch(s, run_id=run_id, actor=actor, items=items)
        return S.EvidenceBatchOut(ids=[e.id or 0 for e in evs])

    return write(request, who, idem, 201, change)


@router.post(
    "/runs/{run_id}/evidence/link",
    summary="使用已有记录：把本组织已录入的材料计入本阶段",
    status_code=201,
    response_model=S.EvidenceLinkOut,
    responses=responses(401, 403, 404, 409, 422),
)
def link_evidence(
    run_id: IdPath,
    body: S.EvidenceLinkIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """同一会议、承诺等只录一次，可用于多个活动的阶段。材料须属于本组织、未作废、类型为本阶段所收，
    且尚未用于本阶段（否则 409 并说明规则）。"""

    def change(s: Session, actor: Actor) -> S.EvidenceLinkOut:
        row = records.link(s, run_id=run_id, actor=actor, evidence_id=body.evidence_id)
        return S.EvidenceLinkOut.model_validate(row, from_attributes=True)

    return write(request, who, idem, 201, change)


@router.post(
    "/runs/{run_id}/evidence/unlink",
    summary="不再把某项材料计入本阶段（材料本身保留）",
    response_model=S.EvidenceOut,
    responses=responses(401, 403, 404, 409, 422),
)
def unlink_evidence(
    run_id: IdPath,
    body: S.EvidenceLinkIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """只影响本进度的当前阶段，记入历史；返回该材料。"""

    def change(s: Session, actor: Actor) -> S.EvidenceOut:
        ev = records.unlink(s, run_id=run_id, actor=actor, evidence_id=body.evidence_id)
        return _evidence_out(ev)

    return write(request, who, idem, 200, change)


@router.get(
    "/runs/{run_id}/evidence/reusable",
    summary="可使用的已有记录：本组织近 12 个月、本阶段所收类型、尚未计入本阶段的材料",
    response_model=list[S.EvidenceOut],
    responses=responses(401, 404, 422),
)
def reusable_evidence(
    run_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> list[S.EvidenceOut]:
    """最新的在前，至多 200 项；用 `POST …/evidence/link` 计入本阶段。"""
    return [_evidence_out(e) for e in evidence_queries.reusable(s, run_id, actor)]


@router.get(
    "/runs/{run_id}/evidence",
    summary="本创建进度已录入的材料",
    response_model=S.Page[S.EvidenceOut],
    responses=responses(401, 404, 422),
)
def list_evidence(
    run_id: IdPath,
    stage: str | None = Query(None, max_length=64, description="只看此阶段"),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.EvidenceOut]:
    """最新的在前，分页。"""
    runs.load_run(s, run_id, actor)
    items, total = evidence_of(s, run_id, stage=stage, limit=p.limit, offset=p.offset)
    return S.Page(
        items=[_evidence_out(e) for e in items], total=total, limit=p.limit, offset=p.offset
    )


@router.post(
    "/runs/{run_id}/requests",
    summary="申请推进到下一阶段",
    status_code=201,
    response_model=S.RequestOut,
    responses=responses(401, 403, 404, 409, 422),
)
def request_advance(
    run_id: IdPath,
    request: Request,
    body: S.AdvanceIn | None = None,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """条件满足时提交上级审批（201）；不满足时返回 409，details 列出每一条未满足的条件及原因。"""
    comment = body.comment if body else None

    def change(s: Session, actor: Actor) -> S.RequestOut:
        req = runs.request_advance(s, run_id=run_id, actor=actor, comment=comment)
        return requests_out(s, [req])[0]

    return write(request, who, idem, 201, change)


@router.post(
    "/runs/{run_id}/extensions",
    summary="申请延期",
    status_code=201,
    response_model=S.RequestOut,
    responses=responses(401, 403, 404, 409, 422),
)
def request_extension(
    run_id: IdPath,
    body: S.ExtensionIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """说明理由并给出新的截止时间；由上级审批，审批方式与推进申请相同。"""

    def change(s: Session, actor: Actor) -> S.RequestOut:
        req = runs.request_extension(
            s, run_id=run_id, actor=actor, new_deadline=body.new_deadline, reason=body.reason
        )
        return requests_out(s, [req])[0]

    return write(request, who, idem, 201, change)


@router.post(
    "/runs/{run_id}/send-back",
    summary="上级把创建进度退回到此前阶段",
    response_model=S.RunOut,
    responses=responses(401, 403, 404, 409, 422),
)
def send_back(
    run_id: IdPath,
    body: S.SendBackIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """上级党组织委员填写意见，把创建进度退回到此前某一阶段（同时退回待审批的申请）。"""

    def change(s: Session, actor: Actor) -> S.RunOut:
        runs.send_back(s, run_id=run_id, actor=actor, to_stage=body.to_stage, reason=body.reason)
        return run_out(s, run_id, actor)

    return write(request, who, idem, 200, change)


@router.get(
    "/runs/{run_id}/history",
    summary="创建进度历史（审计记录，最新在前）",
    response_model=S.Page[S.HistoryItem],
    responses=responses(401, 404, 422),
)
def get_history(
    run_id: IdPath,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.HistoryItem]:
    """每一次材料录入、申请、审批、退回、延期，谁在何时做了什么。"""
    chunk, total = runs.history(s, run_id, actor, limit=p.limit, offset=p.offset)
    users = users_by_id(s, {e.actor_id for e in chunk if e.actor_id})
    items = [
        S.HistoryItem(
            seq=e.seq,
            at=e.at,
            action=e.action,
            actor=users.get(e.actor_id) if e.actor_id else None,
            data=e.data,
        )
        for e in chunk
    ]
    return S.Page(items=items, total=total, limit=p.limit, offset=p.offset)
