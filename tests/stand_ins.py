"""Real servers that stand in for the services notifications are delivered to.

- `smtp_server`: aiosmtpd in a subprocess (a Maildir mailbox, or `RejectingHandler`), plain,
  STARTTLS or SMTPS with a self-signed certificate from `make_cert`; `read_mail` reads the box.
- `RobotServer`: a threaded HTTP server on 127.0.0.1 imitating the WeCom, DingTalk and Feishu
  robot APIs and a generic signed webhook. It checks what the real services check (key or token,
  DingTalk and Feishu signatures within one hour, the webhook HMAC, size limits, a per-minute
  limit when asked), answers with their error codes, records every request, and can be told to
  throttle, fail or stall the next requests.

Only the standard library is imported at module level: aiosmtpd imports this module in its own
process for `-c tests.stand_ins.RejectingHandler`.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import mailbox
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------------
# SMTP


class RejectingHandler:
    """aiosmtpd handler that answers every RCPT TO with one fixed reply (default: 550)."""

    def __init__(self, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        self.reply = reply

    @classmethod
    def from_cli(cls, parser: Any, *args: str) -> RejectingHandler:
        return cls(" ".join(args)) if args else cls()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return self.reply


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_cert(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and localhost; return (cert, key) paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dangjian-flow test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], deadline: float, tls: bool) -> bool:
    """Wait until the port accepts (and, unless SMTPS, greets with 220); False if proc died."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as sock:
                if tls or sock.recv(3) == b"220":
                    return True
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"aiosmtpd did not listen on {HOST}:{port}")


@contextlib.contextmanager
def smtp_server(
    tmp_path: Path,
    *,
    handler: str = "aiosmtpd.handlers.Mailbox",
    handler_args: Sequence[str] | None = None,
    tls: str = "none",
    cert: tuple[Path, Path] | None = None,
) -> Iterator[tuple[str, int, Path]]:
    """Run aiosmtpd in a subprocess; yield (host, port, maildir).

    `tls`: "none"; "starttls" (offers STARTTLS and requires it before MAIL); "ssl" (SMTPS).
    `handler`/`handler_args`: the aiosmtpd handler class; the Mailbox default stores into maildir.
    """
    maildir = tmp_path / "maildir"
    args = list(handler_args) if handler_args is not None else []
    if handler == "aiosmtpd.handlers.Mailbox" and handler_args is None:
        args = [str(maildir)]
    tls_args: list[str] = []
    if tls != "none":
        cert_path, key_path = cert or make_cert(tmp_path / "tls")
        flag = "--tlscert" if tls == "starttls" else "--smtpscert"
        key_flag = "--tlskey" if tls == "starttls" else "--smtpskey"
        tls_args = [flag, str(cert_path), key_flag, str(key_path)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    log_path = tmp_path / "aiosmtpd.log"
    for _attempt in range(3):  # the free port may be taken between free_port() and bind
        port = free_port()
        cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}", "-c", handler]
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*cmd, *tls_args, *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
            )
        try:
            if _wait_for_banner(port, proc, time.monotonic() + 15.0, tls == "ssl"):
                yield HOST, port, maildir
                return
        finally:
            _stop(proc)
    raise RuntimeError(f"aiosmtpd failed to start: {log_path.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read_mail(maildir: Path) -> list[EmailMessage]:
    """Return the messages in a Maildir, oldest first, parsed with the modern e-mail policy."""
    if not maildir.exists():
        return []
    box = mailbox.Maildir(str(maildir), factory=None, create=False)
    out: list[EmailMessage] = []
    for key in sorted(box.keys()):
        parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    return out


def closed_port() -> int:
    """A port with no server: for "server down" tests."""
    return free_port()


# ---------------------------------------------------------------------------------------------
# HTTP robots

WECOM_BAD_KEY = {
    "errcode": 93000,
    "errmsg": "invalid webhook url, hint: [1732064547142832100935838], from ip: 127.0.0.1, "
    "more info at https://open.work.weixin.qq.com/devtool/query?e=93000",
}
DINGTALK_SIGN_ERRMSG = (
    "description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳必须都放在调用的网址中，"
    "请确认机器人的密钥加密和填写正确;link:请参考本接口对应文档获得具体要求，"
    "或者在https://open.dingtalk.com/document/  搜索相关文档;"
)
FEISHU_SIGN_FAIL = {
    "code": 19021,
    "data": {},
    "msg": "sign match fail or timestamp is not within one hour from current time",
}
THROTTLE_BODIES: dict[tuple[str, int], dict[str, Any]] = {
    ("wecom", 45009): {
        "errcode": 45009,
        "errmsg": "api freq out of limit, hint: [1700000000_1_0], from ip: 127.0.0.1, "
        "more info at https://open.work.weixin.qq.com/devtool/query?e=45009",
    },
    ("dingtalk", 130101): {
        "errcode": 130101,
        "errmsg": "send too fast, exceed 20 times per minute",
    },
    ("feishu", 11232): {"code": 11232, "data": {}, "msg": "frequency limited psm[lark.oapi]"},
    ("feishu", 9499): {"code": 9499, "data": {}, "msg": "too many request"},
}
DEFAULT_THROTTLE = {"wecom": 45009, "dingtalk": 130101, "feishu": 11232}
OK_BODIES: dict[str, dict[str, Any]] = {
    "wecom": {"errcode": 0, "errmsg": "ok"},
    "dingtalk": {"errcode": 0, "errmsg": "ok"},
    "feishu": {
        "StatusCode": 0,
        "StatusMessage": "success",
        "code": 0,
        "data": {},
        "msg": "success",
    },
    "webhook": {"ok": True},
}
PATHS = {
    "wecom": "/cgi-bin/webhook/send",
    "dingtalk": "/robot/send",
    "feishu": "/open-apis/bot/v2/hook/",
}


@dataclass
class Received:
    """One request as the stand-in saw it, and what it answered (status -1: client gone)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any
    at: float
    status: int = 0
    answer: Any = None


@dataclass
class _Action:
    kind: str  # "throttle" | "respond" | "sleep"
    status: int = 200
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    robot: RobotServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (killed relay, timeout) is expected here; stay quiet.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.robot._handle(self)

    def do_GET(self) -> None:
        self.server.robot._handle(self)


class RobotServer:
    """A stand-in for one robot (or webhook receiver) of `kind`: wecom, dingtalk, feishu, webhook.

    `key` is the WeCom key / DingTalk access_token / Feishu hook id the robot answers to;
    `secret` turns on signature checks (DingTalk, Feishu, webhook); `keywords` turns on the
    keyword security setting; `limit=(n, seconds)` answers the throttle code once more than n
    messages arrive within seconds (`burst` is a second such window, e.g. Feishu's 5 a second),
    and `penalty` keeps throttling that long after (DingTalk blocks 10 minutes). `clock` is the server's idea of now (seconds).
    """

    def __init__(
        self,
        kind: str,
        *,
        key: str = "robot-key",
        secret: str | None = None,
        keywords: Sequence[str] = (),
        limit: tuple[int, float] | None = None,
        burst: tuple[int, float] | None = None,
        penalty: float = 0.0,
        window: float = 3600.0,
        webhook_window: float = 300.0,
        clock: Callable[[], float] = time.time,
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        if kind not in ("wecom", "dingtalk", "feishu", "webhook"):
            raise ValueError(f"unknown stand-in kind {kind!r}")
        self.kind = kind
        self.key = key
        self.secret = secret
        self.keywords = tuple(keywords)
        self.limit = limit
        self.burst = burst
        self.penalty = penalty
        self.window = window
        self.webhook_window = webhook_window
        self.clock = clock
        self.on_request = on_request
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._script: deque[_Action] = deque()
        self._accepted: deque[float] = deque()
        self._blocked_until = 0.0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> RobotServer:
        server = _Server((HOST, 0), _Handler)
        server.robot = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RobotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "RobotServer not started"
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL a client should post to (without DingTalk's signature parameters)."""
        quoted = urllib.parse.quote(self.key, safe="")
        if self.kind == "wecom":
            return f"{self.base}{PATHS['wecom']}?key={quoted}"
        if self.kind == "dingtalk":
            return f"{self.base}{PATHS['dingtalk']}?access_token={quoted}"
        if self.kind == "feishu":
            return f"{self.base}{PATHS['feishu']}{quoted}"
        return f"{self.base}/hook"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points `robot_base(kind)` at this server."""
        return {f"DANGJIAN_{self.kind.upper()}_BASE": self.base}

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def accepted(self) -> list[Received]:
        """The requests that were answered as delivered."""
        return [r for r in self.received if r.status == 200 and r.answer == OK_BODIES[self.kind]]

    # -- scripting --------------------------------------------------------------------------

    def throttle_next(self, n: int = 1, code: int | None = None) -> None:
        """Answer the next n requests with the kind's throttle code (webhook: HTTP 429)."""
        for _ in range(n):
            if self.kind == "webhook":
                self._push(_Action("respond", 429, {"error": "slow down"}, {"Retry-After": "30"}))
            else:
                self._push(_Action("throttle", payload=code or DEFAULT_THROTTLE[self.kind]))

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next n requests with `status` and `payload` (JSON, or bytes/str as is)."""
        body = {"error": "internal error"} if payload is None else payload
        for _ in range(n):
            self._push(_Action("respond", status, body, dict(headers or {})))

    def respond_next(
        self,
        n: int = 1,
        status: int = 200,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next n requests with `status` and `payload` (JSON, or bytes/str as is)."""
        for _ in range(n):
            self._push(_Action("respond", status, payload, dict(headers or {})))

    def sleep_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """Stall the next n requests `seconds` before answering normally (client timeouts)."""
        for _ in range(n):
            self._push(_Action("sleep", seconds=seconds))

    def _push(self, action: _Action) -> None:
        with self._lock:
            self._script.append(action)

    # -- request handling -------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        query = {
            k: v[0] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()
        }
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(min(length, 4 * 1024 * 1024)) if length > 0 else b""
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Received(
            method=handler.command,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            json=parsed,
            at=time.time(),
        )
        with self._lock:
            self._received.append(rec)
            action = self._script.popleft() if self._script else None
        if self.on_request is not None:
            try:
                self.on_request(rec)
            except Exception as exc:  # a broken hook must not break the server
                print(f"RobotServer on_request hook failed: {exc!r}", file=sys.stderr)
        status, payload, headers = self._answer(rec, action)
        rec.status, rec.answer = status, payload
        raw = (
            payload
            if isinstance(payload, bytes)
            else (
                payload.encode()
                if isinstance(payload, str)
                else json.dumps(payload, ensure_ascii=False).encode()
            )
        )
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json;charset=UTF-8")
            handler.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(raw)
            handler.wfile.flush()
        except OSError:  # the client is gone (timed out or killed)
            rec.status = -1
            handler.close_connection = True

    def _answer(self, rec: Received, action: _Action | None) -> tuple[int, Any, dict[str, str]]:
        if action is not None and action.kind == "sleep":
            self._stopping.wait(action.seconds)
            action = None
        if action is not None and action.kind == "respond":
            return action.status, action.payload, action.headers
        if action is not None and action.kind == "throttle":
            return 200, THROTTLE_BODIES[(self.kind, int(action.payload))], {}
        if rec.method != "POST":
            return 405, {"error": "method not allowed"}, {}
        verify = {
            "wecom": self._wecom,
            "dingtalk": self._dingtalk,
            "feishu": self._feishu,
            "webhook": self._webhook,
        }[self.kind]
        refusal = verify(rec)
        if refusal is not None:
            return refusal
        if self._over_limit():
            return self._throttle_answer()
        return 200, OK_BODIES[self.kind], {}

    def _over_limit(self) -> bool:
        windows = [w for w in (self.limit, self.burst) if w is not None]
        if not windows:
            return False
        now = self.clock()
        with self._lock:
            if now < self._blocked_until:
                return True
            longest = max(seconds for _n, seconds in windows)
            while self._accepted and self._accepted[0] <= now - longest:
                self._accepted.popleft()
            for count, seconds in windows:
                if sum(1 for t in self._accepted if t > now - seconds) >= count:
                    self._blocked_until = now + self.penalty
                    return True
            self._accepted.append(now)
            return False

    def _throttle_answer(self) -> tuple[int, Any, dict[str, str]]:
        if self.kind == "webhook":
            return 429, {"error": "slow down"}, {"Retry-After": "30"}
        return 200, THROTTLE_BODIES[(self.kind, DEFAULT_THROTTLE[self.kind])], {}

    def _keywords_missing(self, rec: Received) -> bool:
        if not self.keywords:
            return False
        text = rec.body.decode("utf-8", errors="replace")
        return not any(word in text for word in self.keywords)

    # -- per-service checks: None to accept, else (status, payload, headers) -----------------

    def _wecom(self, rec: Received) -> tuple[int, Any, dict[str, str]] | None:
        if rec.path != PATHS["wecom"] or rec.query.get("key") != self.key:
            return 200, WECOM_BAD_KEY, {}
        data = rec.json if isinstance(rec.json, dict) else {}
        msgtype = data.get("msgtype")
        if msgtype not in ("text", "markdown"):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}, {}
        content = str((data.get(msgtype) or {}).get("content") or "")
        limit = 4096 if msgtype == "markdown" else 2048
        if not content:
            return 200, {"errcode": 44004, "errmsg": "empty content"}, {}
        if len(content.encode("utf-8")) > limit:
            return (
                200,
                {
                    "errcode": 40058,
                    "errmsg": f"{msgtype}.content exceed max length {limit}. invalid Request Parameter",
                },
                {},
            )
        return None

    def _dingtalk(self, rec: Received) -> tuple[int, Any, dict[str, str]] | None:
        if rec.path != PATHS["dingtalk"] or rec.query.get("access_token") != self.key:
            return 200, {"errcode": 300005, "errmsg": "token is not exist"}, {}
        if not rec.headers.get("content-type", "").startswith("application/json"):
            return 200, {"errcode": 43004, "errmsg": "无效的HTTP HEADER Content-Type"}, {}
        if self.secret:
            ts, sign = rec.query.get("timestamp", ""), rec.query.get("sign", "")
            if not ts.isdigit() or not sign:
                return 200, {"errcode": 310000, "errmsg": DINGTALK_SIGN_ERRMSG}, {}
            if abs(self.clock() * 1000 - int(ts)) > self.window * 1000:
                return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}, {}
            digest = hmac.new(
                self.secret.encode(), f"{ts}\n{self.secret}".encode(), hashlib.sha256
            ).digest()
            # parse_qs has already undone the URL encoding: compare the base64 text.
            if not hmac.compare_digest(base64.b64encode(digest).decode(), sign):
                return 200, {"errcode": 310000, "errmsg": DINGTALK_SIGN_ERRMSG}, {}
        if self._keywords_missing(rec):
            return 200, {"errcode": 310000, "errmsg": "keywords not in content"}, {}
        if len(rec.body) > 20000:
            return (
                200,
                {
                    "errcode": 300001,
                    "errmsg": "错误描述: body 大小不合法;解决方案:请保持大小在 20000bytes 以内",
                },
                {},
            )
        data = rec.json if isinstance(rec.json, dict) else {}
        markdown = data.get("markdown") or {}
        if (
            data.get("msgtype") != "markdown"
            or not markdown.get("title")
            or not markdown.get("text")
        ):
            return 200, {"errcode": 300001, "errmsg": "param error"}, {}
        return None

    def _feishu(self, rec: Received) -> tuple[int, Any, dict[str, str]] | None:
        hook = rec.path.removeprefix(PATHS["feishu"])
        if not rec.path.startswith(PATHS["feishu"]) or hook != self.key:
            return (
                200,
                {
                    "code": 19001,
                    "data": {},
                    "msg": "param invalid: incoming webhook access token invalid",
                },
                {},
            )
        if len(rec.body) > 20 * 1024:
            return 400, {"code": 9499, "data": {}, "msg": "Bad Request"}, {}
        data = rec.json if isinstance(rec.json, dict) else None
        if data is None:
            return 400, {"code": 9499, "data": {}, "msg": "Bad Request"}, {}
        if self.secret:
            ts, sign = str(data.get("timestamp", "")), str(data.get("sign", ""))
            if not ts.isdigit() or abs(self.clock() - int(ts)) > self.window:
                return 200, FEISHU_SIGN_FAIL, {}
            key = f"{ts}\n{self.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if not hmac.compare_digest(expected, sign):
                return 200, FEISHU_SIGN_FAIL, {}
        if self._keywords_missing(rec):
            return 200, {"code": 19024, "data": {}, "msg": "Key Words Not Found"}, {}
        if data.get("msg_type") not in ("text", "post", "interactive", "share_chat", "image"):
            return 200, {"code": 19002, "data": {}, "msg": "params error, msg_type need"}, {}
        return None

    def _webhook(self, rec: Received) -> tuple[int, Any, dict[str, str]] | None:
        if not self.secret:
            return None
        ts = rec.headers.get("x-dangjian-timestamp", "")
        given = rec.headers.get("x-dangjian-signature", "")
        if not ts.isdigit() or abs(self.clock() - int(ts)) > self.webhook_window:
            return 401, {"error": "stale or missing timestamp"}, {}
        digest = hmac.new(self.secret.encode(), ts.encode() + b"." + rec.body, hashlib.sha256)
        if not hmac.compare_digest("sha256=" + digest.hexdigest(), given):
            return 401, {"error": "bad signature"}, {}
        return None
