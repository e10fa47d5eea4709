"""A run's history in pages: 20 events a page on the run page (?history_page=N, no JS), and the
API's history endpoint paged by limit (≤ 200) and offset; both on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from sqlmodel import Session

from states import audit
from tests.api_world import World
from tests.browser import web_user

EXTRA = 45


def _add_events(w: World, run_id: int) -> int:
    """Append EXTRA numbered events to the run's stream; return how many events it now has."""
    with Session(w.engine) as s:
        events = [
            ("run.sent_back", None, {"to_stage": "mobilise", "reason": f"第{i:02d}号"})
            for i in range(EXTRA)
        ]
        audit.append_many(s, stream=f"run:{run_id}", events=events, run_id=run_id)
        s.commit()
    return int(w.get("sec_s1", f"/api/v1/runs/{run_id}/history?limit=1").json()["total"])


def _history_block(html: str) -> str:
    start = html.index('id="history"')
    return html[start : html.index("</section>", start)]


def test_the_run_page_shows_history_twenty_at_a_time_with_links(world: World) -> None:
    run_id = world.runs["S1"]
    total = _add_events(world, run_id)
    pages = -(-total // 20)
    client = web_user(world.client.app, "sec_s1").client

    first = _history_block(client.get(f"/runs/{run_id}").text)
    assert f"共 {total} 条" in first
    assert first.count("<li>") == 20
    assert f"第 1 / {pages} 页" in first
    assert "上一页" not in first
    assert 'href="?history_page=2#history"' in first
    # Newest first: the last numbered event opens page 1.
    assert re.findall(r"第(\d\d)号", first)[0] == f"{EXTRA - 1:02d}"

    last = _history_block(client.get(f"/runs/{run_id}?history_page={pages}").text)
    assert last.count("<li>") == total - 20 * (pages - 1)
    assert f'href="?history_page={pages - 1}#history"' in last
    assert "下一页" not in last

    # Page 2 holds exactly the events after page 1's, none repeated.
    second = _history_block(client.get(f"/runs/{run_id}?history_page=2").text)
    seen1, seen2 = re.findall(r"第(\d\d)号", first), re.findall(r"第(\d\d)号", second)
    assert not set(seen1) & set(seen2)
    assert seen2[0] == f"{EXTRA - 21:02d}"

    # Past the end shows the last page; nonsense is a 422 page, never a 500.
    beyond = _history_block(client.get(f"/runs/{run_id}?history_page=999").text)
    assert f"第 {pages} / {pages} 页" in beyond
    assert client.get(f"/runs/{run_id}?history_page=0").status_code == 422
    assert client.get(f"/runs/{run_id}?history_page=x").status_code == 422


def test_the_history_pages_stay_out_of_reach_for_others(world: World) -> None:
    run_id = world.runs["S1"]
    outsider = web_user(world.client.app, "sec_s2").client
    assert outsider.get(f"/runs/{run_id}?history_page=2").status_code == 404
    assert world.get("sec_s2", f"/api/v1/runs/{run_id}/history?limit=5").status_code == 404


def test_the_api_history_is_paged_by_limit_and_offset(world: World) -> None:
    run_id = world.runs["S1"]
    total = _add_events(world, run_id)
    url = f"/api/v1/runs/{run_id}/history"
    page1 = world.get("sec_s1", f"{url}?limit=10&offset=0").json()
    page2 = world.get("sec_s1", f"{url}?limit=10&offset=10").json()
    assert page1["total"] == page2["total"] == total
    assert (page1["limit"], page2["offset"]) == (10, 10)
    assert len(page1["items"]) == len(page2["items"]) == 10
    seqs = [i["seq"] for i in page1["items"] + page2["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 20
    tail = world.get("sec_s1", f"{url}?limit=200&offset={total - 3}").json()
    assert len(tail["items"]) == 3
    assert world.get("sec_s1", f"{url}?limit=201").status_code == 422
    assert world.get("sec_s1", f"{url}?offset=-1").status_code == 422
