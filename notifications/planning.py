"""Planning a batch of claimed notices: recipients, wording, in-app rows and deliveries.

`plan` does it for a batch in one transaction; if that fails, row by row, so one bad notice
(a payload recipients cannot be resolved from, say) is the only one held back: it is released
with a reason, due again after a backoff, and failed for good after `MAX_ATTEMPTS`. An
organisation's wording that fails to render never fails a notice: the built-in wording goes out
and the failure is recorded on the wording and told to whoever saved it (`_report_failures`).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from notifications import mail
from notifications.recipients import resolve
from notifications.render import KIND_LABELS as EVENT_LABELS
from notifications.render import Rendered, render_notice
from states import inbox
from states.db import insert_ignoring_conflicts, unit_of_work
from states.models import Delivery, Organisation, OrgChannel, OutboxMessage, Request, Run
from states.notice_settings import opted_out, override_for, record_template_failure
from states.timeutil import utcnow

MAX_ATTEMPTS = 8
BASE_DELAY = 60.0
MAX_DELAY = 3600.0

log = logging.getLogger("dangjian.relay")


def message_id(dedupe_key: str, channel: str, target: str) -> str:
    """The stable id of one notice through one channel to one target."""
    digest = hashlib.sha256(f"{dedupe_key}|{channel}|{target}".encode()).hexdigest()
    return f"dj-{digest[:32]}"


def backoff(attempts: int) -> float:
    """Seconds before retry number `attempts` (1, 2, …): 1 min, 2, 4, … up to 1 hour."""
    return min(BASE_DELAY * 2 ** max(0, attempts - 1), MAX_DELAY)


@dataclass
class RelayReport:
    """What one pass did, per channel."""

    claimed: int = 0
    done: int = 0
    failed_rows: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        def fmt(c: Counter[str]) -> str:
            return "，".join(f"{k} {v}" for k, v in sorted(c.items())) or "0"

        return (
            f"处理 {self.claimed} 条通知：完成 {self.done}，失败 {self.failed_rows}；"
            f"已发送 {fmt(self.sent)}；稍后重试 {fmt(self.retried)}；"
            f"延后（限流/免打扰）{fmt(self.deferred)}；永久失败 {fmt(self.failed)}"
        )


def _insert_ignore(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    session.execute(insert_ignoring_conflicts(session, model), rows)


def _scope_paths(session: Session, rows: Sequence[OutboxMessage]) -> dict[int, str]:
    """The organisation path each notice is about (its run's branch, else its target)."""
    run_ids = sorted({r.run_id for r in rows if r.run_id})
    by_run: dict[int, str] = {}
    if run_ids:
        by_run = {
            int(i): p
            for i, p in session.execute(
                select(Run.id, Organisation.path)
                .join(Organisation, col(Organisation.id) == col(Run.org_id))
                .where(col(Run.id).in_(run_ids))
            ).all()
        }
    org_ids = sorted({r.org_id for r in rows if r.org_id})
    by_org: dict[int, str] = {}
    if org_ids:
        by_org = {
            int(i): p
            for i, p in session.execute(
                select(Organisation.id, Organisation.path).where(col(Organisation.id).in_(org_ids))
            ).all()
        }
    out = {}
    for r in rows:
        path = by_run.get(r.run_id or 0) or by_org.get(r.org_id or 0)
        if path:
            out[r.id or 0] = path
    return out


def _request_of(row: OutboxMessage) -> int | None:
    rid = row.payload.get("request_id") if isinstance(row.payload, dict) else None
    return rid if isinstance(rid, int) else None


def _done_already(session: Session, rows: Sequence[OutboxMessage]) -> set[int]:
    """Outbox ids of notices whose work was done before they were delivered (a request already
    decided or at another approver; a run already past the stage): their inbox rows are born
    resolved. Two queries for the batch."""
    asks = {r.id or 0: _request_of(r) for r in rows if r.event_kind in inbox.REQUEST_KINDS}
    stages = {
        r.id or 0: (r.run_id, r.dedupe_key.split(":")[2])
        for r in rows
        if r.event_kind in inbox.STAGE_KINDS and r.run_id and r.dedupe_key.count(":") >= 2
    }
    pending: dict[int, int | None] = {}
    if any(asks.values()):
        pending = {
            int(i): org
            for i, status, org in session.execute(
                select(Request.id, Request.status, Request.current_approver_org_id).where(
                    col(Request.id).in_(sorted({v for v in asks.values() if v}))
                )
            ).all()
            if status == "pending"
        }
    now_at: dict[int, str] = {}
    if stages:
        now_at = {
            int(i): st
            for i, st in session.execute(
                select(Run.id, Run.stage).where(
                    col(Run.id).in_(sorted({r for r, _ in stages.values()}))
                )
            ).all()
        }
    by_id = {r.id or 0: r for r in rows}
    done = {oid for oid, rid in asks.items() if rid and pending.get(rid, -1) != by_id[oid].org_id}
    return done | {oid for oid, (run, st) in stages.items() if now_at.get(run or 0) != st}


def _bulletins(session: Session, rows: Sequence[OutboxMessage]) -> dict[int, int]:
    """{outbox id: stored bulletin id} for the batch's bulletin notices (their page)."""
    keys: dict[int, tuple[int, int, str]] = {}
    for r in rows:
        key = inbox.bulletin_key(r.dedupe_key) if r.event_kind == "bulletin" else None
        if key and r.org_id:
            keys[r.id or 0] = (key[0], r.org_id, key[1])
    found = inbox.bulletin_ids(session, list(keys.values()))
    return {oid: found[k] for oid, k in keys.items() if k in found}


def plan(
    engine: Engine,
    rows: Sequence[OutboxMessage],
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    report: RelayReport | None = None,
) -> dict[int, Rendered]:
    """Resolve, render, deliver in-app and record the other deliveries, in one transaction.

    If the batch cannot be planned, each row is planned on its own; a row that still fails is
    rescheduled (or failed for good) with the reason, and is missing from the result.
    """
    now = now or utcnow()
    report = report if report is not None else RelayReport()
    try:
        return _plan(engine, rows, now, env, report)
    except Exception:
        if len(rows) == 1:
            release(engine, rows, reason_for("准备通知时出错"), report, now)
            return {}
        log.exception("planning a batch of %d notices failed; planning them one by one", len(rows))
    rendered: dict[int, Rendered] = {}
    for row in rows:
        try:
            rendered.update(_plan(engine, [row], now, env, report))
        except Exception:
            log.exception("planning notice %s failed", row.id)
            release(engine, [row], reason_for("准备通知时出错"), report, now)
    return rendered


def reason_for(what: str) -> str:
    """Our own short reason for the exception being handled (never a remote body)."""
    exc = sys.exc_info()[1]
    return f"{what}：{type(exc).__name__}: {exc}"[:500] if exc else what


def release(
    engine: Engine,
    rows: Sequence[OutboxMessage],
    reason: str,
    report: RelayReport,
    now: datetime,
) -> None:
    """Give back claimed rows that could not be worked on: due again after a backoff, or failed
    for good after MAX_ATTEMPTS; never left "sending"."""
    with unit_of_work(engine) as s:
        for row in rows:
            attempts = row.attempts + 1
            values: dict[str, Any] = {
                "locked_until": None,
                "attempts": attempts,
                "last_error": reason,
            }
            if attempts >= MAX_ATTEMPTS:
                values.update(status="failed", done_at=now)
                report.failed_rows += 1
            else:
                values.update(
                    status="retry", next_attempt_at=now + timedelta(seconds=backoff(attempts))
                )
            s.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id, col(OutboxMessage.status) == "sending")
                .values(**values)
            )


def _plan(
    engine: Engine,
    rows: Sequence[OutboxMessage],
    now: datetime,
    env: Mapping[str, str] | None,
    report: RelayReport,
) -> dict[int, Rendered]:
    email_on = mail.SmtpSettings.from_env(env) is not None
    rendered: dict[int, Rendered] = {}
    with unit_of_work(engine) as s:
        audience = resolve(s, rows)
        paths = _scope_paths(s, rows)
        org_ids = {o for rec in audience.values() for o in rec.orgs}
        org_channels: dict[int, list[OrgChannel]] = {}
        if org_ids:
            for ch in s.execute(
                select(OrgChannel).where(
                    col(OrgChannel.org_id).in_(sorted(org_ids)), col(OrgChannel.enabled).is_(True)
                )
            ).scalars():
                org_channels.setdefault(ch.org_id, []).append(ch)
        no_email = opted_out(
            s, sorted({u for rec in audience.values() for u in rec.users}), "email"
        )
        overrides: dict[tuple[str, str], tuple[int, str] | None] = {}
        failures: dict[int, list[Any]] = {}  # override id -> [count, last error]
        inbox_rows: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        done = _done_already(s, rows)
        bulletins = _bulletins(s, rows)
        for row in rows:
            rid = row.id or 0
            path = paths.get(rid)
            key = (path or "", row.event_kind)
            if path and key not in overrides:
                overrides[key] = override_for(s, path, row.event_kind)
            found = overrides.get(key)
            payload = row.payload
            if rid in bulletins:
                payload = {**payload, "bulletin_id": bulletins[rid]}
            msg, error = render_notice(
                row.event_kind, payload, override=found[1] if found else None, env=env
            )
            if found and error:
                failures.setdefault(found[0], [0, error])[0] += 1
                failures[found[0]][1] = error
            rendered[rid] = msg
            rec = audience[rid]

            def add(
                channel: str, target: str, status: str = "pending", row: OutboxMessage = row
            ) -> None:
                deliveries.append(
                    {
                        "outbox_id": row.id,
                        "channel": channel,
                        "target": target,
                        "message_id": message_id(row.dedupe_key, channel, target),
                        "status": status,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "sent_at": now if status == "sent" else None,
                        "created_at": now,
                    }
                )

            inbox_rows += inbox.rows_for(
                rec.user_ids(),
                kind=row.event_kind,
                title=msg.title,
                body=msg.inapp,
                run_id=row.run_id,
                org_id=row.org_id,
                outbox_id=rid,
                now=now,
                request_id=_request_of(row),
                resolved_at=now if rid in done else None,
            )
            for uid in rec.user_ids():
                add("inapp", f"user:{uid}", "sent")
            if email_on:
                for addr in sorted(
                    {
                        p.email.strip().lower()
                        for p in rec.users.values()
                        if p.email and p.user_id not in no_email
                    }
                ):
                    add("email", addr)
            for org_id in sorted(rec.orgs):
                for ch in org_channels.get(org_id, []):
                    add(ch.kind, f"org_channel:{ch.id}")
        inbox.insert_rows(s, inbox_rows)
        _insert_ignore(s, Delivery, deliveries)
    if inbox_rows:
        report.sent["inapp"] += len(inbox_rows)
    _report_failures(engine, failures, now)
    return rendered


def _report_failures(engine: Engine, failures: Mapping[int, list[Any]], now: datetime) -> None:
    """Record each failing override on its row and tell its saver; never fails the pass."""
    for template_id, (count, error) in failures.items():
        try:
            with unit_of_work(engine) as s:
                record_template_failure(
                    s, template_id, error, labels=EVENT_LABELS, count=count, now=now
                )
        except Exception:
            log.exception("recording the failure of notice template %s failed", template_id)
