"""Email notification of an alert over SMTP. The message carries subject ids only, never names."""

from email.message import EmailMessage

import aiosmtplib

from shared.settings import Settings


def compose_email(
    alert: dict, recipient: str, notification_id: str, sender: str, state: str = "raised"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    escalated = "ESCALATED, NOT ACKNOWLEDGED: " if state.startswith("escalated") else ""
    message["Subject"] = f"[safetymon {alert['severity'].upper()}] {escalated}{alert['title']}"
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
