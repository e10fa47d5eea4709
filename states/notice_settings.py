"""Where an organisation's notices go (robots, webhooks), who opted out, and its own wording."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import delete
from sqlmodel import Session, col, select

from states import audit, inbox, outbound
from states.errors import InvalidInput, NotFound
from states.models import (
    ChannelKind,
    InboxItem,
    NoticeTemplate,
    NotifyOptOut,
    Organisation,
    OrgChannel,
)
from states.orgs import ancestor_paths
from states.timeutil import utcnow

QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
KINDS = tuple(k.value for k in ChannelKind)
KIND_LABELS = {
    "wecom": "企业微信群机器人",
    "dingtalk": "钉钉群机器人",
    "feishu": "飞书群机器人",
    "webhook": "Webhook",
}
OPT_OUT_CHANNELS = ("email",)


@dataclass(frozen=True)
class ChannelSpec:
    """A channel as given by a person; `url`/`secret` None keep the stored ones (by `id`)."""

    kind: str
    url: str | None = None
    secret: str | None = None
    enabled: bool = True
    quiet_hours: str | None = None
    escalations_in_quiet: bool = True
    id: int | None = None


def mask(value: str | None, keep: int = 4) -> str | None:
    """Show only the last `keep` characters of a secret."""
    if not value:
        return None
    return "*" * max(4, len(value) - keep) + value[-keep:] if len(value) > keep else "****"


def mask_url(url: str) -> str:
    """Hide the key-like parts of a robot URL: query values and long path segments."""
    if not url.startswith(("http://", "https://")):
        return mask(url) or ""
    parts = urlsplit(url)
    query = urlencode([(k, mask(v) or "") for k, v in parse_qsl(parts.query)], safe="*")
    segments = [mask(seg) if len(seg) >= 16 else seg for seg in parts.path.split("/")]
    return urlunsplit((parts.scheme, parts.netloc, "/".join(s or "" for s in segments), query, ""))


def _check(spec: ChannelSpec, index: int) -> None:
    where = f"channels.{index}"
    if spec.kind not in KINDS:
        raise InvalidInput(
            f"未知的渠道类型：{spec.kind}（可选：{'、'.join(KINDS)}）",
            details=[{"field": f"{where}.kind"}],
        )
    if spec.url is not None:
        url = spec.url.strip()
        if not url:
            raise InvalidInput("地址不能为空", details=[{"field": f"{where}.url"}])
        _check_url(spec.kind, url, f"{where}.url")
    if spec.quiet_hours is not None and spec.quiet_hours and not QUIET.match(spec.quiet_hours):
        raise InvalidInput(
            "免打扰时段格式为 HH:MM-HH:MM，如 22:00-07:30",
            details=[{"field": f"{where}.quiet_hours"}],
        )


def _check_url(kind: str, url: str, field: str) -> None:
    """A full URL must pass the outbound policy (states/outbound.py); a robot may give its key."""
    is_http = url.lower().startswith(("http://", "https://"))
    if kind == ChannelKind.WEBHOOK and not is_http:
        raise InvalidInput("Webhook 地址须以 http:// 或 https:// 开头", details=[{"field": field}])
    if not is_http and not re.fullmatch(r"[A-Za-z0-9_\-]{8,200}", url):
        raise InvalidInput(
            "机器人地址须为完整网址，或仅为其 key / access_token", details=[{"field": field}]
        )
    refused = outbound.url_refusal(url) if is_http else None
    if refused:
        raise InvalidInput(f"地址被拒绝：{refused}", details=[{"field": field, "reason": refused}])


def channels_of(session: Session, org_id: int) -> list[OrgChannel]:
    return list(
        session.execute(
            select(OrgChannel).where(OrgChannel.org_id == org_id).order_by(col(OrgChannel.id))
        ).scalars()
    )


def add_channel(
    session: Session, org: Organisation, spec: ChannelSpec, *, actor_id: int | None = None
) -> OrgChannel:
    """Add (or update, by kind and URL) one channel of an organisation."""
    _check(spec, 0)
    if spec.url is None:
        raise InvalidInput("请填写地址", details=[{"field": "url"}])
    url = spec.url.strip()
    existing = session.execute(
        select(OrgChannel).where(
            OrgChannel.org_id == org.id, OrgChannel.kind == spec.kind, OrgChannel.url == url
        )
    ).scalar_one_or_none()
    ch = existing or OrgChannel(org_id=org.id or 0, kind=spec.kind, url=url)
    if spec.secret is not None:
        ch.secret = spec.secret.strip() or None
    ch.enabled = spec.enabled
    ch.quiet_hours = spec.quiet_hours or None
    ch.escalations_in_quiet = spec.escalations_in_quiet
    ch.updated_at = utcnow()
    session.add(ch)
    session.flush()
    audit.append(
        session,
        stream="org",
        action="channel.saved",
        actor_id=actor_id,
        data={"org": org.code, "kind": spec.kind, "channel_id": ch.id},
    )
    return ch


def replace_channels(
    session: Session,
    org: Organisation,
    specs: Sequence[ChannelSpec],
    *,
    actor_id: int | None = None,
) -> list[OrgChannel]:
    """Make the organisation's channels exactly `specs`; an entry with an `id` and no url/secret
    keeps the stored (unshown) values, and an entry without `id` repeating a stored channel's
    kind and URL is that channel. The same kind and URL twice is refused (422, both fields)."""
    current = {c.id or 0: c for c in channels_of(session, org.id or 0)}
    specs = _match_stored(specs, current)
    kept = {spec.id for spec in specs if spec.id is not None}
    gone = [cid for cid in current if cid not in kept]
    if gone:
        session.execute(delete(OrgChannel).where(col(OrgChannel.id).in_(gone)))
    _park_moved_urls(session, specs, current)
    for spec in specs:
        ch = (
            current[spec.id]
            if spec.id is not None
            else OrgChannel(org_id=org.id or 0, kind=spec.kind, url="")
        )
        _apply(ch, spec)
        session.add(ch)
        session.flush()
        kept.add(ch.id or 0)
    audit.append(
        session,
        stream="org",
        action="channels.replaced",
        actor_id=actor_id,
        data={"org": org.code, "kept": sorted(kept), "removed": sorted(gone)},
    )
    return channels_of(session, org.id or 0)


def _match_stored(
    specs: Sequence[ChannelSpec], current: dict[int, OrgChannel]
) -> list[ChannelSpec]:
    """Check every entry; give an entry without id the id of the stored channel it repeats."""
    for i, spec in enumerate(specs):
        _check(spec, i)
        if spec.id is not None and spec.id not in current:
            raise NotFound(f"渠道 #{spec.id} 不属于该组织", details=[{"field": f"channels.{i}.id"}])
        if spec.id is None and spec.url is None:
            raise InvalidInput("新渠道须填写地址", details=[{"field": f"channels.{i}.url"}])
    stored = {(c.kind, c.url): cid for cid, c in current.items()}
    claimed = {spec.id for spec in specs if spec.id is not None}
    matched = []
    for spec in specs:
        cid = stored.get((spec.kind, (spec.url or "").strip())) if spec.id is None else None
        if cid is not None and cid not in claimed:
            claimed.add(cid)
            spec = replace(spec, id=cid)
        matched.append(spec)
    _refuse_repeats(matched, current)
    return matched


def _refuse_repeats(specs: Sequence[ChannelSpec], current: dict[int, OrgChannel]) -> None:
    """422 naming both entries when two are the same channel, or the same kind and URL."""
    seen: dict[object, int] = {}
    for i, spec in enumerate(specs):
        for key, what in ((_key(spec, current), "url"), (spec.id, "id")):
            first = seen.setdefault(key, i) if key is not None else i
            if first != i:
                raise InvalidInput(
                    f"第 {first + 1} 项与第 {i + 1} 项是同一渠道（类型与地址相同），请只保留一项",
                    details=[
                        {"field": f"channels.{first}.{what}"},
                        {"field": f"channels.{i}.{what}"},
                    ],
                )


def _park_moved_urls(
    session: Session, specs: Sequence[ChannelSpec], current: dict[int, OrgChannel]
) -> None:
    """Give every kept channel whose URL changes a unique placeholder first, so that URLs may
    move between channels (a swap) without tripping the unique key on the way."""
    moved = [
        current[s.id]
        for s in specs
        if s.id is not None and _key(s, current) != _key_of(current[s.id])
    ]
    for ch in moved:
        ch.url = f"~moving~{ch.id}"
        session.add(ch)
    if moved:
        session.flush()


def _key(spec: ChannelSpec, current: dict[int, OrgChannel]) -> tuple[str, str]:
    """The (kind, URL) an entry will have, which the database keeps unique per organisation."""
    url = spec.url.strip() if spec.url is not None else current[spec.id or 0].url
    return spec.kind, url


def _key_of(ch: OrgChannel) -> tuple[str, str]:
    return ch.kind, ch.url


def _apply(ch: OrgChannel, spec: ChannelSpec) -> None:
    ch.kind = spec.kind
    if spec.url is not None:
        ch.url = spec.url.strip()
    if spec.secret is not None:
        ch.secret = spec.secret.strip() or None
    ch.enabled = spec.enabled
    ch.quiet_hours = spec.quiet_hours or None
    ch.escalations_in_quiet = spec.escalations_in_quiet
    ch.updated_at = utcnow()


def in_quiet_hours(quiet: str | None, local: datetime) -> datetime | None:
    """If `local` (Asia/Shanghai) falls in the quiet window, return when it ends; else None."""
    if not quiet:
        return None
    m = QUIET.match(quiet)
    if m is None:
        return None
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    now = local.hour * 60 + local.minute
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    minutes_left = (end - now) % (24 * 60)
    return (local + timedelta(minutes=minutes_left)).replace(second=0, microsecond=0)


def set_opt_out(session: Session, user_id: int, channel: str, opted_out: bool) -> None:
    if channel not in OPT_OUT_CHANNELS:
        raise InvalidInput(
            f"只能退订：{'、'.join(OPT_OUT_CHANNELS)}（站内消息总会送达）",
            details=[{"field": "channel"}],
        )
    row = session.execute(
        select(NotifyOptOut).where(NotifyOptOut.user_id == user_id, NotifyOptOut.channel == channel)
    ).scalar_one_or_none()
    if opted_out and row is None:
        session.add(NotifyOptOut(user_id=user_id, channel=channel))
    elif not opted_out and row is not None:
        session.delete(row)
    session.flush()


def opted_out(session: Session, user_ids: Sequence[int], channel: str) -> set[int]:
    if not user_ids:
        return set()
    return set(
        session.execute(
            select(NotifyOptOut.user_id).where(
                col(NotifyOptOut.user_id).in_(sorted(set(user_ids))),
                NotifyOptOut.channel == channel,
            )
        ).scalars()
    )


def save_template(
    session: Session,
    org: Organisation,
    event_kind: str,
    source: str,
    *,
    actor_id: int | None = None,
) -> NoticeTemplate:
    """Store an organisation's wording for one kind (the caller validated it by rendering)."""
    row = session.execute(
        select(NoticeTemplate).where(
            NoticeTemplate.org_id == org.id, NoticeTemplate.event_kind == event_kind
        )
    ).scalar_one_or_none()
    row = row or NoticeTemplate(org_id=org.id or 0, event_kind=event_kind, source=source)
    row.source = source
    row.updated_by = actor_id
    row.updated_at = utcnow()
    row.last_error, row.last_error_at, row.failures = None, None, 0  # a new wording, a clean slate
    session.add(row)
    session.flush()
    audit.append(
        session,
        stream="org",
        action="notice_template.saved",
        actor_id=actor_id,
        data={"org": org.code, "event_kind": event_kind},
    )
    return row


def override_for(session: Session, org_path: str, event_kind: str) -> tuple[int, str] | None:
    """The nearest override (the organisation itself, then its ancestors): its id and source."""
    paths = ancestor_paths(org_path, include_self=True)
    row = session.execute(
        select(NoticeTemplate.id, NoticeTemplate.source)
        .join(Organisation, col(Organisation.id) == col(NoticeTemplate.org_id))
        .where(NoticeTemplate.event_kind == event_kind, col(Organisation.path).in_(paths))
        .order_by(col(Organisation.depth).desc())
        .limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else None


def template_for(session: Session, org_path: str, event_kind: str) -> str | None:
    """The nearest override's source for `event_kind`, if any."""
    found = override_for(session, org_path, event_kind)
    return found[1] if found else None


TEMPLATE_FAILED = "template_failed"  # the inbox kind of "your wording failed"
TELL_EVERY = timedelta(days=1)


def record_template_failure(
    session: Session,
    template_id: int,
    error: str,
    *,
    labels: Mapping[str, str],
    count: int = 1,
    now: datetime | None = None,
) -> bool:
    """An override failed at send time `count` times (the built-in wording went out instead):
    record the error on it, and tell whoever saved it (in the inbox), at most once a day per
    wording. `labels` names each kind of notice in Chinese. True if the saver was told."""
    now = now or utcnow()
    row = session.execute(
        select(NoticeTemplate).where(NoticeTemplate.id == template_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        return False
    row.last_error, row.last_error_at = error[:500], now
    row.failures += count
    session.add(row)
    session.flush()
    label = labels.get(row.event_kind, row.event_kind)
    title = f"自定义通知措辞「{label}」发送时出错，已改用系统默认措辞"
    if row.updated_by is None or _told_since(session, row, title, now - TELL_EVERY):
        return False
    org = session.get(Organisation, row.org_id)
    inbox.post(
        session,
        user_ids=[row.updated_by],
        kind=TEMPLATE_FAILED,
        title=title,
        body=(
            f"组织：{org.name if org else row.org_id}\n错误：{error[:300]}\n"
            f"请在通知设置中修改该措辞；修改前，此类通知继续使用系统默认措辞发送（每天最多提醒一次）。"
        ),
        org_id=row.org_id,
        now=now,
    )
    return True


def _told_since(session: Session, row: NoticeTemplate, title: str, since: datetime) -> bool:
    return (
        session.execute(
            select(InboxItem.id)
            .where(
                InboxItem.user_id == row.updated_by,
                InboxItem.kind == TEMPLATE_FAILED,
                InboxItem.org_id == row.org_id,
                col(InboxItem.created_at) > since,
                InboxItem.title == title,
            )
            .limit(1)
        ).first()
        is not None
    )
