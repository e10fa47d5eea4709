"""A public answer on PostgreSQL in one round trip: one statement, committed on its own.

`answers.answer_public` takes four statements and a COMMIT (target, hit, code, record). Here
the same effects are one statement of data-modifying CTEs run in autocommit, so a post costs
the server one round trip and one WAL flush:

* `live`  – the survey is still open (not closed by hand, its run's deadline not passed);
* `hit`   – the address's counter for this window (counted even when the post is refused);
* `code`  – the one-time code's compare-and-set (`used_at IS NULL`), only under the rate limit;
  for the open link, `ok` instead: under the limit and this device has not answered;
* `ev`, `link`, `ans` – the appraisal record, its link to the stage, the answer row.

One statement is atomic, so a post is applied whole or not at all; two posts of one code race
on the code's row, and the loser's `UPDATE` finds `used_at` set and writes nothing. What a
survey is (questions, salt, stage) never changes while it is open, so the `Target` is kept per
process (`targets`); whether it is open is decided inside the statement, every time.

`answer` returns the receipt, or raises `Refused` (409/422/429) with the hit committed; it
returns None when the survey is closed or unknown, and the caller takes the ordinary path.
The caller sends it once more on a fresh connection when the database dropped the pooled one
before the statement ran (`states.db.retry_dead_connection`); if the connection died while the
statement ran and it had committed, the repeat finds the code (or the device) used and answers
409: nothing is written twice.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from threading import Lock
from typing import Any

from psycopg.types.json import Json
from sqlalchemy.engine import Engine

from states.db import read_session
from states.survey import keys
from states.survey.answers import CODE_LIMIT, LINK_LIMIT, WINDOW, Refused, Target, load_target
from states.survey.forms import Answer
from states.timeutil import utcnow

_HEAD = """
WITH live AS (
  SELECT s.id FROM survey s JOIN run r ON r.id = s.run_id
  WHERE s.id = %(sid)s AND s.closed_at IS NULL AND (r.deadline IS NULL OR r.deadline > %(now)s)
), hit AS (
  INSERT INTO survey_hit (survey_id, addr_hash, slot, hits)
  SELECT id, %(addr)s, %(slot)s, 1 FROM live
  ON CONFLICT (survey_id, addr_hash, slot) DO UPDATE SET hits = survey_hit.hits + 1
  RETURNING hits
)"""

_GATE = {
    "code": """, gate AS (
  UPDATE survey_code SET used_at = %(now)s
  WHERE survey_id = %(sid)s AND code = %(code)s AND used_at IS NULL
    AND (SELECT hits FROM hit) <= %(limit)s
  RETURNING id
)""",
    "link": """, gate AS (
  SELECT NULL::integer AS id WHERE (SELECT hits FROM hit) <= %(limit)s
    AND NOT EXISTS (
      SELECT 1 FROM survey_answer WHERE survey_id = %(sid)s AND device = %(device)s)
)""",
}

_TAIL = """, ev AS (
  INSERT INTO evidence (org_id, run_id, stage, kind, data, recorded_by, recorder_org_id,
                        on_behalf, created_at, status, version)
  SELECT %(org)s, %(run)s, %(stage)s, 'appraisal', %(data)s, NULL, NULL, false, %(now)s,
         'active', 1
  FROM gate RETURNING id
), link AS (
  INSERT INTO evidence_link (evidence_id, run_id, stage, linked_by, linked_at)
  SELECT id, %(run)s, %(stage)s, NULL, %(now)s FROM ev
), ans AS (
  INSERT INTO survey_answer (survey_id, channel, code_id, device, receipt, answers, comment,
                             entered_by, created_at, evidence_id)
  SELECT %(sid)s, %(channel)s, gate.id, %(device)s, %(receipt)s, %(answers)s, %(comment)s,
         NULL, %(now)s, ev.id
  FROM gate, ev RETURNING id
)
SELECT EXISTS (SELECT 1 FROM live), (SELECT hits FROM hit), (SELECT id FROM ans)"""

#: The statement for each channel, written once.
STATEMENTS = {channel: _HEAD + gate + _TAIL for channel, gate in _GATE.items()}

_KNOWN_CODE = (
    "SELECT EXISTS (SELECT 1 FROM survey_code WHERE survey_id = %(sid)s AND code = %(code)s)"
)


class Targets:
    """The open surveys this process has answered, by nonce (at most `size`, least recent out)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._items: OrderedDict[str, Target] = OrderedDict()
        self._lock = Lock()

    def get(self, engine: Engine, nonce: str) -> Target | None:
        with self._lock:
            target = self._items.get(nonce)
            if target is not None:
                self._items.move_to_end(nonce)
                return target
        with read_session(engine) as s:
            target = load_target(s, nonce)
        if target is None or target.closed or target.salt is None:
            return None
        with self._lock:
            self._items[nonce] = target
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return target

    def forget(self, nonce: str) -> None:
        with self._lock:
            self._items.pop(nonce, None)


targets = Targets()


def _params(
    target: Target, answer: Answer, address: str, now: datetime, channel: str
) -> dict[str, Any]:
    overall = next(iter(answer.ratings.values()))
    return {
        "sid": target.id,
        "now": now,
        "addr": keys.address_hash(target.salt or "", address),
        "slot": int(now.timestamp()) // WINDOW,
        "limit": CODE_LIMIT if channel == "code" else LINK_LIMIT,
        "org": target.org_id,
        "run": target.run_id,
        "stage": target.stage,
        "data": Json({"rating": overall, "survey_id": target.id, "channel": channel}),
        "channel": channel,
        "receipt": keys.new_receipt(),
        "answers": Json(answer.ratings),
        "comment": answer.comment,
        "code": None,
        "device": None,
    }


def answer(
    engine: Engine,
    target: Target,
    answer: Answer,
    *,
    address: str,
    code: str | None,
    device: str,
) -> str | None:
    """Record a valid public answer in one committed statement; its receipt.

    Refused (409, 422, 429) when the post is refused, its hit committed; None when the survey is
    no longer open (nothing written: the caller answers from the ordinary path)."""
    now = utcnow()
    channel = "code" if code and code.strip() else "link"
    params = _params(target, answer, address, now, channel)
    if channel == "code":
        normal = keys.normalise_code(code or "")
        if normal is None:
            return None  # the ordinary path counts the hit and names the field
        params["code"] = keys.code_hash(target.nonce, normal)
    elif not target.open_link:
        return None
    else:
        params["device"] = device
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        live, hits, answer_id = conn.exec_driver_sql(STATEMENTS[channel], params).one()
        if not live:
            targets.forget(target.nonce)
            return None
        if answer_id is not None:
            return str(params["receipt"])
        if hits > params["limit"]:
            raise Refused(429, "提交过于频繁，请稍后再试")
        if channel == "link":
            raise Refused(409, "本设备已经提交过评议，每台设备只能评议一次")
        if conn.exec_driver_sql(_KNOWN_CODE, params).scalar():
            raise Refused(409, "该编码已经使用过，每个编码只能评议一次")
    raise Refused(422, "编码无效，请核对卡片上的编码", field="code")
