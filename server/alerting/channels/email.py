"""E-mail over SMTP (stdlib smtplib, run in a worker thread off the event loop)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from server.alerting.channels.base import DeliveryError, Target
from server.alerting.message import Notice, plain_text, title

TIMEOUT_SECONDS = 20.0


def message(target: Target, n: Notice) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = title(n)
    msg["From"] = str(target.get("from") or f"storesafe@{target['host']}")
    msg["To"] = str(target["to"])
    msg.set_content(plain_text(n))
    return msg


class EmailChannel:
    name = "email"

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self._timeout = timeout

    async def send(self, target: Target, notice: Notice) -> None:
        await asyncio.to_thread(self._send, target, message(target, notice))

    def _send(self, target: Target, msg: EmailMessage) -> None:
        host, port = str(target["host"]), int(target["port"])
        security = str(target.get("security", "starttls"))
        where = f"{host}:{port}"
        try:
            smtp: smtplib.SMTP
            if security == "tls":
                smtp = smtplib.SMTP_SSL(
                    host, port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(host, port, timeout=self._timeout)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if target.get("user"):
                    smtp.login(str(target["user"]), str(target.get("password", "")))
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise DeliveryError(
                f"{where} refused the recipients (SMTP {', '.join(map(str, codes))})",
                permanent=all(c >= 500 for c in codes),
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where} refused the login (SMTP {exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raw = exc.smtp_error
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            raise DeliveryError(
                f"{where} answered SMTP {exc.smtp_code} {' '.join(text.split())[:120]}".rstrip(),
                permanent=exc.smtp_code >= 500,
            ) from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{where} closed the connection mid-message") from None
        except (smtplib.SMTPException, ssl.SSLError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}") from None
        except TimeoutError:
            raise DeliveryError(f"{where} did not answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"cannot connect to {where}: {exc.strerror or exc}") from None
