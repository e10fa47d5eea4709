"""Requests to advance or extend: the approval inbox and the decisions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from api.v1.convert import requests_out, run_brief
from states import runs
from states.campaigns import template_by_digest
from states.models import Request as RequestRow
from states.models import RequestStatus, TemplateVersion
from states.queries import approval_inbox
from states.timeutil import utcnow
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["审批"])


@router.get(
    "/approvals",
    summary="我的待审批（审批箱）",
    response_model=S.Page[S.ApprovalItem],
    responses=responses(401, 422),
)
def approvals(
    status: RequestStatus = Query(RequestStatus.PENDING, description="申请状态"),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.ApprovalItem]:
    """本人所在党委（或管理的下级组织）待审批的申请，最早提交的在前；不含本人或本人所任书记的支部提交的申请。"""
    rows, total = approval_inbox(s, actor, status=status, limit=p.limit, offset=p.offset)
    outs = requests_out(s, [r.request for r in rows])
    now = utcnow()
    items = []
    for row, out in zip(rows, outs, strict=True):
        version = s.get(TemplateVersion, row.campaign.template_version_id)
        assert version is not None
        tpl = template_by_digest(s, version.id or 0, version.digest)
        items.append(
            S.ApprovalItem(
                request=out,
                run=run_brief(row.run, row.org, tpl, now),
                campaign_name=row.campaign.name,
            )
        )
    return S.Page(items=items, total=total, limit=p.limit, offset=p.offset)


@router.get(
    "/requests/{request_id}",
    summary="申请详情",
    response_model=S.RequestOut,
    responses=responses(401, 404, 422),
)
def get_request(
    request_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> S.RequestOut:
    """申请的内容、审批链、当前审批组织与各级意见。"""
    return requests_out(s, [runs.load_request(s, request_id, actor)])[0]


def _decided(s: Session, req: RequestRow) -> S.RequestOut:
    """The response from the request as the command left it (no re-read)."""
    return requests_out(s, [req])[0]


@router.post(
    "/requests/{request_id}/approve",
    summary="审批通过",
    response_model=S.RequestOut,
    responses=responses(401, 403, 404, 409, 422),
)
def approve(
    request_id: IdPath,
    request: Request,
    body: S.ApproveIn | None = None,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """由当前审批组织的委员作出；多级审批时转到下一级。不能审批本人提交的或本人任书记的支部的申请。"""
    opinion = body.opinion if body else None

    def change(s: Session, actor: Actor) -> S.RequestOut:
        return _decided(s, runs.approve(s, request_id=request_id, actor=actor, opinion=opinion))

    return write(request, who, idem, 200, change)


@router.post(
    "/requests/{request_id}/return",
    summary="退回申请（须填写意见）",
    response_model=S.RequestOut,
    responses=responses(401, 403, 404, 409, 422),
)
def return_request(
    request_id: IdPath,
    body: S.ReturnIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """退回须填写意见；可同时把创建进度退回到此前某一阶段（to_stage）。"""

    def change(s: Session, actor: Actor) -> S.RequestOut:
        req = runs.return_request(
            s, request_id=request_id, actor=actor, reason=body.reason, to_stage=body.to_stage
        )
        return _decided(s, req)

    return write(request, who, idem, 200, change)


@router.post(
    "/requests/{request_id}/withdraw",
    summary="撤回本人提交的申请",
    response_model=S.RequestOut,
    responses=responses(401, 403, 404, 409, 422),
)
def withdraw(
    request_id: IdPath,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """只有申请人本人可以撤回尚未审批完毕的申请。"""

    def change(s: Session, actor: Actor) -> S.RequestOut:
        return _decided(s, runs.withdraw(s, request_id=request_id, actor=actor))

    return write(request, who, idem, 200, change)
