"""Rehearse a decision before the confirmation page: run it, note the outcome, roll it back.

`rehearse` calls the very service that will act (`states.runs.approve` / `return_request`) in a
transaction that is always rolled back, so the confirmation page only appears for a decision
that would succeed now, and says what it will do (the next stage, the next approver, the new
deadline). A refusal raises the same domain error the real decision would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from sqlmodel import Session

from api.web.confirm import Confirmation
from states import runs
from states.catalog import DONE, Template
from states.db import read_session
from states.errors import Forbidden
from states.glossary import ACTIONS
from states.machines import stage_label
from states.models import Organisation, RequestKind, RequestStatus
from states.models import Request as RequestRow
from states.timeutil import format_local
from states.users import Actor

Action = Literal["approve", "return"]


@dataclass(frozen=True)
class Preview:
    request_id: int
    action: Action
    org_name: str
    campaign_name: str
    request_line: str
    outcome: str

    def confirmation(self, opinion: str, to_stage: str | None, next_url: str) -> Confirmation:
        approve = self.action == "approve"
        word = ACTIONS[self.action]
        field = "opinion" if approve else "reason"
        hidden = {field: opinion, "next": next_url}
        if to_stage:
            hidden["to_stage"] = to_stage
        return Confirmation(
            title=f"确认{word}",
            rows=[
                ("组织", self.org_name),
                ("活动", self.campaign_name),
                ("申请", self.request_line),
                ("审批意见" if approve else f"{word}意见", opinion or "（未填写）"),
            ],
            outcome=self.outcome,
            action=f"/approvals/{self.request_id}/{'approve' if approve else 'return'}",
            hidden=hidden,
            confirm_label=f"确认{word}",
            danger=not approve,
        )


def rehearse(
    request: Request,
    actor: Actor,
    request_id: int,
    action: Action,
    opinion: str,
    to_stage: str | None,
) -> Preview:
    """What deciding `request_id` now would do; raises what the decision itself would raise."""
    with Session(request.app.state.engine, expire_on_commit=False) as s:
        try:
            return _rehearse(s, actor, request_id, action, opinion, to_stage)
        finally:
            s.rollback()


def _rehearse(
    s: Session, actor: Actor, request_id: int, action: Action, opinion: str, to_stage: str | None
) -> Preview:
    req = runs.load_request(s, request_id, actor)  # out of reach: NotFound, the 404 page
    ctx = runs.load_run(s, req.run_id, actor)
    tpl, org = ctx.tpl, ctx.org
    if req.kind == RequestKind.EXTENSION:
        line = f"延期申请：「{stage_label(tpl, req.from_stage)}」阶段延期至 {format_local(req.requested_deadline)}"
    else:
        line = f"推进申请：{stage_label(tpl, req.from_stage)} → {stage_label(tpl, req.to_stage or DONE)}"
    names = (org.name, ctx.campaign.name)
    if action == "return":
        runs.return_request(
            s, request_id=request_id, actor=actor, reason=opinion, to_stage=to_stage
        )
        back = f"；进度一并退回到「{stage_label(tpl, to_stage)}」" if to_stage else ""
        outcome = f"退回后申请结束，意见会通知「{org.name}」，支部修改后可重新申请{back}。"
        return Preview(request_id, action, *names, line, outcome)
    decided = runs.approve(s, request_id=request_id, actor=actor, opinion=opinion or None)
    return Preview(request_id, action, *names, line, _approved(s, decided, org.name, tpl))


def _approved(s: Session, req: RequestRow, org_name: str, tpl: Template) -> str:
    if req.status == RequestStatus.PENDING:
        nxt = s.get(Organisation, req.current_approver_org_id or 0)
        return f"同意后转「{nxt.name if nxt else '上一级'}」审批（第 {req.step + 1} 级）。"
    if req.kind == RequestKind.EXTENSION:
        return f"同意后「{org_name}」本阶段的截止时间改为 {format_local(req.requested_deadline)}。"
    return f"同意后「{org_name}」进入「{stage_label(tpl, req.to_stage or DONE)}」阶段。"


def withdraw_confirmation(
    request: Request, actor: Actor, run_id: int, request_id: int
) -> Confirmation:
    """What 撤回 will do; only the requester may (checked again when confirmed)."""
    with read_session(request.app.state.engine) as s:
        ctx = runs.load_run(s, run_id, actor)
        req = runs.load_request(s, request_id, actor)
        if req.requested_by != actor.user_id:
            raise Forbidden("只有申请人本人可以撤回申请", details={"rule": "not_requester"})
        kind = "延期申请" if req.kind == RequestKind.EXTENSION else "推进申请"
        rows = [
            ("组织", ctx.org.name),
            ("活动", ctx.campaign.name),
            ("申请", f"{kind}（{stage_label(ctx.tpl, req.from_stage)}阶段）"),
            ("提交时间", format_local(req.submitted_at)),
        ]
    return Confirmation(
        title=f"确认{ACTIONS['withdraw']}{kind}",
        rows=rows,
        outcome="撤回后这份申请作废，审批人不再处理；需要时可以修改后重新申请。",
        action=f"/runs/{run_id}/withdraw",
        hidden={"request_id": str(request_id)},
        confirm_label=f"确认{ACTIONS['withdraw']}",
        danger=True,
    )
