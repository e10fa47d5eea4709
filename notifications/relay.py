"""The outbox relay: claim due notices, fan them out to every channel, record each result.

One pass (`run_once`):

1. **Claim** a batch of due outbox rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite takes
   its write lock) and lease them for a while, so two relays never work on the same row.
2. **Plan** (`notifications.planning`) in one transaction: resolve the recipients, render the
   notice, write the in-app inbox rows (delivered right there, exactly once) and one `delivery`
   row per other channel and target, each with a stable message id. Planning again adds nothing
   (unique keys).
3. **Send** each pending delivery and record its result in its own small transaction. A relay
   killed after sending and before recording leaves the delivery pending: once the lease runs
   out, the next pass sends it again, with the same message id, so the receiver can drop it.
4. **Finish**: a row with nothing pending is done (or failed, if a channel failed for good);
   otherwise it is due again when its earliest pending delivery is.

Retries back off exponentially; robots' own throttles and our per-robot rate limits defer a
delivery without counting an attempt; a permanent failure is recorded and shown, never dropped.

One notice never stops another: an organisation's wording that fails falls back to the built-in
wording (and the failure is recorded on the wording and told to whoever saved it); a batch that
cannot be planned is planned row by row, and a row that still fails is retried with backoff and
fails for good after `MAX_ATTEMPTS`; a sending error is that delivery's failure; and whatever
escapes a pass releases the rows it claimed before it propagates.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from notifications import channels, mail
from notifications.planning import (
    MAX_ATTEMPTS,
    RelayReport,
    backoff,
    message_id,
    plan,
    reason_for,
    release,
)
from notifications.recipients import ESCALATIONS
from notifications.render import Rendered, render
from states.db import unit_of_work
from states.models import (
    Delivery,
    Organisation,
    OrgChannel,
    OutboxMessage,
)
from states.notice_settings import (
    KIND_LABELS,
    channels_of,
    in_quiet_hours,
    mask_url,
)
from states.timeutil import to_local, utcnow

LEASE = timedelta(minutes=2)
ROBOTS = frozenset({"wecom", "dingtalk", "feishu"})
MARKDOWN_ROBOTS = frozenset({"wecom", "dingtalk"})  # they show the title as markdown too

log = logging.getLogger("dangjian.relay")


def claim(engine: Engine, *, batch: int = 100, now: datetime | None = None) -> list[OutboxMessage]:
    """Lease up to `batch` due outbox rows to this relay."""
    now = now or utcnow()
    with unit_of_work(engine) as s:
        stmt = (
            select(OutboxMessage.id)
            .where(
                col(OutboxMessage.status).in_(["pending", "retry", "sending"]),
                col(OutboxMessage.next_attempt_at) <= now,
                or_(
                    col(OutboxMessage.locked_until).is_(None), col(OutboxMessage.locked_until) < now
                ),
            )
            .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
            .limit(batch)
        )
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(s.execute(stmt).scalars())
        if not ids:
            return []
        s.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(ids))
            .values(status="sending", locked_until=now + LEASE)
        )
        rows = list(
            s.execute(
                select(OutboxMessage)
                .where(col(OutboxMessage.id).in_(ids))
                .order_by(col(OutboxMessage.id))
            ).scalars()
        )
    return rows


def _robot_wait(session: Session, ch: OrgChannel, now: datetime) -> datetime | None:
    """When this robot may take the next message, if not now (paused or at its rate limit)."""
    if ch.paused_until is not None and ch.paused_until > now:
        return ch.paused_until
    latest: datetime | None = None
    for limits in (channels.LIMITS, channels.BURST_LIMITS):
        limit, window = limits.get(ch.kind, (0, 0.0))
        if not limit:
            continue
        since = now - timedelta(seconds=window)
        sent = list(
            session.execute(
                select(Delivery.sent_at)
                .where(
                    Delivery.channel == ch.kind,
                    Delivery.target == f"org_channel:{ch.id}",
                    col(Delivery.sent_at) > since,
                )
                .order_by(col(Delivery.sent_at))
            ).scalars()
        )
        if len(sent) >= limit:
            oldest = sent[len(sent) - limit]
            assert oldest is not None
            until = oldest + timedelta(seconds=window)
            latest = until if latest is None else max(latest, until)
    return latest


def _send(
    d: Delivery, ch: OrgChannel | None, msg: channels.Message, env: Mapping[str, str] | None
) -> channels.Result:
    if d.channel == "email":
        settings = mail.SmtpSettings.from_env(env)
        if settings is None:
            return channels.Result(ok=False, permanent=True, detail="SMTP is not configured")
        return mail.send_email(msg, d.target, settings)
    if ch is None:
        return channels.Result(ok=False, permanent=True, detail="channel was removed")
    if d.channel == "webhook":
        return channels.send_webhook(msg, ch.url, ch.secret)
    if d.channel == "wecom":
        return channels.send_wecom(msg, ch.url, env=env)
    if d.channel == "dingtalk":
        return channels.send_dingtalk(msg, ch.url, ch.secret, env=env)
    if d.channel == "feishu":
        return channels.send_feishu(msg, ch.url, ch.secret, env=env)
    return channels.Result(ok=False, permanent=True, detail=f"unknown channel {d.channel}")


def deliver(
    engine: Engine,
    rows: Sequence[OutboxMessage],
    rendered: Mapping[int, Rendered],
    report: RelayReport,
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Send every due pending delivery of `rows`; record each result at once."""
    now = now or utcnow()
    by_id = {r.id: r for r in rows}
    with unit_of_work(engine) as s:
        pending = list(
            s.execute(
                select(Delivery)
                .where(
                    col(Delivery.outbox_id).in_(list(by_id)),
                    Delivery.status == "pending",
                    col(Delivery.next_attempt_at) <= now,
                )
                .order_by(col(Delivery.id))
            ).scalars()
        )
    started = time.monotonic()
    for d in pending:
        if time.monotonic() - started > LEASE.total_seconds() * 0.75:
            # Slow receivers: stop before the lease runs out and another relay may take these
            # rows; what is left stays pending and `finish` makes it due again at once.
            break
        r = rendered.get(d.outbox_id)
        if r is None:
            continue
        try:
            _deliver_one(engine, d, by_id[d.outbox_id], r, report, now, env)
        except Exception:  # one delivery's trouble is that delivery's failed attempt, no more
            log.exception("delivery %s failed", d.id)
            failed = channels.Result(ok=False, detail=reason_for("发送时出错"))
            _record(engine, d, None, failed, report, now)


def _deliver_one(
    engine: Engine,
    d: Delivery,
    row: OutboxMessage,
    r: Rendered,
    report: RelayReport,
    now: datetime,
    env: Mapping[str, str] | None,
) -> None:
    """Send one delivery now, or defer it (robot paused, rate limit, quiet hours)."""
    ch: OrgChannel | None = None
    with unit_of_work(engine) as s:
        if d.target.startswith("org_channel:"):
            ch = s.get(OrgChannel, int(d.target.split(":", 1)[1]))
        if ch is not None and d.channel in ROBOTS:
            wait = _robot_wait(s, ch, now)
            quiet_end = in_quiet_hours(ch.quiet_hours, to_local(now))
            if quiet_end is not None and not (
                row.event_kind in ESCALATIONS and ch.escalations_in_quiet
            ):
                wait = max(wait or quiet_end, quiet_end)
            if wait is not None:
                s.execute(
                    update(Delivery).where(col(Delivery.id) == d.id).values(next_attempt_at=wait)
                )
                report.deferred[d.channel] += 1
                return
    msg = channels.Message(
        id=d.message_id,
        event_kind=row.event_kind,
        title=(r.markdown_title or r.title) if d.channel in MARKDOWN_ROBOTS else r.title,
        text=r.text,
        html=r.html,
        markdown=r.markdown,
        link=r.link,
    )
    result = _send(d, ch, msg, env)
    _record(engine, d, ch, result, report, now)


def _record(
    engine: Engine,
    d: Delivery,
    ch: OrgChannel | None,
    result: channels.Result,
    report: RelayReport,
    now: datetime,
) -> None:
    attempts = d.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_error": (result.detail or None) and result.detail[:500],
    }
    if result.ok:
        values.update(status="sent", sent_at=now, last_error=None)
        report.sent[d.channel] += 1
    elif result.permanent or attempts >= MAX_ATTEMPTS:
        values.update(status="failed")
        report.failed[d.channel] += 1
    else:
        delay = max(result.retry_after or 0.0, backoff(attempts))
        values.update(next_attempt_at=now + timedelta(seconds=delay))
        report.retried[d.channel] += 1
    with unit_of_work(engine) as s:
        s.execute(update(Delivery).where(col(Delivery.id) == d.id).values(**values))
        if ch is not None and result.robot_pause:
            s.execute(
                update(OrgChannel)
                .where(col(OrgChannel.id) == ch.id)
                .values(paused_until=now + timedelta(seconds=result.robot_pause))
            )


def finish(
    engine: Engine,
    rows: Sequence[OutboxMessage],
    report: RelayReport,
    *,
    now: datetime | None = None,
) -> None:
    """Close each row whose deliveries are all settled; reschedule the others."""
    now = now or utcnow()
    ids = [r.id for r in rows]
    with unit_of_work(engine) as s:
        stats = s.execute(
            sa_select(
                col(Delivery.outbox_id),
                col(Delivery.status),
                func.count(),
                func.min(col(Delivery.next_attempt_at)),
                func.max(col(Delivery.last_error)),
            )
            .where(col(Delivery.outbox_id).in_(ids))
            .group_by(col(Delivery.outbox_id), col(Delivery.status))
        ).all()
        per: dict[int, dict[str, tuple[int, datetime | None, str | None]]] = {}
        for oid, status, n, first_due, err in stats:
            per.setdefault(int(oid), {})[status] = (int(n), first_due, err)
        for row in rows:
            st = per.get(row.id or 0, {})
            if "pending" in st:
                values: dict[str, Any] = {
                    "status": "retry",
                    "next_attempt_at": st["pending"][1] or now,
                    "locked_until": None,
                    "attempts": row.attempts + 1,
                }
            elif "failed" in st:
                values = {
                    "status": "failed",
                    "done_at": now,
                    "locked_until": None,
                    "last_error": (st["failed"][2] or "delivery failed")[:500],
                }
                report.failed_rows += 1
            else:
                values = {
                    "status": "done",
                    "done_at": now,
                    "locked_until": None,
                    "last_error": None,
                }
                report.done += 1
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(**values))


def run_once(
    engine: Engine,
    *,
    batch: int = 100,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> RelayReport:
    """One pass of the relay over at most `batch` due notices."""
    env = os.environ if env is None else env
    report = RelayReport()
    rows = claim(engine, batch=batch, now=now)
    report.claimed = len(rows)
    if not rows:
        return report
    try:
        rendered = plan(engine, rows, now=now, env=env, report=report)
        planned = [r for r in rows if (r.id or 0) in rendered]
        deliver(engine, planned, rendered, report, now=now, env=env)
        finish(engine, planned, report, now=now)
    except BaseException:
        # Whatever escapes (the database gone, an interrupt): give the claimed rows back.
        reason = reason_for("中继出错")
        try:
            release(engine, rows, reason, report, now or utcnow())
        except Exception:
            log.exception(
                "releasing %d claimed notices failed; their lease will run out", len(rows)
            )
        raise
    return report


def drain(
    engine: Engine,
    *,
    batch: int = 100,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    max_passes: int = 1000,
) -> RelayReport:
    """Run passes until nothing is due; return the combined report."""
    total = RelayReport()
    for _ in range(max_passes):
        r = run_once(engine, batch=batch, now=now, env=env)
        if r.claimed == 0:
            break
        total.claimed += r.claimed
        total.done += r.done
        total.failed_rows += r.failed_rows
        for name in ("sent", "retried", "deferred", "failed"):
            getattr(total, name).update(getattr(r, name))
    return total


def send_test(
    engine: Engine, org: Organisation, *, env: Mapping[str, str] | None = None
) -> list[tuple[str, channels.Result]]:
    """Send a test notice through each enabled channel of `org` now; return (label, result)."""
    env = os.environ if env is None else env
    with unit_of_work(engine) as s:
        chans = [c for c in channels_of(s, org.id or 0) if c.enabled]
    now = utcnow()
    payload = {
        "org_name": org.name,
        "org_code": org.code,
        "sent_at": to_local(now).strftime("%Y-%m-%d %H:%M"),
    }
    r = render("test", payload, env=env)
    out = []
    for ch in chans:
        target = f"org_channel:{ch.id}"
        msg = channels.Message(
            id=message_id(f"test:{now.isoformat()}", ch.kind, target),
            event_kind="test",
            title=r.title,
            text=r.text,
            html=r.html,
            markdown=r.markdown,
            link=r.link,
        )
        d = Delivery(outbox_id=0, channel=ch.kind, target=target, message_id=msg.id)
        label = f"#{ch.id} {KIND_LABELS.get(ch.kind, ch.kind)} {mask_url(ch.url)}"
        out.append((label, _send(d, ch, msg, env)))
    return out
