"""Email notification of an alert over SMTP. The message carries subject ids only, never names."""

import contextlib
import time
from email.message import EmailMessage

import aiosmtplib
import httpx

from shared.settings import Settings


def compose_email(
    alert: dict, recipient: str, notification_id: str, sender: str, state: str = "raised"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = (
        f"[safetymon {alert['severity'].upper()}] {_news(alert, state)}{alert['title']}"
    )
    # A fixed Message-ID per notification lets mail systems drop a resend after a crash.
    message["Message-ID"] = f"<{notification_id}@safetymon>"
    message["X-Safetymon-Alert-Id"] = str(alert["alert_id"])
    due = (
        f"\nReporting deadline: {alert['due_at']:%Y-%m-%d %H:%M %Z}" if alert.get("due_at") else ""
    )
    message.set_content(
        f"{alert['title']}\n\n{alert['detail']}\n\n"
        f"Study {alert['study_id']}, site {alert['site_id']}, subject {alert['subject_id']}\n"
        f"Rule {alert['rule_id']}, severity {alert['severity']}{due}\n"
        f"Alert id {alert['alert_id']}: acknowledge it on the safety desk.\n"
    )
    return message


# A connection idle for longer is closed rather than reused: servers drop idle clients after a
# few minutes (RFC 5321 suggests 5), and one dropped would cost a failed attempt first.
SMTP_IDLE_S = 30.0
SMTP_KEEP = 4  # idle connections kept between bursts (deliveries of one alert run concurrently)


class SmtpSender:
    """Sends emails over SMTP connections kept open between messages.

    A connection per email (aiosmtplib.send) costs a TCP handshake, the server's greeting, EHLO
    (with STARTTLS and login where configured) and QUIT around the three commands that carry
    the message: most of an email's time, and more so on a busy host, where every round trip
    waits to be scheduled. Each email takes an idle connection or opens one; any failure
    closes the connection it used. A kept connection the server closed meanwhile is seen closed
    and skipped; one found disconnected while sending gets the email again on another (it keeps
    its Message-ID, so a mail system can drop the copy, as after any resend)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # connection, idle since

    async def send(self, message: EmailMessage) -> None:
        while self._idle:
            client, since = self._idle.pop()
            if time.monotonic() - since > SMTP_IDLE_S or not client.is_connected:
                client.close()
                continue
            try:
                await self._send_on(client, message)
                return
            except aiosmtplib.SMTPServerDisconnected:
                continue  # dropped while idle: try the next kept one, else a new connection
        client = self._connection()
        await client.connect()
        await self._send_on(client, message)

    async def _send_on(self, client: aiosmtplib.SMTP, message: EmailMessage) -> None:
        try:
            await client.send_message(message)
        except BaseException:
            client.close()  # its state (mid-transaction, half-closed) is unknown
            raise
        if len(self._idle) < SMTP_KEEP:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    def _connection(self) -> aiosmtplib.SMTP:
        settings = self._settings
        password = settings.smtp_password
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_s,
        )

    async def close(self) -> None:
        """Say goodbye on every kept connection (at shutdown)."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(Exception):
                await client.quit()
            client.close()


def _news(alert: dict, state: str) -> str:
    """What changed, at the head of the message: nothing for a new alert."""
    if state.startswith("escalated"):
        return "ESCALATED, NOT ACKNOWLEDGED: "
    if state == "acknowledged":
        return f"ACKNOWLEDGED by {alert['acknowledged_by']}: "
    if state == "resolved":
        return f"RESOLVED by {alert['resolved_by']}: "
    return ""


def webhook_payload(alert: dict, state: str, slack: bool) -> dict:
    """The JSON a webhook receives: the alert's fields, or for Slack a `text` message."""
    if slack:
        return {
            "text": f"[{alert['severity'].upper()}] {_news(alert, state)}{alert['title']} "
            f"(subject {alert['subject_id']}, site {alert['site_id']}, rule {alert['rule_id']})"
        }
    fields = (
        "alert_id",
        "study_id",
        "site_id",
        "subject_id",
        "rule_id",
        "severity",
        "status",
        "title",
        "detail",
        "raised_at",
        "due_at",
    )
    return {"event": state} | {
        key: str(alert[key]) if alert[key] is not None else None for key in fields
    }


async def send_webhook(settings: Settings, url: str, payload: dict, notification_id: str) -> None:
    """POST the payload; anything but a 2xx answer is a failure to try again later."""
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client:
        response = await client.post(
            url, json=payload, headers={"Idempotency-Key": notification_id}
        )
    response.raise_for_status()
