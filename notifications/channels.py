"""Delivery of one notification through one channel: e-mail, signed webhook, chat robots.

Every `send_*` function makes one attempt and returns a `Result`; it never raises for network or
protocol errors. `Result.permanent` says the same request will never succeed (bad key, bad
signature, rejected address); otherwise the caller may retry, after `retry_after` seconds when
given, and sends nothing more to the same robot for `robot_pause` seconds when given.

Protocol facts (limits, signatures, error codes) are in shared/DESIGN-NOTES.md, "Chat robots".
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from states import outbound

# httpx logs every request URL at INFO; robot URLs carry keys, tokens and signatures.
logging.getLogger("httpx").setLevel(logging.WARNING)

__all__ = [
    "BASES",
    "BURST_LIMITS",
    "HTTP_TIMEOUT",
    "LIMITS",
    "MAX_BODY",
    "MAX_MARKDOWN",
    "Message",
    "Result",
    "dingtalk_sign",
    "feishu_sign",
    "robot_base",
    "robot_url",
    "send_dingtalk",
    "send_feishu",
    "send_webhook",
    "send_wecom",
    "truncate",
    "webhook_signature",
]


@dataclass(frozen=True)
class Message:
    """One rendered notification, the same on every retry."""

    id: str
    event_kind: str
    title: str
    text: str
    html: str
    markdown: str
    link: str | None


@dataclass(frozen=True)
class Result:
    """The outcome of one delivery attempt."""

    ok: bool
    permanent: bool = False
    retry_after: float | None = None
    detail: str = ""
    robot_pause: float | None = None


def _ok(detail: str = "") -> Result:
    return Result(ok=True, detail=detail)


def _transient(detail: str, retry_after: float | None = None) -> Result:
    return Result(ok=False, permanent=False, retry_after=retry_after, detail=detail)


def _permanent(detail: str) -> Result:
    return Result(ok=False, permanent=True, detail=detail)


def _throttled(detail: str, seconds: float) -> Result:
    return Result(ok=False, retry_after=seconds, robot_pause=seconds, detail=detail)


# ---------------------------------------------------------------------------------------------
# Limits

BASES: dict[str, str] = {
    "wecom": "https://qyapi.weixin.qq.com",
    "dingtalk": "https://oapi.dingtalk.com",
    "feishu": "https://open.feishu.cn",
}

# Messages per window (seconds) per robot.
LIMITS: dict[str, tuple[int, float]] = {
    "wecom": (20, 60.0),
    "dingtalk": (20, 60.0),
    "feishu": (100, 60.0),
}
# Feishu also allows at most 5 messages a second per robot.
BURST_LIMITS: dict[str, tuple[int, float]] = {"feishu": (5, 1.0)}

# Largest markdown (Feishu: plain text) per message, in UTF-8 bytes, footer included.
# WeCom rejects markdown.content over 4096 bytes (errcode 40058). DingTalk documents no limit on
# the markdown text itself, only on the request: "body 大小不合法;请保持大小在 20000bytes 以内";
# Feishu caps the request body at 20 KB. Both keep 2,000 bytes for the title and the JSON, and
# `MAX_BODY` is enforced on the encoded body as well.
MAX_MARKDOWN: dict[str, int] = {"wecom": 4096, "dingtalk": 18000, "feishu": 18000}
MAX_BODY: dict[str, int] = {"dingtalk": 20000, "feishu": 20000}

# Seconds to wait after a throttle answer: WeCom 45009 is per minute; DingTalk 130101 blocks the
# robot for 10 minutes; Feishu 9499/11232 is per minute.
WECOM_THROTTLE = 60.0
DINGTALK_THROTTLE = 600.0
FEISHU_THROTTLE = 60.0

# Read by every call that makes its own client (tests shorten it).
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_RESPONSE = 64 * 1024  # bytes of a response body that are read; the rest is ignored
USER_AGENT = "dangjian-flow"

# Our names for the services, and our words for their error codes: a delivery record says what
# happened in these words and numbers only, never with text or bytes from the other side.
NAMES = {"webhook": "Webhook", "wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
WECOM_CODES = {
    0: "成功",
    -1: "系统繁忙",
    40008: "消息类型无效",
    40058: "内容过长或参数无效",
    45009: "发送过于频繁",
    93000: "key 无效，机器人可能已被移除",
}
DINGTALK_CODES = {
    0: "成功",
    -1: "系统繁忙",
    130101: "发送过快，机器人被限流 10 分钟",
    300001: "access_token 无效",
    300005: "access_token 不存在",
    400013: "群已解散",
    410100: "发送过快，被限流",
}
DINGTALK_310000 = (  # (words in errmsg, our meaning) for the security-setting failure
    (("timestamp",), "时间戳无效，请检查本机时钟"),
    (("sign", "签名"), "签名不匹配"),
    (("keyword", "关键词"), "消息未包含机器人设置的关键词"),
    (("whitelist", "白名单", " ip "), "本机 IP 不在机器人的白名单内"),
)
FEISHU_CODES = {
    0: "成功",
    9499: "请求无效或过于频繁",
    11232: "发送过于频繁",
    19001: "hook 地址无效",
    19021: "签名校验失败或时间戳与本机相差超过一小时",
    19022: "本机 IP 不在机器人的白名单内",
    19024: "消息未包含机器人设置的关键词",
}

TRUNCATION_MARK = "\n\n……（内容过长，已截断）"


def truncate(text: str, limit_bytes: int, link: str | None) -> str:
    """Return `text` cut to at most `limit_bytes` UTF-8 bytes, with a note and link when cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit_bytes:
        return text
    suffix = TRUNCATION_MARK + (f"查看全文：{link}" if link else "")
    if len(suffix.encode("utf-8")) > limit_bytes:
        suffix = TRUNCATION_MARK  # a link longer than the limit: keep only the note
    if len(suffix.encode("utf-8")) > limit_bytes:
        return raw[:limit_bytes].decode("utf-8", errors="ignore")
    room = limit_bytes - len(suffix.encode("utf-8"))
    # A valid encoding cut anywhere loses at most the last, partial character.
    head = raw[:room].decode("utf-8", errors="ignore")
    # Prefer to end on a line break when one is near the end (keeps markdown well formed).
    newline = head.rfind("\n")
    if newline >= 0 and len(head[newline:].encode("utf-8")) <= room // 4:
        head = head[:newline]
    return head.rstrip() + suffix


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


def robot_base(kind: str, env: Mapping[str, str] | None = None) -> str:
    """Return the API base of a robot kind; DANGJIAN_<KIND>_BASE overrides the public one."""
    if kind not in BASES:
        raise ValueError(f"unknown robot kind {kind!r}; expected one of {', '.join(BASES)}")
    env = os.environ if env is None else env
    override = env.get(f"DANGJIAN_{kind.upper()}_BASE", "").strip()
    return (override or BASES[kind]).rstrip("/")


def robot_url(kind: str, url_or_key: str, env: Mapping[str, str] | None = None) -> str:
    """Return the URL to post to: a full http(s) URL as is, else composed from the key/token."""
    value = url_or_key.strip()
    if value.lower().startswith(("http://", "https://")):
        return value
    base = robot_base(kind, env)
    if not value:
        raise ValueError(f"empty {kind} robot key")
    quoted = urllib.parse.quote(value, safe="")
    if kind == "wecom":
        return f"{base}/cgi-bin/webhook/send?key={quoted}"
    if kind == "dingtalk":
        return f"{base}/robot/send?access_token={quoted}"
    return f"{base}/open-apis/bot/v2/hook/{quoted}"


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes  # read only to classify the answer; never stored or shown

    def json_object(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _post(
    label: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    client: httpx.Client | None,
) -> _Reply | Result:
    """POST `body` through the guarded client (states/outbound.py); return the reply, or a
    failed Result in our own words for a refused address, a network or a URL error."""
    all_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        **headers,
    }
    http = outbound.client(HTTP_TIMEOUT) if client is None else client
    name = NAMES[label]
    try:
        with http.stream("POST", url, content=body, headers=all_headers) as response:
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= MAX_RESPONSE:
                    break
            return _Reply(response.status_code, response.headers, bytes(data[:MAX_RESPONSE]))
    except outbound.OutboundRefused as exc:
        return _permanent(f"{name}：地址被拒绝：{exc.reason}")
    except httpx.TimeoutException as exc:
        return _transient(f"{name}：请求超时（{type(exc).__name__}）")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        return _permanent(f"{name}：地址无效")
    except httpx.HTTPError as exc:
        return _transient(f"{name}：网络错误（{type(exc).__name__}）")
    except (ValueError, UnicodeError):  # malformed URL or header caught before sending
        return _permanent(f"{name}：地址或请求头无效")
    finally:
        if client is None:
            http.close()


def _retry_after(headers: httpx.Headers, default: float | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), else `default`."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), 86400.0)


def _http_status_result(label: str, reply: _Reply, throttle: float) -> Result | None:
    """Map a non-2xx status (429, 5xx, other 4xx, 3xx) to a Result; None for 2xx."""
    status = reply.status
    if 200 <= status < 300:
        return None
    detail = f"{NAMES[label]}：对方返回 HTTP {status}"
    if status == 429:
        seconds = _retry_after(reply.headers, throttle)
        return Result(ok=False, retry_after=seconds, robot_pause=seconds, detail=detail)
    if status >= 500 or status in (408, 425):
        return _transient(detail, _retry_after(reply.headers, None))
    if 300 <= status < 400:
        return _permanent(f"{detail}（跳转，未跟随；请填写最终地址）")
    return _permanent(detail)


def _fit_body(build: Callable[[int], bytes], budget: int, max_body: int) -> bytes:
    """Return `build(budget)`, shrinking the budget until the encoded body fits `max_body`."""
    body = build(budget)
    while len(body) > max_body and budget > 0:
        budget = max(0, budget - max(len(body) - max_body, 16))
        body = build(budget)
    return body


def _with_heading(markdown: str, title: str) -> str:
    """Put the title on top unless the markdown already starts with it."""
    first = next((line for line in markdown.splitlines() if line.strip()), "")
    if title.strip() and title.strip() in first:
        return markdown
    return f"### {title.strip()}\n\n{markdown}"


# ---------------------------------------------------------------------------------------------
# Generic signed webhook


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the X-Dangjian-Signature value: sha256=hex(HMAC_SHA256(secret, "{ts}.{body}"))."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def send_webhook(
    msg: Message,
    url: str,
    secret: str | None,
    *,
    now: float | None = None,
    client: httpx.Client | None = None,
) -> Result:
    """POST the message as JSON to `url`, signed with `secret` when one is set."""
    timestamp = int(time.time() if now is None else now)
    payload = {
        "id": msg.id,
        "event_kind": msg.event_kind,
        "title": msg.title,
        "text": msg.text,
        "markdown": msg.markdown,
        "link": msg.link,
        "sent_at": datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    body = _json_bytes(payload)
    headers = {"X-Dangjian-Message-Id": msg.id, "X-Dangjian-Timestamp": str(timestamp)}
    if secret:
        headers["X-Dangjian-Signature"] = webhook_signature(secret, timestamp, body)
    reply = _post("webhook", url, body, headers, client)
    if isinstance(reply, Result):
        return reply
    failed = _http_status_result("webhook", reply, throttle=60.0)
    return failed or _ok(f"webhook HTTP {reply.status}")


# ---------------------------------------------------------------------------------------------
# WeCom (企业微信群机器人)

WECOM_TRANSIENT = {-1}  # system busy


def send_wecom(
    msg: Message,
    url_or_key: str,
    *,
    env: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Result:
    """Send `msg` as markdown to a WeCom group robot (the key is the only credential)."""
    try:
        url = robot_url("wecom", url_or_key, env)
    except ValueError as exc:
        return _permanent(f"wecom: {exc}")
    footer = f'\n\n<font color="comment">消息编号 {msg.id}</font>'
    budget = MAX_MARKDOWN["wecom"] - len(footer.encode("utf-8"))
    content = truncate(_with_heading(msg.markdown, msg.title), budget, msg.link) + footer
    body = _json_bytes({"msgtype": "markdown", "markdown": {"content": content}})
    reply = _post("wecom", url, body, {}, client)
    if isinstance(reply, Result):
        return reply
    failed = _http_status_result("wecom", reply, WECOM_THROTTLE)
    if failed:
        return failed
    data = reply.json_object()
    code = _code(data, "errcode")
    if data is None or code is None:
        return _unrecognised("wecom", reply)
    detail = _code_detail("wecom", code, WECOM_CODES.get(code, ""))
    if code == 0:
        return _ok(detail)
    if code == 45009:
        return _throttled(detail, WECOM_THROTTLE)
    if code in WECOM_TRANSIENT:
        return _transient(detail)
    return _permanent(detail)  # 93000 bad key, 40008 bad type, 40058 too long, unknown codes


def _code(data: Mapping[str, Any] | None, *keys: str) -> int | None:
    """The first of `keys` in the JSON answer that holds an integer error code, else None."""
    for key in keys:
        value = None if data is None else data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**9:
            return value
    return None


def _code_detail(label: str, code: int, meaning: str) -> str:
    """E.g. "企业微信返回错误码 93000（key 无效）": the code and our own words, never theirs."""
    return f"{NAMES[label]}返回错误码 {code}" + (f"（{meaning}）" if meaning else "")


def _unrecognised(label: str, reply: _Reply) -> Result:
    return _transient(f"{NAMES[label]}返回了无法识别的应答（HTTP {reply.status}）")


# ---------------------------------------------------------------------------------------------
# DingTalk (钉钉自定义机器人)

DINGTALK_THROTTLE_CODES = {130101, 410100}  # send too fast (10 min), 限流
DINGTALK_TRANSIENT = {-1}  # system busy


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """Return base64(HMAC_SHA256(secret, "{ts}\\n{secret}")), before URL encoding."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def _dingtalk_meaning(code: int, errmsg: str) -> str:
    if code != 310000:
        return DINGTALK_CODES.get(code, "")
    found = (meaning for words, meaning in DINGTALK_310000 if any(w in errmsg for w in words))
    return next(found, "安全设置校验未通过")


def send_dingtalk(
    msg: Message,
    url_or_token: str,
    secret: str | None,
    *,
    now_ms: int | None = None,
    env: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Result:
    """Send `msg` as markdown to a DingTalk custom robot, signed when `secret` is set."""
    try:
        url = robot_url("dingtalk", url_or_token, env)
    except ValueError as exc:
        return _permanent(f"dingtalk: {exc}")
    if secret:
        ts = int(time.time() * 1000) if now_ms is None else int(now_ms)
        sign = urllib.parse.quote(dingtalk_sign(secret, ts), safe="")
        url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign}"
    footer = f"\n\n###### 消息编号 {msg.id}"
    markdown = _with_heading(msg.markdown, msg.title)

    def build(budget: int) -> bytes:
        text = truncate(markdown, budget, msg.link) + footer
        return _json_bytes({"msgtype": "markdown", "markdown": {"title": msg.title, "text": text}})

    budget = MAX_MARKDOWN["dingtalk"] - len(footer.encode("utf-8"))
    body = _fit_body(build, budget, MAX_BODY["dingtalk"])
    reply = _post("dingtalk", url, body, {}, client)
    if isinstance(reply, Result):
        return reply
    failed = _http_status_result("dingtalk", reply, DINGTALK_THROTTLE)
    if failed:
        return failed
    data = reply.json_object()
    code = _code(data, "errcode")
    if data is None or code is None:
        return _unrecognised("dingtalk", reply)
    errmsg = str(data.get("errmsg") or "").lower()  # read to classify; never stored
    detail = _code_detail("dingtalk", code, _dingtalk_meaning(code, errmsg))
    if code == 0:
        return _ok(detail)
    if code in DINGTALK_THROTTLE_CODES:
        return _throttled(detail, DINGTALK_THROTTLE)
    if code in DINGTALK_TRANSIENT:
        return _transient(detail)
    if code == 310000 and secret and "timestamp" in errmsg:
        # Our clock is more than an hour off DingTalk's. The message is fine and every attempt
        # signs a fresh timestamp, so it goes through once the clock is fixed.
        return _transient(detail, retry_after=300.0)
    return _permanent(detail)  # 310000 sign/keyword/ip, 300001/300005 token, 400013 group gone


# ---------------------------------------------------------------------------------------------
# Feishu (飞书自定义机器人)

FEISHU_THROTTLE_CODES = {9499, 11232}


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Return base64(HMAC_SHA256(key="{ts}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _feishu_post(msg: Message, text: str) -> dict[str, Any]:
    lines: list[list[dict[str, str]]] = [
        [{"tag": "text", "text": line}] for line in (text.splitlines() or [""])
    ]
    if msg.link:
        lines.append([{"tag": "a", "text": "查看详情", "href": msg.link}])
    lines.append([{"tag": "text", "text": f"消息编号 {msg.id}"}])
    return {"post": {"zh_cn": {"title": msg.title, "content": lines}}}


def send_feishu(
    msg: Message,
    url_or_hook: str,
    secret: str | None,
    *,
    now_s: int | None = None,
    env: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Result:
    """Send `msg` as a rich-text post (title, text, link) to a Feishu custom bot."""
    try:
        url = robot_url("feishu", url_or_hook, env)
    except ValueError as exc:
        return _permanent(f"feishu: {exc}")
    signature: dict[str, str] = {}
    if secret:
        ts = int(time.time()) if now_s is None else int(now_s)
        signature = {"timestamp": str(ts), "sign": feishu_sign(secret, ts)}

    def build(budget: int) -> bytes:
        text = truncate(msg.text, budget, msg.link)
        return _json_bytes({**signature, "msg_type": "post", "content": _feishu_post(msg, text)})

    body = _fit_body(build, MAX_MARKDOWN["feishu"], MAX_BODY["feishu"])
    reply = _post("feishu", url, body, {}, client)
    if isinstance(reply, Result):
        return reply
    data = reply.json_object()
    code = _code(data, "code", "StatusCode")
    if code is None or reply.status == 429 or reply.status >= 500:
        failed = _http_status_result("feishu", reply, FEISHU_THROTTLE)
        if failed:
            return failed
    if data is None or code is None:
        return _unrecognised("feishu", reply)
    detail = _code_detail("feishu", code, FEISHU_CODES.get(code, ""))
    if code == 0:
        return _ok(detail)
    if code == 9499 and reply.status == 400:
        # Feishu also answers 9499 "Bad Request" (HTTP 400) to a malformed or oversized body:
        # the same bytes will never pass, and the robot is not throttled.
        return _permanent(detail)
    if code in FEISHU_THROTTLE_CODES:
        return _throttled(detail, FEISHU_THROTTLE)
    return _permanent(detail)  # 19021 sign/timestamp, 19024 keyword, 19001 bad hook, unknown
