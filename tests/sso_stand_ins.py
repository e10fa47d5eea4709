"""A real HTTP server on 127.0.0.1 standing in for the sign-in of WeCom, DingTalk and Feishu.

One `SsoServer` serves all three platforms' paths, as the real ones answer them:

* the sign-in pages (`/wwlogin/sso/login`, `/oauth2/auth`, `/open-apis/authen/v1/authorize`):
  a small Chinese page with one "确认登录" link per test user of that platform; the link mints
  a code and sends the browser back to `redirect_uri` with `code` (DingTalk: `authCode`) and the
  unchanged `state`. A wrong app id is an error page, as on the platforms.
* WeCom `GET /cgi-bin/gettoken` and `GET /cgi-bin/auth/getuserinfo` (errcode/errmsg envelope);
  DingTalk `POST /v1.0/oauth2/userAccessToken` and `GET /v1.0/contact/users/me` (HTTP 400 with
  `{code, requestid, message}`); Feishu `POST /open-apis/authen/v2/oauth/token` and
  `GET /open-apis/authen/v1/user_info` (code/msg envelope).

Codes are single-use and live `CODE_TTL` seconds; the app id and secret are checked; Feishu
checks that `redirect_uri` matches the one the code was issued for. `stall` makes the next API
requests wait (for timeouts); every API request is recorded in `requests`.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
CODE_TTL = 300.0
APPS = {
    "wecom": {"app_id": "ww-test-corp", "secret": "wecom-secret", "agent_id": "1000002"},
    "dingtalk": {"app_id": "ding-test-client", "secret": "dingtalk-secret"},
    "feishu": {"app_id": "cli_test_app", "secret": "feishu-secret"},
}
AUTHORIZE_PATHS = {
    "/wwlogin/sso/login": "wecom",
    "/oauth2/auth": "dingtalk",
    "/open-apis/authen/v1/authorize": "feishu",
}
CODE_PARAM = {"wecom": "code", "dingtalk": "authCode", "feishu": "code"}


@dataclass
class Issued:
    provider: str
    subject: str
    redirect_uri: str
    at: float
    used: bool = False


@dataclass
class SsoServer:
    """The stand-in's state: its users, issued codes and tokens, recorded requests."""

    users: dict[str, dict[str, str]] = field(
        default_factory=lambda: {p: {} for p in ("wecom", "dingtalk", "feishu")}
    )
    codes: dict[str, Issued] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (provider, sub)
    requests: list[tuple[str, str]] = field(default_factory=list)
    stall: float = 0.0
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_user(self, provider: str, subject: str, name: str) -> None:
        self.users[provider][subject] = name

    def mint_code(self, provider: str, subject: str, redirect_uri: str = "") -> str:
        """A fresh code as the platform gives after the user confirmed."""
        code = secrets.token_hex(16)
        with self.lock:
            self.codes[code] = Issued(provider, subject, redirect_uri, time.monotonic())
        return code

    def take_code(self, provider: str, code: str) -> tuple[Issued | None, str]:
        """Use a code once: (issued, '') or (None, 'unknown'|'used'|'expired')."""
        with self.lock:
            issued = self.codes.get(code)
            if issued is None or issued.provider != provider:
                return None, "unknown"
            if issued.used:
                return None, "used"
            issued.used = True
        if time.monotonic() - issued.at > CODE_TTL:
            return None, "expired"
        return issued, ""

    def new_token(self, provider: str, subject: str) -> str:
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = (provider, subject)
        return token

    def env(self) -> dict[str, str]:
        """The environment that points the application at this stand-in."""
        out: dict[str, str] = {}
        for provider in APPS:
            prefix = f"DANGJIAN_SSO_{provider.upper()}_"
            out[prefix + "LOGIN_URL"] = self.base_url
            out[prefix + "API_URL"] = self.base_url
        out["DANGJIAN_SSO_WECOM_CORPID"] = APPS["wecom"]["app_id"]
        out["DANGJIAN_SSO_WECOM_SECRET"] = APPS["wecom"]["secret"]
        out["DANGJIAN_SSO_WECOM_AGENTID"] = APPS["wecom"]["agent_id"]
        out["DANGJIAN_SSO_DINGTALK_CLIENT_ID"] = APPS["dingtalk"]["app_id"]
        out["DANGJIAN_SSO_DINGTALK_CLIENT_SECRET"] = APPS["dingtalk"]["secret"]
        out["DANGJIAN_SSO_FEISHU_APP_ID"] = APPS["feishu"]["app_id"]
        out["DANGJIAN_SSO_FEISHU_APP_SECRET"] = APPS["feishu"]["secret"]
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ----------------------------------------------------------------- plumbing

    @property
    def sso(self) -> SsoServer:
        return self.server.sso

    def _query(self) -> dict[str, str]:
        parsed = urllib.parse.urlsplit(self.path)
        return {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: dict[str, Any], status: int = 200) -> None:
        raw = json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, raw, "application/json; charset=utf-8")

    def _page(self, title: str, inner: str, status: int = 200) -> None:
        doc = (
            f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{title}</title>'
            f"<body><h1>{title}</h1>{inner}</body></html>"
        )
        self._send(status, doc.encode(), "text/html; charset=utf-8")

    def _route(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def _record(self) -> None:
        with self.sso.lock:
            self.sso.requests.append((self.command, self._route()))
        if self.sso.stall:
            time.sleep(self.sso.stall)

    # ----------------------------------------------------------------- verbs

    def do_GET(self) -> None:
        path = self._route()
        if path in AUTHORIZE_PATHS:
            return self._authorize(AUTHORIZE_PATHS[path])
        if path == "/confirm":
            return self._confirm()
        self._record()
        handlers = {
            "/cgi-bin/gettoken": self._wecom_token,
            "/cgi-bin/auth/getuserinfo": self._wecom_user,
            "/v1.0/contact/users/me": self._dingtalk_me,
            "/open-apis/authen/v1/user_info": self._feishu_user,
        }
        handler = handlers.get(path)
        if handler is None:
            return self._json({"errcode": 404, "errmsg": "not found"}, 404)
        handler()

    def do_POST(self) -> None:
        self._record()
        path = self._route()
        if path == "/v1.0/oauth2/userAccessToken":
            return self._dingtalk_token()
        if path == "/open-apis/authen/v2/oauth/token":
            return self._feishu_token()
        self._json({"errcode": 404, "errmsg": "not found"}, 404)

    # ----------------------------------------------------------------- sign-in pages

    def _authorize(self, provider: str) -> None:
        q = self._query()
        app_id = q.get("appid") if provider == "wecom" else q.get("client_id")
        if app_id != APPS[provider]["app_id"] or not q.get("redirect_uri"):
            return self._page("参数错误", "<p>应用不存在或回调地址缺失</p>", 400)
        if provider == "wecom" and q.get("agentid") != APPS["wecom"]["agent_id"]:
            return self._page("参数错误", "<p>agentid 错误</p>", 400)
        links = []
        for subject, name in self.sso.users[provider].items():
            target = {"provider": provider, "subject": subject}
            target |= {"redirect_uri": q["redirect_uri"], "state": q.get("state", "")}
            href = "/confirm?" + urllib.parse.urlencode(target)
            links.append(
                f'<li><a class="confirm" data-subject="{html.escape(subject)}" '
                f'href="{html.escape(href)}">确认登录（{html.escape(name)}）</a></li>'
            )
        self._page(f"{provider} 登录确认", "<ul>" + "".join(links) + "</ul>")

    def _confirm(self) -> None:
        q = self._query()
        provider, redirect_uri = q.get("provider", ""), q.get("redirect_uri", "")
        code = self.sso.mint_code(provider, q.get("subject", ""), redirect_uri)
        back = {CODE_PARAM[provider]: code, "state": q.get("state", "")}
        sep = "&" if "?" in redirect_uri else "?"
        self._send(
            302, b"", "text/plain", Location=redirect_uri + sep + urllib.parse.urlencode(back)
        )

    # ----------------------------------------------------------------- WeCom

    def _wecom_token(self) -> None:
        q = self._query()
        if q.get("corpid") != APPS["wecom"]["app_id"]:
            return self._json({"errcode": 40013, "errmsg": "invalid corpid"})
        if q.get("corpsecret") != APPS["wecom"]["secret"]:
            return self._json({"errcode": 40001, "errmsg": "invalid credential"})
        token = self.sso.new_token("wecom", "")
        self._json({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _wecom_user(self) -> None:
        q = self._query()
        if self.sso.tokens.get(q.get("access_token", ""), ("",))[0] != "wecom":
            return self._json({"errcode": 40014, "errmsg": "invalid access_token"})
        issued, _ = self.sso.take_code("wecom", q.get("code", ""))
        if issued is None:
            return self._json({"errcode": 40029, "errmsg": "invalid code"})
        self._json({"errcode": 0, "errmsg": "ok", "userid": issued.subject})

    # ----------------------------------------------------------------- DingTalk

    def _dingtalk_error(self, code: str, message: str, status: int = 400) -> None:
        self._json({"code": code, "requestid": secrets.token_hex(8), "message": message}, status)

    def _dingtalk_token(self) -> None:
        body = self._body()
        app = APPS["dingtalk"]
        if body.get("clientId") != app["app_id"] or body.get("clientSecret") != app["secret"]:
            return self._dingtalk_error("InvalidAuthentication", "不合法的clientId或clientSecret")
        if body.get("grantType") != "authorization_code":
            return self._dingtalk_error("MissingParameter", "grantType不合法")
        issued, _ = self.sso.take_code("dingtalk", str(body.get("code") or ""))
        if issued is None:
            return self._dingtalk_error("invalidAuthCode", "不合法的临时授权码")
        token = self.sso.new_token("dingtalk", issued.subject)
        self._json({"accessToken": token, "refreshToken": secrets.token_hex(8), "expireIn": 7200})

    def _dingtalk_me(self) -> None:
        found = self.sso.tokens.get(self.headers.get("x-acs-dingtalk-access-token") or "")
        if found is None or found[0] != "dingtalk":
            return self._dingtalk_error("InvalidAuthentication", "不合法的access_token")
        name = self.sso.users["dingtalk"].get(found[1], "")
        self._json({"nick": name, "unionId": found[1], "openId": "o-" + found[1]})

    # ----------------------------------------------------------------- Feishu

    def _feishu_error(self, code: int, error: str, description: str) -> None:
        self._json({"code": code, "error": error, "error_description": description}, 400)

    def _feishu_token(self) -> None:
        body = self._body()
        app = APPS["feishu"]
        if body.get("grant_type") != "authorization_code":
            return self._feishu_error(20036, "unsupported_grant_type", "grant_type not supported")
        if body.get("client_id") != app["app_id"] or body.get("client_secret") != app["secret"]:
            return self._feishu_error(20002, "invalid_client", "The client secret is invalid.")
        issued, why = self.sso.take_code("feishu", str(body.get("code") or ""))
        if issued is None:
            code = {"used": 20065, "expired": 20004}.get(why, 20003)
            return self._feishu_error(code, "invalid_grant", f"authorization code {why}")
        if body.get("redirect_uri") != issued.redirect_uri:
            return self._feishu_error(20071, "invalid_grant", "redirect_uri mismatch")
        token = self.sso.new_token("feishu", issued.subject)
        self._json({"code": 0, "access_token": token, "expires_in": 7200, "token_type": "Bearer"})

    def _feishu_user(self) -> None:
        auth = self.headers.get("Authorization") or ""
        found = self.sso.tokens.get(auth.removeprefix("Bearer "))
        if found is None or found[0] != "feishu":
            return self._json({"code": 99991668, "msg": "Invalid access token"}, 400)
        name = self.sso.users["feishu"].get(found[1], "")
        data = {"name": name, "open_id": found[1], "union_id": "on_" + found[1]}
        self._json({"code": 0, "msg": "success", "data": data})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sso: SsoServer) -> None:
        super().__init__((HOST, 0), _Handler)
        self.sso = sso


@contextmanager
def sso_server() -> Iterator[SsoServer]:
    """Run the stand-in on a free port of 127.0.0.1 for the duration of the block."""
    sso = SsoServer()
    server = _Server(sso)
    sso.base_url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="sso-stand-in", daemon=True)
    thread.start()
    try:
        yield sso
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
