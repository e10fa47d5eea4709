"""Writing a feed as iCalendar (RFC 5545) with the `icalendar` library.

Every event keeps its UID while its date moves (a run's stage, a request's step, a finding), so a
subscribing calendar updates the event instead of adding one; SEQUENCE grows with the run's
version and LAST-MODIFIED/DTSTAMP say when the date was last set (the feed has no METHOD, so
DTSTAMP is the last change, RFC 5545 §3.8.7.2). Times are in Asia/Shanghai with its VTIMEZONE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, timedelta
from functools import cache, lru_cache

from icalendar import Calendar, Event, Timezone

from states.calfeed.service import Deadline
from states.public_links import server_secret
from states.timeutil import SHANGHAI, format_local

PRODID = "-//dangjian-flow//deadline feed//ZH"
TZID = "Asia/Shanghai"
REFRESH = timedelta(hours=1)


@cache
def _timezone() -> Timezone:
    return Timezone.from_tzid(TZID)


def uid_domain() -> str:
    """A domain part for UIDs, the same for every process of one installation."""
    return "dangjian-" + hashlib.sha256(server_secret()).hexdigest()[:12]


def feed_ics(items: Iterable[Deadline], *, name: str, base_url: str) -> bytes:
    """The feed `name` with one event per deadline, each linking to its page under `base_url`.

    The bytes depend only on the arguments, so a feed that has not changed since the last poll
    is served from a small per-process cache (writing 500 events takes the library a second).
    """
    return _render(tuple(items), name, base_url.rstrip("/"))


@lru_cache(maxsize=64)
def _render(items: tuple[Deadline, ...], name: str, base: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", TZID)
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", REFRESH)
    cal.add_component(_timezone())
    domain = uid_domain()
    for item in items:
        cal.add_component(_event(item, domain, base))
    return cal.to_ical()


def _event(item: Deadline, domain: str, base: str) -> Event:
    url = base + item.path
    modified = item.modified.astimezone(UTC).replace(microsecond=0)
    event = Event()
    event.add("uid", f"{item.uid}@{domain}")
    event.add("summary", item.title)
    event.add("dtstart", item.due.astimezone(SHANGHAI).replace(microsecond=0))
    event.add("dtstamp", modified)
    event.add("last-modified", modified)
    event.add("sequence", item.sequence)
    event.add("url", url)
    event.add(
        "description", f"{item.detail}\n截止时间：{format_local(item.due)}（北京时间）\n{url}"
    )
    return event
