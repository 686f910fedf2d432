"""Email notification of an alert over SMTP. The message carries subject ids only, never names."""

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


async def send_email(settings: Settings, message: EmailMessage) -> None:
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_s,
    )


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
