"""公示 boards: publish a branch's board (or every branch's under a committee), revoke it,
read its 意见箱. The boards themselves are public pages at `/b/{token}` (api/web/public_board)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import MAX_ID, Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from api.web.public_board import public_url
from states import public_links
from states.board import messages, service
from states.board.models import PublicBoard
from states.run_core import load_run
from states.timeutil import end_of_local_day
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["公示"])


class BoardIn(S.In):
    mask_names: bool = Field(True, description="党员姓名是否遮盖（张*）")
    until: dt.date | None = Field(
        None, description="公示截止日期（北京时间当天 23:59:59）；不填则直到撤销"
    )


class CampaignBoardsIn(BoardIn):
    org_id: int = Field(ge=1, le=MAX_ID, description="党委或党总支：为其下每个支部发布公示")


class BoardOut(S.Out):
    url: str = Field(description="公示的公开地址（无需登录）")
    run_id: int
    org_name: str
    mask_names: bool
    published_at: dt.datetime
    until: dt.datetime | None
    revoked_at: dt.datetime | None = None
    created: bool = Field(True, description="false：沿用正在公示的地址，只更新遮盖与截止日期")


class CampaignBoardsOut(S.Out):
    boards: list[BoardOut]


class MessageOut(S.Out):
    id: int
    message: str
    contact: str | None
    created_at: dt.datetime


class BoardStatusOut(S.Out):
    board: BoardOut | None = Field(description="正在公示的公示栏；没有则为 null")
    messages: list[MessageOut]
    total: int


def _until(day: dt.date | None) -> dt.datetime | None:
    return end_of_local_day(day) if day else None


def _out(request: Request, board: PublicBoard, org_name: str, created: bool = True) -> BoardOut:
    return BoardOut(
        url=public_url(request, public_links.token_for("board", board.nonce)),
        run_id=board.run_id,
        org_name=org_name,
        mask_names=board.mask_names,
        published_at=board.published_at,
        until=board.until,
        revoked_at=board.revoked_at,
        created=created,
    )


def _published(request: Request, p: service.Published) -> BoardOut:
    return _out(request, p.board, p.org.name, p.created)


@router.post(
    "/runs/{run_id}/board",
    summary="发布本支部公示（公开承诺、践诺、点评与评议结果）",
    response_model=BoardOut,
    responses=responses(401, 403, 404, 422),
)
def publish_board(
    run_id: IdPath,
    body: BoardIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """本支部书记或上级组织员发布。已有正在公示的公示栏时沿用原地址（已张贴的二维码继续有效），
    只更新姓名遮盖与截止日期；撤销后再发布则生成新地址。"""

    def change(s: Session, actor: Actor) -> BoardOut:
        p = service.publish(
            s, run_id=run_id, actor=actor, mask_names=body.mask_names, until=_until(body.until)
        )
        return _published(request, p)

    return write(request, who, idem, 200, change)


@router.delete(
    "/runs/{run_id}/board",
    summary="撤销本支部公示（公开地址立即失效）",
    response_model=BoardOut,
    responses=responses(401, 403, 404),
)
def revoke_board(
    run_id: IdPath,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """撤销后，任何人打开原地址都得到 404；没有正在公示的公示栏时返回 404。"""

    def change(s: Session, actor: Actor) -> BoardOut:
        board = service.revoke(s, run_id=run_id, actor=actor)
        return _out(request, board, load_run(s, run_id, actor).org.name)

    return write(request, who, idem, 200, change)


@router.get(
    "/runs/{run_id}/board",
    summary="本支部公示与意见箱留言",
    response_model=BoardStatusOut,
    responses=responses(401, 404, 422),
)
def board_status(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> BoardStatusOut:
    """正在公示的公示栏（没有则为 null），以及群众在本支部各次公示上的留言（新的在前）。"""
    ctx = load_run(s, run_id, actor)
    board = service.live_board(s, run_id)
    rows, total = messages.messages_of(s, run_id, limit=p.limit, offset=p.offset)
    return BoardStatusOut(
        board=_out(request, board, ctx.org.name) if board else None,
        messages=[MessageOut.model_validate(m, from_attributes=True) for m in rows],
        total=total,
    )


@router.post(
    "/campaigns/{campaign_id}/boards",
    summary="为党委（党总支）下每个支部发布公示",
    response_model=CampaignBoardsOut,
    responses=responses(401, 403, 404, 422),
)
def publish_campaign_boards(
    campaign_id: IdPath,
    body: CampaignBoardsIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """org_id 之下本活动的每个支部各发布一个公示（全部成功或全部不写入），返回各自的公开地址。
    须为该组织或其上级的组织员。"""

    def change(s: Session, actor: Actor) -> CampaignBoardsOut:
        published = service.publish_campaign(
            s,
            campaign_id=campaign_id,
            org_id=body.org_id,
            actor=actor,
            mask_names=body.mask_names,
            until=_until(body.until),
        )
        return CampaignBoardsOut(boards=[_published(request, p) for p in published])

    return write(request, who, idem, 200, change)
