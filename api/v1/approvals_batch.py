"""Batch approvals (批量审批) and a committee's stock opinions (常用意见) over JSON."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import IdPath, engine_of, reader
from api.errors import responses
from api.schemas import In
from api.security import authenticated
from states import opinions
from states.batch import MAX_ITEMS, MAX_OPINION, BatchItem, decide_batch
from states.db import unit_of_work
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["审批"])


class BatchItemIn(In):
    request_id: int = Field(ge=1, le=2_147_483_647, description="申请编号")
    action: Literal["approve", "return"] = Field(description="approve 同意；return 退回")
    opinion: str | None = Field(
        default=None, max_length=MAX_OPINION, description="意见；退回时必填"
    )


class BatchIn(In):
    items: list[BatchItemIn] = Field(
        min_length=1, max_length=MAX_ITEMS, description=f"要决定的申请（最多 {MAX_ITEMS} 个）"
    )


class BatchItemOut(BaseModel):
    request_id: int
    ok: bool = Field(description="这一项是否已处理")
    status: str | None = Field(description="处理后申请的状态；未找到时为空")
    code: str = Field(description="ok，或拒绝的原因代码（not_found、conflict、forbidden…）")
    message: str = Field(description="结果说明（中文）")


class BatchOut(BaseModel):
    results: list[BatchItemOut]
    succeeded: int
    failed: int


class OpinionIn(In):
    org_id: int = Field(ge=1, le=2_147_483_647, description="党委或党总支的编号")
    text: str = Field(min_length=1, max_length=opinions.MAX_TEXT, description="意见内容")


class OpinionOut(BaseModel):
    id: int
    org_id: int
    org_name: str
    text: str


@router.post(
    "/approvals/batch",
    summary="批量审批（逐项决定）",
    response_model=BatchOut,
    responses=responses(401, 422),
)
def approve_batch(
    body: BatchIn, request: Request, actor: Actor = Depends(authenticated)
) -> BatchOut:
    """每一项单独检查、决定、记入审计（各自一个事务）；某一项被拒绝不影响其他项。
    退回须填写意见；同一批中重复的申请只处理第一次；范围之外的申请与不存在的一样答“未找到”。"""
    items = [BatchItem(i.request_id, i.action, i.opinion) for i in body.items]
    results = decide_batch(engine_of(request), actor, items)
    out = [BatchItemOut(**vars(r)) for r in results]
    ok = sum(r.ok for r in results)
    return BatchOut(results=out, succeeded=ok, failed=len(results) - ok)


@router.get(
    "/opinions",
    summary="我的常用意见",
    response_model=list[OpinionOut],
    responses=responses(401),
)
def list_opinions(
    actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> list[OpinionOut]:
    """本人任委员或管理员的各组织保存的常用意见。"""
    return [OpinionOut(**vars(v)) for v in opinions.list_for(s, actor)]


@router.post(
    "/opinions",
    summary="添加常用意见",
    status_code=201,
    response_model=OpinionOut,
    responses=responses(401, 403, 404, 409, 422),
)
def add_opinion(
    body: OpinionIn, request: Request, actor: Actor = Depends(authenticated)
) -> OpinionOut:
    """由该组织的委员或管理员添加；同一组织内不能重复，最多 50 条。"""
    with unit_of_work(engine_of(request)) as s:
        view = opinions.add(s, actor=actor, org_id=body.org_id, text=body.text)
    return OpinionOut(**vars(view))


@router.delete(
    "/opinions/{opinion_id}",
    summary="删除常用意见",
    status_code=204,
    responses=responses(401, 403, 404, 422),
)
def delete_opinion(
    opinion_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> None:
    """由该组织的委员或管理员删除；范围之外的意见与不存在的一样答 404。"""
    with unit_of_work(engine_of(request)) as s:
        opinions.remove(s, actor=actor, opinion_id=opinion_id)
