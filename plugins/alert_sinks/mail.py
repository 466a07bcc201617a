"""The email sink: one message per alert over SMTP, with aiosmtplib (asyncio-native).

TLS is ``"starttls"`` (port 587 by default), ``"tls"`` (implicit TLS, port 465) or
``"none"`` (port 25, for a relay on the same machine; a password is refused there,
since it would cross the network in clear). Certificates are always verified, against
``ca_file`` when given. The alert's title goes into the Subject on one line, so alert
text cannot add headers.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import ClassVar

import aiosmtplib

from corral.alerts import Alert, Settings, Sink
from corral.alerts.sinks.base import certificate_rejected
from corral.plugins.alert_sinks._text import headline, plain_text

_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _address(settings: Settings, key: str, value: str) -> str:
    if any(c in value for c in "\r\n"):
        settings.fail(key, "must be on one line")
        return value
    _, address = parseaddr(value)
    if "@" not in address:
        settings.fail(key, f'{value!r} is not an email address; write e.g. {key} = "corral@example.com"')
    return value


class EmailSink(Sink):
    """Mails each alert to ``to`` from ``from``.

    Config: ``host`` (required), ``port``, ``tls`` (``"starttls"``, ``"tls"``, ``"none"``),
    ``username`` and ``password`` (both or neither), ``from`` and ``to`` (required; ``to``
    is an address or a list), ``subject_prefix`` (default ``"[corral]"``), ``ca_file``
    (PEM CA bundle to trust instead of the default roots), ``timeout`` (default 30 s).
    """

    kind: ClassVar[str] = "email"
    default_timeout: ClassVar[float] = 30.0

    def _configure(self, settings: Settings) -> None:
        self.host = settings.required_text("host", '"smtp.example.com"')
        self.tls = settings.choice("tls", ("starttls", "tls", "none"), "starttls")
        self.port = settings.port("port", _PORTS[self.tls])
        self.username = settings.optional_text("username")
        self.password = settings.optional_secret("password", "the SMTP password")
        if (self.username is None) != (self.password is None):
            settings.fail("password" if self.username else "username", "username and password go together; give both")
        if self.password is not None and self.tls == "none":
            settings.fail("tls", '"none" would send the password unencrypted; use "starttls" or "tls"')
        self.sender = _address(settings, "from", settings.required_text("from", '"corral@example.com"'))
        self.recipients = tuple(_address(settings, "to", to) for to in settings.text_list("to", '["ops@example.com"]'))
        self.subject_prefix = settings.text("subject_prefix", "[corral]")
        if not self.subject_prefix.isprintable():
            settings.fail("subject_prefix", "must be one line of printable text")
        self.tls_context: ssl.SSLContext = settings.tls_context("ca_file")

    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def message(self, alert: Alert) -> EmailMessage:
        """The message sent for ``alert``."""
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix} {headline(alert)}".strip()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(alert.created, usegmt=True)
        msg["Message-ID"] = make_msgid("corral", domain=parseaddr(self.sender)[1].rpartition("@")[2] or None)
        msg["X-Corral-Alert-Id"] = alert.id
        msg["X-Corral-Severity"] = alert.severity.value
        msg.set_content(plain_text(alert))
        return msg

    async def _send(self, alert: Alert) -> None:
        failure = None
        try:
            await aiosmtplib.send(
                self.message(alert),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password.reveal() if self.password else None,
                use_tls=self.tls == "tls",
                start_tls=self.tls == "starttls",
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            failure = self._error(
                f"the server refused the login for {self.username!r} ({exc.code} {exc.message}); check the"
                " username and password",
                retryable=False,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            failure = self._error(
                f"the server refused the recipients ({refusals})",
                retryable=all(400 <= r.code < 500 for r in exc.recipients),
            )
        except aiosmtplib.SMTPResponseException as exc:
            failure = self._error(f"the server answered {exc.code} {exc.message}", retryable=400 <= exc.code < 500)
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, TimeoutError, OSError) as exc:
            if certificate_rejected(exc):
                failure = self._error(
                    f"the server's TLS certificate was not trusted ({exc}); set ca_file to the CA that signed it",
                    retryable=False,
                )
            else:
                failure = self._error(f"could not deliver: {type(exc).__name__}: {exc}", retryable=True)
        except aiosmtplib.SMTPException as exc:  # the server cannot do what the config asks (STARTTLS, AUTH, ...)
            failure = self._error(f"{exc}; check tls and port for this server", retryable=False)
        if failure is not None:
            raise failure
