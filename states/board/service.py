"""Publishing and revoking 公示 boards, and finding a live board by its public token.

Who publishes: the branch's secretary, or an organiser or administrator of the branch or of an
organisation above it. One live board per run: publishing again while a board is live keeps
its address (posters already printed keep working) and takes the new masking and end date;
after a revocation, publishing makes a new address. A revoked board answers 404 at once; a
board past its end date answers that the 公示 has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from states import audit, public_links
from states.board.models import PublicBoard
from states.errors import Forbidden, InvalidInput, NotFound
from states.models import Organisation, Role, Run
from states.orgs import subtree_filter
from states.queries import visible_campaign
from states.run_core import RunContext, load_run
from states.timeutil import utcnow
from states.users import Actor

SECRETARY_ROLES = frozenset({Role.SECRETARY})
ORGANISER_ROLES = frozenset({Role.ORGANISER, Role.ADMIN})
BRANCH_KIND = "党支部"


@dataclass(frozen=True)
class Published:
    """A live board and whether this call created it (False: the live one was kept)."""

    board: PublicBoard
    org: Organisation
    created: bool

    @property
    def token(self) -> str:
        return public_links.token_for("board", self.board.nonce)


def may_publish(actor: Actor, org: Organisation) -> bool:
    """Whether the actor may publish or revoke the board of `org`'s run."""
    org_id = org.id or 0
    return actor.holds_on(org_id, SECRETARY_ROLES) or actor.holds_here_or_above(
        org_id, org.path, ORGANISER_ROLES
    )


def _check_publisher(actor: Actor, org: Organisation) -> None:
    if not may_publish(actor, org):
        raise Forbidden("只有本支部书记或上级组织员可以发布或撤销公示")


def check_until(until: datetime | None, now: datetime | None = None) -> None:
    """An end date must lie in the future (InvalidInput naming `until`)."""
    if until is not None and until <= (now or utcnow()):
        raise InvalidInput("公示截止日期须晚于现在", details=[{"field": "until"}])


def live_board(session: Session, run_id: int, now: datetime | None = None) -> PublicBoard | None:
    """The run's board that is neither revoked nor past its end date, if any."""
    boards = session.execute(
        select(PublicBoard)
        .where(PublicBoard.run_id == run_id, col(PublicBoard.revoked_at).is_(None))
        .order_by(col(PublicBoard.id).desc())
    ).scalars()
    moment = now or utcnow()
    return next((b for b in boards if b.until is None or b.until > moment), None)


def _publish_ctx(
    session: Session, ctx: RunContext, actor: Actor, *, mask_names: bool, until: datetime | None
) -> Published:
    board = live_board(session, ctx.run.id or 0)
    created = board is None
    if board is None:
        board = PublicBoard(
            run_id=ctx.run.id or 0,
            org_id=ctx.org.id or 0,
            campaign_id=ctx.campaign.id or 0,
            nonce=public_links.new_nonce(),
            published_by=actor.user_id,
        )
    board.mask_names, board.until = mask_names, until
    session.add(board)
    session.flush()
    action = "board.published" if created else "board.updated"
    _audit(session, board, action, actor, mask_names=mask_names, until=_iso(until))
    return Published(board, ctx.org, created)


def publish(
    session: Session, *, run_id: int, actor: Actor, mask_names: bool, until: datetime | None
) -> Published:
    """Publish (or keep and update) the run's board; NotFound out of reach, Forbidden if not
    the branch's secretary or an organiser above."""
    ctx = load_run(session, run_id, actor, lock=True)  # one live board per run
    _check_publisher(actor, ctx.org)
    check_until(until)
    return _publish_ctx(session, ctx, actor, mask_names=mask_names, until=until)


def publish_campaign(
    session: Session,
    *,
    campaign_id: int,
    org_id: int,
    actor: Actor,
    mask_names: bool,
    until: datetime | None,
) -> list[Published]:
    """Publish the board of every branch run of the campaign under `org_id` (all or nothing)."""
    campaign, _, _ = visible_campaign(session, campaign_id, actor)
    org = session.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    _check_publisher(actor, org)
    check_until(until)
    run_ids = session.execute(
        select(Run.id)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(Run.campaign_id == campaign.id, subtree_filter(org.path))
        .where(Organisation.kind == BRANCH_KIND)
        .order_by(Organisation.path)
    ).scalars()
    out = []
    for run_id in list(run_ids):
        ctx = load_run(session, int(run_id), actor, lock=True)
        _check_publisher(actor, ctx.org)
        out.append(_publish_ctx(session, ctx, actor, mask_names=mask_names, until=until))
    return out


def revoke(session: Session, *, run_id: int, actor: Actor) -> PublicBoard:
    """Revoke the run's live board (its address answers 404 from now on); NotFound if none."""
    ctx = load_run(session, run_id, actor, lock=True)
    _check_publisher(actor, ctx.org)
    board = live_board(session, run_id)
    if board is None:
        raise NotFound("该支部没有正在公示的公示栏", details={"run_id": run_id})
    board.revoked_at, board.revoked_by = utcnow(), actor.user_id
    session.add(board)
    session.flush()
    _audit(session, board, "board.revoked", actor)
    return board


@dataclass(frozen=True)
class Found:
    """A board reached by its public token: live, or ended (past its end date)."""

    board: PublicBoard
    ended: bool


def by_token(session: Session, token: str, now: datetime | None = None) -> Found:
    """The board behind a public token; NotFound for a forged, unknown or revoked one.

    A forged or truncated token is refused before any query."""
    nonce = public_links.nonce_of("board", token)
    if nonce is None:
        raise NotFound("公示不存在")
    board = session.execute(
        select(PublicBoard).where(PublicBoard.nonce == nonce)
    ).scalar_one_or_none()
    if board is None or board.revoked_at is not None:
        raise NotFound("公示不存在")
    ended = board.until is not None and board.until <= (now or utcnow())
    return Found(board, ended)


def boards_of(session: Session, run_id: int) -> list[PublicBoard]:
    """Every board the run has had, newest first (for the staff page)."""
    return list(
        session.execute(
            select(PublicBoard)
            .where(PublicBoard.run_id == run_id)
            .order_by(col(PublicBoard.id).desc())
        ).scalars()
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _audit(session: Session, board: PublicBoard, action: str, actor: Actor, **data: object) -> None:
    audit.append(
        session,
        stream=f"board:{board.run_id}",
        action=action,
        actor_id=actor.user_id,
        data={"board_id": board.id, "org_id": board.org_id, **data},
    )
