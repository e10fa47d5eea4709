"""One evidence record: read it with its revisions and uses, void it, amend it.

A record belongs to an organisation and may count for several runs' stages (see
`POST /api/v1/runs/{id}/evidence/link`). Out of reach is 404, like a record that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, idempotency_key, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from states.evidence import corrections, queries
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["材料"])


def detail(s: Session, evidence_id: int, actor: Actor) -> S.EvidenceDetail:
    view = queries.record_view(s, evidence_id, actor)
    base = S.EvidenceOut.model_validate(view.evidence, from_attributes=True)
    return S.EvidenceDetail(
        **base.model_dump(),
        revisions=[S.RevisionOut.model_validate(r, from_attributes=True) for r in view.revisions],
        uses=[S.UseOut.model_validate(u, from_attributes=True) for u in view.uses],
        may_correct=view.may_correct,
    )


@router.get(
    "/evidence/{evidence_id}",
    summary="材料详情：内容、更正前的各版本、计入哪些阶段",
    response_model=S.EvidenceDetail,
    responses=responses(401, 404, 422),
)
def get_evidence(
    evidence_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> S.EvidenceDetail:
    """管辖范围内可见；may_correct 表示调用者能否作废或更正。"""
    return detail(s, evidence_id, actor)


@router.post(
    "/evidence/{evidence_id}/void",
    summary="作废材料（须写理由）",
    response_model=S.EvidenceDetail,
    responses=responses(401, 403, 404, 409, 422),
)
def void_evidence(
    evidence_id: IdPath,
    body: S.VoidIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """录入人或上级党组织委员可作废；作废后不再计入任何阶段的条件。用到它的阶段已结束时返回 409。"""

    def change(s: Session, actor: Actor) -> S.EvidenceDetail:
        corrections.void(s, evidence_id=evidence_id, actor=actor, reason=body.reason)
        return detail(s, evidence_id, actor)

    return write(request, who, idem, 200, change)


@router.patch(
    "/evidence/{evidence_id}",
    summary="更正材料内容（旧内容保留在历史中）",
    response_model=S.EvidenceDetail,
    responses=responses(401, 403, 404, 409, 422),
)
def amend_evidence(
    evidence_id: IdPath,
    body: S.AmendIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """给出更正后的完整内容（类型不变）；录入人或上级党组织委员可更正，用到它的阶段须仍在进行。"""

    def change(s: Session, actor: Actor) -> S.EvidenceDetail:
        corrections.amend(
            s, evidence_id=evidence_id, actor=actor, data=body.data, reason=body.reason
        )
        return detail(s, evidence_id, actor)

    return write(request, who, idem, 200, change)
