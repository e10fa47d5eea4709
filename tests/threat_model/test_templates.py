"""Threat model, finding 4 and the template cases of finding 7: organisers' notice templates.

An organiser may save the wording of a notice as a Jinja template. It rendered in Jinja's
sandbox with a cap on the final output only, so `{{ ''|center(1000000000) }}` allocated 1 GB per
render, a 293-character macro template asked for 62.5 billion iterations, 45 concurrent saves of
a 1-second template made `GET /api/v1/me` take 16 s, and `1 // 0`, `'{5}'.format(1)`,
`(1e308*10)|int`, `'%c'|format(99999999)` or a recursive macro answered 500.

Now every render has a budget enforced inside the sandbox (notifications/sandbox.py): loop
iterations, calls and macro depth, wall time, and the size of anything an operation would build,
refused before it is built; one render runs at a time per process and a waiting save holds no
thread; any error of a template is a 422 naming its line.
"""

from __future__ import annotations

import threading
import time
import tracemalloc

import httpx
import pytest

from notifications import sandbox
from notifications.render import validate_override
from states.errors import InvalidInput
from tests.api_world import World
from tests.threat_model.live import Poller, Server

HEAD = "{% block title %}标题{% endblock %}{% block body %}\n"
TAIL = "\n{% endblock %}"

# The 293-character template of the finding: b() runs a() 250,000 times, each 250,000 loops.
BILLIONS = (
    "{% block title %}t{% endblock %}{% block body %}{% macro a() %}{% for i in range(500) %}"
    "{% for j in range(500) %}{% endfor %}{% endfor %}{% endmacro %}{% macro b() %}"
    "{% for i in range(500) %}{% for j in range(500) %}{{ a() }}{% endfor %}{% endfor %}"
    "{% endmacro %}{{ b() }}{% endblock %}"
)

# Each nested list prints as 500 x 500 x 20,000 characters: 5 GB from a 2,000-character source.
NESTED = (
    HEAD + "{% set a = 'x' * 20000 %}{% set b = [" + ",".join(["a"] * 500) + "] %}"
    "{% set c = [" + ",".join(["b"] * 500) + "] %}{{ c }}" + TAIL
)

BOMBS = {
    "center": HEAD + "{{ ''|center(1000000000) }}" + TAIL,
    "str.center": HEAD + "{{ ''.center(1000000000) }}" + TAIL,
    "percent": HEAD + "{{ '%0999999999d' % 1 }}" + TAIL,
    "format filter": HEAD + "{{ '%0999999999d'|format(1) }}" + TAIL,
    "str.format": HEAD + "{{ '{:>999999999}'.format(1) }}" + TAIL,
    "indent": HEAD + "{{ 'x'|indent(1000000000, true) }}" + TAIL,
    "batch": HEAD + "{{ [1]|batch(1000000000, 'x')|list }}" + TAIL,
    "replace": HEAD + "{{ ('x' * 10000)|replace('x', 'y' * 10000) }}" + TAIL,
    "sum of lists": HEAD + "{{ ([[0] * 20000] * 20000)|sum(start=[]) }}" + TAIL,
    "to_bytes": HEAD + "{{ (1).to_bytes(1000000000, 'big') }}" + TAIL,
    "62.5 billion loops": BILLIONS,
    "recursive macro": HEAD + "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}" + TAIL,
    "recursive loop": HEAD
    + "{% for x in range(500) recursive %}{{ loop(range(500)) }}{% endfor %}"
    + TAIL,
    "doubling ~": HEAD + "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}" + TAIL,
    "doubling output": HEAD + "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}"
    "{% else %}xxxxxxxxxx{% endif %}{% endmacro %}{{ f(60) }}" + TAIL,
    "squaring int": HEAD + "{% macro f(n) %}{{ f(n * n) }}{% endmacro %}{{ f(3) }}" + TAIL,
    "nested lists": NESTED,
    "slow filter": HEAD + "{% for i in range(500) %}{% for j in range(19) %}"
    "{{ (('x ' * 2000)|wordwrap(1))|length }}{% endfor %}{% endfor %}" + TAIL,
}


def _refusal(source: str) -> tuple[InvalidInput, float, int]:
    """Validate `source`: the error, the seconds it took and the peak bytes it allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidInput) as err:
            validate_override("reminder", source)
        return err.value, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_template_cannot_spend_more_than_its_budget(name: str) -> None:
    err, seconds, peak = _refusal(BOMBS[name])
    # Refused by the budget (by construction: a budget check raised, nothing was built) ...
    assert isinstance(err.__cause__, sandbox.BudgetExceeded | RecursionError), repr(err.__cause__)
    assert err.details == [{"field": "source", "line": err.details[0]["line"]}]
    # ... long before it could cost memory: a bomb that ran would allocate 1 GB or more.
    assert peak < 32 * 2**20, f"{name}: {peak / 2**20:.1f} MiB"
    assert seconds < 10, f"{name}: {seconds:.1f} s"  # generous; the time budget is 0.2 s


@pytest.mark.parametrize(
    "expr,words",
    [
        ("{{ 1 // 0 }}", "除数为零"),
        ("{{ (1e308 * 10)|int }}", "数值超出范围"),
        ("{{ '{5}'.format(1) }}", "下标超出范围"),
        ("{{ '%c'|format(99999999) }}", "数值超出范围"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "嵌套过深"),
        ("{{ {'a': 1}['b'] }}", "b"),
        ("{{ stages[0].nope.deeper }}", "nope"),
        ("{{ 'x' ~ no_such_field }}", "no_such_field"),
        ("{% include 'other' %}", "other"),
        ("{{ (1 }}", "expected ')'"),
    ],
)
def test_every_error_of_a_template_is_a_422_with_its_line(
    world: World, expr: str, words: str
) -> None:
    url = f"/api/v1/orgs/{world.orgs['H1'].id}/notice-templates/reminder"
    source = HEAD + "第二行\n" + expr + TAIL  # the expression is on line 3
    r = world.client.put(url, json={"source": source}, headers=world.as_("org_h1"))
    assert r.status_code == 422, r.text
    detail = r.json()["details"][0]
    assert detail["field"] == "source" and detail["line"] == 3, r.json()
    assert words in r.json()["message"] and "第 3 行" in r.json()["message"], r.json()


@pytest.mark.parametrize(
    "deep", ["(" * 2000 + "1" + ")" * 2000, "-" * 7000 + "1", "not " * 1900 + "1"]
)
def test_nesting_too_deep_for_the_parser_is_a_422(deep: str) -> None:
    err, _, _ = _refusal(HEAD + "{{ " + deep + " }}" + TAIL)
    assert "嵌套过深" in err.message and err.details[0]["field"] == "source"


def test_a_burst_of_slow_saves_does_not_starve_other_requests(server: Server) -> None:
    """45 concurrent saves of the slowest template the budget lets run, sent to a real server
    process while /healthz and /api/v1/me are timed: /healthz within 1 s, /me within 2 s; the saves
    answer 422 (or 429 when they waited too long for a render slot), never 5xx."""
    url = f"{server.url}/api/v1/orgs/{server.org_id}/notice-templates/reminder"
    slow = {"source": BOMBS["slow filter"]}
    statuses: list[int] = []

    def save() -> None:
        with httpx.Client(timeout=120, headers=server.auth) as client:
            statuses.append(client.put(url, json=slow).status_code)

    pollers = [Poller(server.url), Poller(server.url, "/api/v1/me", server.auth)]
    threads = [p.start() for p in pollers]
    savers = [threading.Thread(target=save) for _ in range(45)]
    for t in savers:
        t.start()
    for t in savers:
        t.join(timeout=120)
    for p, t in zip(pollers, threads, strict=True):
        p.stop.set()
        t.join(timeout=30)
    assert len(statuses) == 45 and set(statuses) <= {422, 429}, statuses
    assert 422 in statuses
    assert not [f for p in pollers for f in p.failures]
    health, me = pollers[0].latencies, pollers[1].latencies
    assert len(health) >= 10 and max(health) < 1.0, f"slowest /healthz {max(health):.2f} s"
    # /me needs a worker thread and a query; before the budget it took 16 s in such a burst.
    assert len(me) >= 5 and max(me) < 2.0, f"slowest /api/v1/me {max(me):.2f} s"


def test_templates_people_write_still_work() -> None:
    source = (
        "{% block title %}{{ org_name ~ '：' ~ stage }}{% endblock %}{% block body %}"
        "{% macro line(s) %}{{ s.name }}：{{ s.runs }} 个{% endmacro %}"
        "{% for s in stages %}{{ loop.index }}. {{ line(s) }}\n{% endfor %}"
        "{{ '{} 天'.format(days_left) }} {{ '%d%%'|format(percent_done) }}"
        " {{ notice_list|join('、') }} {{ org_name|center(30) }}{% endblock %}"
    )
    out = validate_override("bulletin", source)
    assert out.title == "内科第一党支部：宣传发动"
    assert "1. 宣传发动：10 个" in out.text and "2. 公开承诺：28 个" in out.text
    assert "3 天" in out.text and "24%" in out.text and "外科第二党支部、机关第三党支部" in out.text


def test_a_save_that_cannot_get_a_render_slot_is_told_the_server_is_busy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "BUSY_WAIT", 0.3)
    url = f"/api/v1/orgs/{world.orgs['H1'].id}/notice-templates/reminder"
    good = {"source": HEAD + "{{ org_name }}" + TAIL}
    assert sandbox.try_slot()  # every slot taken (there is one per process)
    try:
        r = world.client.put(url, json=good, headers=world.as_("org_h1"))
    finally:
        sandbox.release_slot()
    assert r.status_code == 429 and "服务器繁忙" in r.json()["message"], r.text
    assert r.headers.get("retry-after")
    assert world.client.put(url, json=good, headers=world.as_("org_h1")).status_code == 200


def test_the_budget_holds_at_send_time_too() -> None:
    from notifications.render import SAMPLE, render_notice

    for name in ("slow filter", "62.5 billion loops", "center"):
        started = time.perf_counter()
        r, error = render_notice("reminder", SAMPLE, override=BOMBS[name])
        assert r.title.startswith("【提醒】") and error, name  # the built-in wording went out
        assert time.perf_counter() - started < 10, name
