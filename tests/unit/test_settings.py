"""The one settings object, read from the environment."""

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_recipients_are_a_comma_separated_list() -> None:
    settings = Settings(ALERT_EMAIL_RECIPIENTS="desk@example.org, physician@example.org")
    assert settings.alert_email_recipients == ["desk@example.org", "physician@example.org"]


def test_an_smtp_login_without_starttls_is_refused() -> None:
    with pytest.raises(ValidationError, match="without SMTP_STARTTLS"):
        Settings(SMTP_USERNAME="desk", SMTP_PASSWORD="secret")
    assert Settings(SMTP_USERNAME="desk", SMTP_PASSWORD="secret", SMTP_STARTTLS=True).smtp_starttls


def test_topic_names_and_groups_carry_the_namespace() -> None:
    settings = Settings(TOPIC_NAMESPACE="test-1.")
    assert settings.topic("safety.alerts.v1") == "test-1.safety.alerts.v1"
    assert settings.consumer_group("grader") == "test-1.safetymon-grader"
