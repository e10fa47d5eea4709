"""E-mail delivery: one attempt through the operator's SMTP server, as a `channels.Result`.

The SMTP server is the operator's setting (environment), not a URL a user typed, so it is reached
directly rather than through the guarded outbound client (`states/outbound.py`).
"""

from __future__ import annotations

import email.utils
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

from notifications.channels import Message, Result, _ok, _permanent, _transient

TLS_MODES = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_SENDER = "dangjian-flow <noreply@localhost>"


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server; `from_env` returns None when e-mail is not configured."""

    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    sender: str
    tls: str  # "none" | "starttls" | "ssl"
    timeout: float = 10.0
    ca_file: str | None = None  # PEM bundle to trust instead of the system's (private CA)

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"SMTP TLS mode must be one of none, starttls, ssl; got {self.tls!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """Read SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_FROM, SMTP_TLS, SMTP_CA_FILE."""
        env = os.environ if env is None else env
        host = env.get("SMTP_HOST", "").strip()
        if not host:
            return None
        tls_raw = env.get("SMTP_TLS", "").strip()
        tls = tls_raw.lower() or "none"
        if tls not in TLS_MODES:
            raise ValueError(f"SMTP_TLS must be one of none, starttls, ssl; got {tls_raw!r}")
        port_raw = env.get("SMTP_PORT", "").strip()
        if port_raw:
            try:
                port = int(port_raw)
            except ValueError:
                raise ValueError(f"SMTP_PORT must be a port number; got {port_raw!r}") from None
            if not 0 < port < 65536:
                raise ValueError(f"SMTP_PORT must be between 1 and 65535; got {port}")
        else:
            port = DEFAULT_PORTS[tls]
        return cls(
            host=host,
            port=port,
            user=env.get("SMTP_USER", "").strip() or None,
            password=env.get("SMTP_PASSWORD") or None,
            sender=env.get("SMTP_FROM", "").strip() or DEFAULT_SENDER,
            tls=tls,
            ca_file=env.get("SMTP_CA_FILE", "").strip() or None,
        )


def build_email(msg: Message, to: str, settings: SmtpSettings) -> EmailMessage:
    """Return the MIME message for `msg` (raises ValueError for an unusable header value)."""
    mail = EmailMessage()
    mail["Subject"] = " ".join(msg.title.split())
    mail["From"] = settings.sender
    mail["To"] = to
    mail["Date"] = email.utils.formatdate(localtime=True)
    mail["Message-ID"] = f"<{msg.id}@dangjian-flow>"
    mail["X-Dangjian-Message-Id"] = msg.id
    mail["X-Dangjian-Event"] = msg.event_kind
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    # base64 keeps the message 7-bit: no reliance on the server's 8BITMIME.
    mail.set_content(msg.text, charset="utf-8", cte="base64")
    if msg.html:
        mail.add_alternative(msg.html, subtype="html", charset="utf-8", cte="base64")
    return mail


def _smtp_reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{code} {' '.join(text.split())}"[:300]


def _smtp_code_result(code: int, text: bytes | str, stage: str) -> Result:
    detail = f"smtp {stage}: {_smtp_reply(code, text)}"
    if 500 <= code < 600:
        return _permanent(detail)
    return _transient(detail)


def send_email(msg: Message, to: str, settings: SmtpSettings) -> Result:
    """Send `msg` to the address `to` through the SMTP server of `settings`."""
    envelope_to = email.utils.parseaddr(to)[1]
    envelope_from = email.utils.parseaddr(settings.sender)[1]
    if "@" not in envelope_to:
        return _permanent(f"invalid recipient address {to!r}")
    if not envelope_from:
        return _permanent(f"invalid sender address {settings.sender!r} (SMTP_FROM)")
    try:
        mail = build_email(msg, to, settings)
    except (ValueError, TypeError) as exc:
        return _permanent(f"cannot build the e-mail: {exc}")
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        return _permanent(f"smtp: cannot load the CA file {settings.ca_file!r}: {exc}")
    client: smtplib.SMTP | None = None
    stage = "connect"
    try:
        if settings.tls == "ssl":
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        stage = "EHLO"
        client.ehlo()
        if settings.tls == "starttls":
            if not client.has_extn("starttls"):
                return _permanent(
                    f"smtp server {settings.host}:{settings.port} does not offer STARTTLS "
                    "(SMTP_TLS=starttls); not sending in clear text"
                )
            stage = "STARTTLS"
            client.starttls(context=context)
            client.ehlo()
        if settings.user:
            stage = "AUTH"
            client.login(settings.user, settings.password or "")
        stage = "send"
        refused = client.send_message(mail, from_addr=envelope_from, to_addrs=[envelope_to])
        if refused:  # only possible with several recipients; kept for completeness
            code, text = next(iter(refused.values()))
            return _smtp_code_result(code, text, "RCPT")
        return _ok(f"smtp accepted for {envelope_to}")
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()), (450, b"recipient refused"))
        return _smtp_code_result(code, text, "RCPT")
    except smtplib.SMTPResponseException as exc:  # sender refused, DATA error, auth, connect
        return _smtp_code_result(exc.smtp_code, exc.smtp_error, stage)
    except smtplib.SMTPNotSupportedError as exc:  # e.g. AUTH or SMTPUTF8 not offered
        return _permanent(f"smtp {stage}: {exc}")
    except smtplib.SMTPServerDisconnected as exc:
        return _transient(f"smtp {stage}: server disconnected: {exc}")
    except smtplib.SMTPException as exc:
        return _transient(f"smtp {stage}: {exc}")
    except ssl.SSLCertVerificationError as exc:
        return _permanent(f"smtp {stage}: TLS certificate not trusted: {exc.verify_message}")
    except ssl.SSLError as exc:
        return _permanent(
            f"smtp {stage}: TLS handshake failed ({exc.reason or exc}); check SMTP_TLS and SMTP_PORT"
        )
    except TimeoutError:
        return _transient(f"smtp {stage}: timed out after {settings.timeout:g} s")
    except OSError as exc:  # refused, unreachable, reset, DNS failure
        return _transient(f"smtp {stage}: {exc.strerror or exc}")
    finally:
        if client is not None:
            _smtp_quit(client)


def _smtp_quit(client: smtplib.SMTP) -> None:
    # Not `with client:`: its QUIT raises on a reply other than 221, after the mail was accepted.
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()
