"""The three platforms' web sign-in for an organisation's own (self-built) app, as each documents it.

* WeCom (企业微信): the browser goes to `{login}/wwlogin/sso/login?login_type=CorpApp&appid=
  CORPID&agentid=AGENTID&redirect_uri=…&state=…` and comes back with `code` and `state`; the
  server takes `GET {api}/cgi-bin/gettoken?corpid&corpsecret` → `access_token`, then
  `GET {api}/cgi-bin/auth/getuserinfo?access_token&code` → `userid` (errcode/errmsg envelope;
  a non-member gets `openid` only and is refused).
* DingTalk (钉钉): `{login}/oauth2/auth?client_id&redirect_uri&response_type=code&scope=openid
  &state&prompt=consent` → `authCode` and `state`; `POST {api}/v1.0/oauth2/userAccessToken`
  `{clientId, clientSecret, code, grantType: authorization_code}` → `accessToken`;
  `GET {api}/v1.0/contact/users/me` with `x-acs-dingtalk-access-token` → `unionId`
  (errors: an HTTP 4xx/5xx with `{code, message}`).
* Feishu (飞书): `{login}/open-apis/authen/v1/authorize?client_id&redirect_uri&response_type=code
  &state` → `code` and `state`; `POST {api}/open-apis/authen/v2/oauth/token` (grant_type,
  client_id, client_secret, code, redirect_uri) → `access_token`;
  `GET {api}/open-apis/authen/v1/user_info` with `Authorization: Bearer …` → `data.open_id`
  (code/msg envelope, 0 for success).

The deployment configures each platform by environment variables (read at every call, see
`settings`); only configured platforms are offered. Every request goes through the guarded
outbound client (`states/outbound.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from states import outbound
from states.errors import DomainError

LABELS = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
#: Seconds allowed for each request to a platform (connect, read, write, pool).
TIMEOUT = 10.0

_DEFAULTS = {
    "wecom": ("https://login.work.weixin.qq.com", "https://qyapi.weixin.qq.com"),
    "dingtalk": ("https://login.dingtalk.com", "https://api.dingtalk.com"),
    "feishu": ("https://accounts.feishu.cn", "https://open.feishu.cn"),
}
#: Environment variable names of each platform's app id, secret and (WeCom) agent id.
_ENV_KEYS = {
    "wecom": (
        "DANGJIAN_SSO_WECOM_CORPID",
        "DANGJIAN_SSO_WECOM_SECRET",
        "DANGJIAN_SSO_WECOM_AGENTID",
    ),
    "dingtalk": ("DANGJIAN_SSO_DINGTALK_CLIENT_ID", "DANGJIAN_SSO_DINGTALK_CLIENT_SECRET", None),
    "feishu": ("DANGJIAN_SSO_FEISHU_APP_ID", "DANGJIAN_SSO_FEISHU_APP_SECRET", None),
}


class PlatformError(DomainError):
    """The platform refused or could not be reached; `message` says so in Chinese."""

    code = "platform_error"


@dataclass(frozen=True)
class Settings:
    """One platform's app as the deployment configured it."""

    provider: str
    app_id: str
    secret: str
    agent_id: str
    login_base: str
    api_base: str

    @property
    def label(self) -> str:
        return LABELS[self.provider]


def settings(provider: str, env: Mapping[str, str] | None = None) -> Settings | None:
    """The platform's settings from the environment, or None when it is not configured."""
    env = os.environ if env is None else env
    if provider not in _ENV_KEYS:
        return None
    id_key, secret_key, agent_key = _ENV_KEYS[provider]
    app_id, secret = env.get(id_key, "").strip(), env.get(secret_key, "").strip()
    agent_id = env.get(agent_key, "").strip() if agent_key else ""
    if not app_id or not secret or (agent_key and not agent_id):
        return None
    prefix = f"DANGJIAN_SSO_{provider.upper()}_"
    login, api = _DEFAULTS[provider]
    return Settings(
        provider,
        app_id,
        secret,
        agent_id,
        env.get(prefix + "LOGIN_URL", login).strip().rstrip("/"),
        env.get(prefix + "API_URL", api).strip().rstrip("/"),
    )


def configured(env: Mapping[str, str] | None = None) -> list[Settings]:
    """Every configured platform, in the order WeCom, DingTalk, Feishu."""
    found = (settings(p, env) for p in LABELS)
    return [s for s in found if s is not None]


# --------------------------------------------------------------------------- the browser's leg


def authorize_url(cfg: Settings, *, redirect_uri: str, state: str) -> str:
    """Where the browser goes to sign in on the platform."""
    if cfg.provider == "wecom":
        path = "/wwlogin/sso/login"
        query = {"login_type": "CorpApp", "appid": cfg.app_id, "agentid": cfg.agent_id}
    elif cfg.provider == "dingtalk":
        path = "/oauth2/auth"
        query = {"client_id": cfg.app_id, "response_type": "code", "scope": "openid"}
        query["prompt"] = "consent"
    else:
        path = "/open-apis/authen/v1/authorize"
        query = {"client_id": cfg.app_id, "response_type": "code"}
    query |= {"redirect_uri": redirect_uri, "state": state}
    return f"{cfg.login_base}{path}?{urlencode(query)}"


def callback_code(cfg: Settings, params: Mapping[str, str]) -> str:
    """The authorization code in the callback's query ('' when absent)."""
    if cfg.provider == "dingtalk":
        return (params.get("authCode") or params.get("code") or "")[:512]
    return (params.get("code") or "")[:512]


# --------------------------------------------------------------------------- the server's leg


def subject_for(cfg: Settings, *, code: str, redirect_uri: str) -> str:
    """The platform's user id behind `code`; PlatformError when it cannot be had."""
    if not code:
        raise PlatformError(f"{cfg.label}没有返回授权码，请重新登录{cfg.label}后再试")
    fetch = _FETCHERS[cfg.provider]
    try:
        with outbound.client(httpx.Timeout(TIMEOUT)) as http:
            subject = fetch(cfg, http, code, redirect_uri)
    except httpx.TimeoutException:
        raise PlatformError(f"{cfg.label}响应超时，请稍后再试") from None
    except (httpx.HTTPError, OSError):
        raise PlatformError(
            f"无法连接{cfg.label}，请稍后再试；如果问题持续，请联系管理员"
        ) from None
    if not subject or len(subject) > 128:
        raise PlatformError(f"{cfg.label}没有返回可用的用户身份")
    return subject


def _json(resp: httpx.Response, cfg: Settings) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PlatformError(f"{cfg.label}返回的内容无法识别（HTTP {resp.status_code}）")
    return body


def _refused(cfg: Settings, code: object, message: object) -> PlatformError:
    """The platform said no: its own code and message, for the administrator."""
    text = str(message or "")[:200]
    return PlatformError(
        f"{cfg.label}拒绝了这次登录（错误码 {code}：{text}）。"
        "授权码只能使用一次且几分钟内有效，请重新登录；如果问题持续，请联系管理员检查应用配置",
        details={"provider": cfg.provider, "code": code},
    )


def _wecom(cfg: Settings, http: httpx.Client, code: str, redirect_uri: str) -> str:
    try:
        user = _wecom_user(cfg, http, code)
    except PlatformError as exc:
        if not (isinstance(exc.details, dict) and exc.details.get("code") in _WECOM_STALE):
            raise
        _wecom_tokens.pop(_wecom_key(cfg), None)  # revoked early: fetch a fresh one, once
        user = _wecom_user(cfg, http, code)
    if not user.get("userid"):
        raise PlatformError(f"您不是本单位{cfg.label}的成员，不能用它登录")
    return str(user["userid"])


#: WeCom's answers for an access_token that is invalid or expired.
_WECOM_STALE = (40014, 42001)
#: access_token by (API host, corpid, secret): WeCom asks for it to be cached (2 hours), since
#: `gettoken` is rate-limited.
_wecom_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}


def _wecom_key(cfg: Settings) -> tuple[str, str, str]:
    return (cfg.api_base, cfg.app_id, cfg.secret)


def _wecom_user(cfg: Settings, http: httpx.Client, code: str) -> dict[str, Any]:
    token = _wecom_token(cfg, http)
    return _wecom_call(cfg, http, "/cgi-bin/auth/getuserinfo", access_token=token, code=code)


def _wecom_token(cfg: Settings, http: httpx.Client) -> str:
    cached = _wecom_tokens.get(_wecom_key(cfg))
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    body = _wecom_call(cfg, http, "/cgi-bin/gettoken", corpid=cfg.app_id, corpsecret=cfg.secret)
    token = str(body.get("access_token") or "")
    lifetime = body.get("expires_in")
    seconds = int(lifetime) if isinstance(lifetime, int) else 7200
    _wecom_tokens[_wecom_key(cfg)] = (token, time.monotonic() + max(0, seconds - 300))
    return token


def _wecom_call(cfg: Settings, http: httpx.Client, path: str, **query: str) -> dict[str, Any]:
    body = _json(http.get(cfg.api_base + path, params=query), cfg)
    if body.get("errcode", -1) != 0:
        raise _refused(cfg, body.get("errcode"), body.get("errmsg"))
    return body


def _dingtalk(cfg: Settings, http: httpx.Client, code: str, redirect_uri: str) -> str:
    payload = {"clientId": cfg.app_id, "clientSecret": cfg.secret, "code": code}
    payload["grantType"] = "authorization_code"
    resp = http.post(cfg.api_base + "/v1.0/oauth2/userAccessToken", json=payload)
    token = _dingtalk_body(cfg, resp).get("accessToken")
    if not token:
        raise _refused(cfg, "-", "没有返回 accessToken")
    headers = {"x-acs-dingtalk-access-token": str(token)}
    me = _dingtalk_body(cfg, http.get(cfg.api_base + "/v1.0/contact/users/me", headers=headers))
    return str(me.get("unionId") or "")


def _dingtalk_body(cfg: Settings, resp: httpx.Response) -> dict[str, Any]:
    body = _json(resp, cfg)
    if resp.status_code != 200:
        raise _refused(cfg, body.get("code", resp.status_code), body.get("message"))
    return body


def _feishu(cfg: Settings, http: httpx.Client, code: str, redirect_uri: str) -> str:
    payload = {"grant_type": "authorization_code", "client_id": cfg.app_id}
    payload |= {"client_secret": cfg.secret, "code": code, "redirect_uri": redirect_uri}
    resp = http.post(cfg.api_base + "/open-apis/authen/v2/oauth/token", json=payload)
    body = _json(resp, cfg)
    if body.get("code", -1) != 0 or not body.get("access_token"):
        raise _refused(cfg, body.get("code"), body.get("error_description") or body.get("error"))
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    info = _json(http.get(cfg.api_base + "/open-apis/authen/v1/user_info", headers=headers), cfg)
    if info.get("code", -1) != 0:
        raise _refused(cfg, info.get("code"), info.get("msg"))
    data = info.get("data")
    return str(data.get("open_id") or "") if isinstance(data, dict) else ""


_FETCHERS: dict[str, Callable[[Settings, httpx.Client, str, str], str]] = {
    "wecom": _wecom,
    "dingtalk": _dingtalk,
    "feishu": _feishu,
}
