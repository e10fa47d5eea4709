"""Reading records: one record with its revisions and uses; the records a stage may reuse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from states.catalog import DONE
from states.evidence.corrections import load_record, may_correct
from states.evidence.records import accepted_kinds
from states.machines import stage_label
from states.models import Campaign, Evidence, EvidenceLink, EvidenceRevision, Organisation, Run
from states.run_core import load_run
from states.timeutil import utcnow
from states.users import Actor

#: How far back "use an existing record" looks.
REUSE_WINDOW = timedelta(days=365)
MAX_REUSABLE = 200


@dataclass(frozen=True)
class Use:
    """One (run, stage) a record counts for, in words."""

    run_id: int
    stage: str
    stage_name: str
    campaign_id: int
    campaign: str
    open: bool
    linked_at: object


@dataclass(frozen=True)
class RecordView:
    """A record with its organisation, earlier contents (oldest first) and uses."""

    evidence: Evidence
    org: Organisation
    revisions: list[EvidenceRevision]
    uses: list[Use]
    may_correct: bool


def _uses(session: Session, evidence_id: int) -> list[Use]:
    rows = session.execute(
        select(EvidenceLink, Run, Campaign)
        .join(Run, col(Run.id) == col(EvidenceLink.run_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .where(EvidenceLink.evidence_id == evidence_id)
        .order_by(col(EvidenceLink.id))
    ).all()
    out = []
    for ln, run, campaign in rows:
        tpl = load_run(session, run.id or 0, None).tpl
        is_open = run.stage == ln.stage and run.stage != DONE
        name = stage_label(tpl, ln.stage)
        out.append(
            Use(run.id or 0, ln.stage, name, campaign.id or 0, campaign.name, is_open, ln.linked_at)
        )
    return out


def record_view(session: Session, evidence_id: int, actor: Actor) -> RecordView:
    """The record within the actor's reach (NotFound otherwise), with its history and uses."""
    ev, org = load_record(session, evidence_id, actor)
    revisions = list(
        session.execute(
            select(EvidenceRevision)
            .where(EvidenceRevision.evidence_id == evidence_id)
            .order_by(col(EvidenceRevision.version))
        ).scalars()
    )
    return RecordView(ev, org, revisions, _uses(session, evidence_id), may_correct(ev, org, actor))


def reusable(session: Session, run_id: int, actor: Actor) -> list[Evidence]:
    """The organisation's active records of the last 12 months that the current stage accepts
    and that do not count for it yet, newest first (at most 200)."""
    ctx = load_run(session, run_id, actor)
    if ctx.run.stage == DONE:
        return []
    kinds = accepted_kinds(ctx.tpl.stage(ctx.run.stage))
    here = select(EvidenceLink.evidence_id).where(
        EvidenceLink.run_id == ctx.run.id, EvidenceLink.stage == ctx.run.stage
    )
    stmt = (
        select(Evidence)
        .where(
            Evidence.org_id == ctx.org.id,
            Evidence.status == "active",
            col(Evidence.kind).in_(kinds),
            col(Evidence.created_at) >= utcnow() - REUSE_WINDOW,
            col(Evidence.id).not_in(here),
        )
        .order_by(col(Evidence.created_at).desc(), col(Evidence.id).desc())
        .limit(MAX_REUSABLE)
    )
    return list(session.execute(stmt).scalars())
