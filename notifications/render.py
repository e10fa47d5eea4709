"""Rendering notices from Jinja2 templates: one file per event kind, in Chinese.

A template defines the blocks `title` and `body` (one sentence per line); the text, HTML and
robot-markdown variants are composed from them unless the template defines its own `text`,
`html` or `markdown` block. An organiser's override has the same blocks and renders in an
immutable sandbox with strict undefined, plain data only, and a budget for time, loops, calls,
depth and sizes (notifications/sandbox.py); at send time a failing override falls back to the
built-in wording and `render_notice` says why. In the robot-markdown variant every substituted
value is made inert (`md_escape`), so a name or comment cannot become a link, image or mention.
"""

from __future__ import annotations

import html as html_lib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, UndefinedError

from notifications import sandbox
from notifications.sandbox import MAX_OUTPUT
from states.errors import InvalidInput, RateLimited

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_SOURCE = 8000

KIND_LABELS = {
    "request_submitted": "待审批的推进申请",
    "extension_requested": "待审批的延期申请",
    "request_withdrawn": "申请已撤回",
    "request_approved": "申请已通过",
    "request_returned": "申请被退回",
    "extension_granted": "延期已批准",
    "run_sent_back": "创建进度被退回",
    "reminder": "截止提醒",
    "overdue": "逾期与督办",
    "approval_sla": "审批超时",
    "bulletin": "简报",
    "phase_opened": "阶段开始",
    "campaign_launched": "活动已发起",
    "finding_issued": "督导意见",
    "finding_reminder": "督导意见整改提醒",
    "finding_overdue": "督导意见逾期",
    "finding_answered": "督导意见已回复",
    "circular": "通报",
    "test": "测试消息",
}
EVENT_KINDS = tuple(KIND_LABELS)

#: Every field a template may use, with its value when a notice does not carry it.
DEFAULTS: dict[str, Any] = {
    "org_name": "",
    "org_code": "",
    "campaign": "",
    "campaign_id": None,
    "run_id": None,
    "request_id": None,
    "stage": "",
    "to_stage": "",
    "kind": "advance",
    "comment": None,
    "opinion": None,
    "reason": None,
    "deadline": None,
    "new_deadline": None,
    "days_left": None,
    "days_overdue": None,
    "unmet": None,
    "level": 0,
    "waiting_days": None,
    "approver_name": "",
    "period": "",
    "total": 0,
    "done": 0,
    "percent_done": 0,
    "overdue": 0,
    "waiting": 0,
    "stages": [],
    "notice_list": [],
    "name": "",
    "runs": 0,
    "sent_at": "",
    "link": None,
    "owed": False,
    "owner_name": "",
    "owed_word": "",
    "owed_list": [],
    "overdue_above": 0,
    "page": None,
    "finding_text": "",
    "due": "",
    "response": "",
    "author_name": "",
    "circular_title": "",
    "circular_items": [],
}

#: Sample data for validating an override and for previews.
SAMPLE: dict[str, Any] = {
    **DEFAULTS,
    "org_name": "内科第一党支部",
    "org_code": "H1-G1-S1",
    "campaign": "创先争优（示例）",
    "campaign_id": 1,
    "run_id": 1,
    "request_id": 7,
    "stage": "宣传发动",
    "to_stage": "公开承诺",
    "comment": "已召开动员大会",
    "opinion": "同意",
    "reason": "会议记录不完整",
    "deadline": "2026-12-31 23:59",
    "new_deadline": "2027-01-15 23:59",
    "days_left": 3,
    "days_overdue": 2,
    "unmet": "动员大会（0/1）",
    "level": 2,
    "waiting_days": 4,
    "approver_name": "内科党总支",
    "period": "第 48 周",
    "total": 50,
    "done": 12,
    "percent_done": 24.0,
    "overdue": 5,
    "waiting": 3,
    "stages": [{"name": "宣传发动", "runs": 10}, {"name": "公开承诺", "runs": 28}],
    "notice_list": ["外科第二党支部", "机关第三党支部"],
    "name": "创先争优（示例）",
    "runs": 50,
    "sent_at": "2026-11-23 09:00",
    "link": "http://127.0.0.1:8000/runs/1",
}


@dataclass(frozen=True)
class Rendered:
    title: str
    text: str
    html: str
    markdown: str
    link: str | None
    markdown_title: str = ""  # the title with people's words made inert in markdown
    inapp: str = ""  # the in-app body: the text without the trailing link (the page shows it)


def base_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("DANGJIAN_BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def link_for(
    event_kind: str, payload: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> str:
    """The page a notice points to (the run, the approval inbox or the campaign)."""
    root = base_url(env)
    if event_kind == "bulletin" and payload.get("bulletin_id"):
        return f"{root}/bulletins/{payload['bulletin_id']}"
    if isinstance(payload.get("page"), str) and payload["page"].startswith("/"):
        return f"{root}{payload['page']}"  # a finding's or a 通报's own page
    if event_kind in ("request_submitted", "extension_requested", "approval_sla"):
        return f"{root}/approvals"
    if payload.get("run_id"):
        return f"{root}/runs/{payload['run_id']}"
    if payload.get("campaign_id"):
        return f"{root}/campaigns/{payload['campaign_id']}"
    return f"{root}/"


def _plain_env(**kw: Any) -> Environment:
    return Environment(undefined=StrictUndefined, keep_trailing_newline=False, **kw)


_PLAIN = _plain_env(loader=FileSystemLoader(TEMPLATES), autoescape=False)
_HTML = _plain_env(loader=FileSystemLoader(TEMPLATES), autoescape=True)


def _context(payload: Mapping[str, Any], link: str | None) -> dict[str, Any]:
    ctx = dict(DEFAULTS)
    for key, value in payload.items():
        if isinstance(value, str | int | float | bool | list | dict) or value is None:
            ctx[key] = value
    ctx["link"] = link
    return ctx


def _block(tpl: Template, name: str, ctx: dict[str, Any]) -> str | None:
    render = tpl.blocks.get(name)
    if render is None:
        return None
    out: list[str] = []
    size = 0
    for piece in sandbox.iter_limited(render(tpl.new_context(ctx))):
        size += len(piece)
        if size > MAX_OUTPUT:
            raise sandbox.BudgetExceeded("模板生成的内容过长")
        out.append(piece)
    return "".join(out)


def _lines(body: str) -> list[str]:
    return [ln.strip() for ln in body.splitlines() if ln.strip()]


# Robots' markdown dialects differ on backslash escapes (WeCom documents none), so the characters
# that make links, images, tags, mentions, emphasis, headings and table cells become their
# full-width forms, which read naturally in Chinese text and are inert in every dialect.
_MD_INERT = str.maketrans(
    {
        "[": "［",
        "]": "］",
        "(": "（",
        ")": "）",
        "!": "！",
        "<": "＜",
        ">": "＞",
        "*": "＊",
        "_": "＿",
        "`": "｀",
        "#": "＃",
        "|": "｜",
        "~": "～",
        "\\": "＼",
    }
)


def md_escape(value: Any) -> Any:
    """User-written text made inert in robot markdown (recursively through lists and dicts)."""
    if isinstance(value, str):
        return value.translate(_MD_INERT)
    if isinstance(value, list):
        return [md_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: md_escape(v) for k, v in value.items()}
    return value


def _markdown(plain: Template, ctx: dict[str, Any]) -> tuple[str, str]:
    """The robot variant and its title: every substituted value escaped; our own link stays
    a live link."""
    md_ctx = {k: (v if k == "link" else md_escape(v)) for k, v in ctx.items()}
    title = " ".join(_lines(_block(plain, "title", md_ctx) or ""))
    own = _block(plain, "markdown", md_ctx)
    if own:
        return own, title
    body = _lines(_block(plain, "body", md_ctx) or "")
    link = ctx.get("link")
    more = f"\n\n[查看详情]({link})" if link else ""
    return f"### {title}\n\n" + "\n\n".join(body) + more, title


def _compose(plain: Template, html_tpl: Template, ctx: dict[str, Any]) -> Rendered:
    title = " ".join(_lines(_block(plain, "title", ctx) or ""))
    body = _lines(_block(plain, "body", ctx) or "")
    link = ctx.get("link")
    more = f"查看详情：{link}" if link else ""
    own_text = _block(plain, "text", ctx)
    text = own_text or "\n".join([*body, *(["", more] if more else [])])
    html = _block(html_tpl, "html", ctx) or (
        f"<h3>{html_lib.escape(title)}</h3>"
        + "".join(f"<p>{html_lib.escape(ln)}</p>" for ln in body)
        + (f'<p><a href="{html_lib.escape(link)}">查看详情</a></p>' if link else "")
    )
    markdown, md_title = _markdown(plain, ctx)
    inapp = own_text or "\n".join(body)
    return Rendered(title, text.strip(), html, markdown.strip(), link, md_title, inapp.strip())


def _template_name(event_kind: str) -> str:
    return f"{event_kind}.j2" if event_kind in KIND_LABELS else "test.j2"


def _sandboxed(source: str, ctx: dict[str, Any], wait: float | None) -> Rendered:
    """Compile (cached) and render an override in a render slot, the render under the budget."""
    with sandbox.slot(wait):
        plain, html_tpl = sandbox.compile_pair(source)
        if "title" not in plain.blocks or "body" not in plain.blocks:
            raise InvalidInput(
                "模板须定义 {% block title %} 和 {% block body %}", details=[{"field": "source"}]
            )
        with sandbox.budget():
            out = _compose(plain, html_tpl, ctx)
    if not out.title:
        raise InvalidInput("模板渲染出的标题为空", details=[{"field": "source"}])
    return out


def render_notice(
    event_kind: str,
    payload: Mapping[str, Any],
    *,
    override: str | None = None,
    env: Mapping[str, str] | None = None,
    wait: float | None = None,
) -> tuple[Rendered, str | None]:
    """Render a notice; a failing override falls back to the built-in wording.

    Returns the notice and, when the override failed, why (in Chinese, with its line). Waits
    for a render slot at most `wait` seconds (None: as long as it takes), else RateLimited.
    """
    ctx = _context(payload, link_for(event_kind, payload, env))
    error = None
    if override is not None:
        try:
            return _sandboxed(override, ctx, wait), None
        except RateLimited:
            raise
        except InvalidInput as exc:
            error = exc.message
        except Exception as exc:  # anything an organiser's template can raise
            error = sandbox.describe(exc)[0]
    name = _template_name(event_kind)
    return _compose(_PLAIN.get_template(name), _HTML.get_template(name), ctx), error


def render(
    event_kind: str,
    payload: Mapping[str, Any],
    *,
    override: str | None = None,
    env: Mapping[str, str] | None = None,
    wait: float | None = None,
) -> Rendered:
    """Render a notice; a broken override falls back to the built-in wording."""
    return render_notice(event_kind, payload, override=override, env=env, wait=wait)[0]


def _unknown_field(exc: UndefinedError) -> str:
    name = re.search(r"'([^']+)' is undefined", str(exc))
    known = "、".join(sorted(k for k in DEFAULTS if k != "link"))
    what = f"未知的字段 {name[1]}" if name else str(exc)
    return f"{what}（可用的字段：{known}）"


def validate_override(event_kind: str, source: str) -> Rendered:
    """Check an override by rendering the sample data under the render budget.

    Raises InvalidInput saying what is wrong and on which line (`details[0]["line"]`), or
    RateLimited when no render slot frees within a few seconds.
    """
    if event_kind not in KIND_LABELS:
        raise InvalidInput(
            f"未知的通知类型：{event_kind}（可选：{'、'.join(KIND_LABELS)}）",
            details=[{"field": "event_kind"}],
        )
    if len(source) > MAX_SOURCE:
        raise InvalidInput(f"模板过长（最多 {MAX_SOURCE} 字）", details=[{"field": "source"}])
    try:
        return _sandboxed(source, _context(SAMPLE, SAMPLE["link"]), sandbox.BUSY_WAIT)
    except (InvalidInput, RateLimited):
        raise
    except Exception as exc:  # anything a template can raise is the template's fault: 422
        message, line = sandbox.describe(exc)
        if isinstance(exc, UndefinedError) and "is undefined" in str(exc):
            where = f"第 {line} 行：" if line else ""
            message = f"模板有误：{where}{_unknown_field(exc)}"
        raise InvalidInput(message, details=[{"field": "source", "line": line}]) from exc
