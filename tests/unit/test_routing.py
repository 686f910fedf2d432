"""Routing of alerts to recipients and channels, from the routing file."""

from pathlib import Path

import pytest

from services.alerts.routing import Recipient, RoutingError, load_routing
from shared.settings import Settings

ROUTES = """
routes:
  - recipients:
      - {channel: email, to: desk@example.org}
  - match: {severity: [critical], site: [GZ01]}
    recipients:
      - {channel: email, to: gz01-pi@example.org}
      - {channel: slack, to: "https://hooks.example.org/desk"}
  - match: {rule: [AE-SAE]}
    recipients:
      - {channel: webhook, to: "https://pv.example.org/intake"}
      - {channel: email, to: desk@example.org}
escalation:
  - {channel: email, to: medical-monitor@example.org}
"""


def routing_from(tmp_path: Path, text: str):
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return load_routing(Settings(ROUTING_FILE=str(path)))


def test_every_matching_route_adds_its_recipients_once(tmp_path: Path) -> None:
    routing = routing_from(tmp_path, ROUTES)
    assert routing.recipients_for("critical", "GZ01", "AE-SAE") == [
        Recipient(channel="email", to="desk@example.org"),
        Recipient(channel="email", to="gz01-pi@example.org"),
        Recipient(channel="slack", to="https://hooks.example.org/desk"),
        Recipient(channel="webhook", to="https://pv.example.org/intake"),
    ]
    assert routing.recipients_for("high", "SH02", "D1-ANC-HOLD") == [
        Recipient(channel="email", to="desk@example.org")
    ]
    assert routing.escalation == (Recipient(channel="email", to="medical-monitor@example.org"),)


def test_without_a_file_the_desk_addresses_are_the_route() -> None:
    routing = load_routing(
        Settings(ALERT_EMAIL_RECIPIENTS="a@example.org", ESCALATION_RECIPIENTS="b@example.org")
    )
    assert routing.recipients_for("low", "X", "Y") == [
        Recipient(channel="email", to="a@example.org")
    ]
    assert routing.escalation == (Recipient(channel="email", to="b@example.org"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: []", "routes: Tuple should have at least 1 item"),
        ("routes:\n  - recipients: [{channel: fax, to: '0123'}]", "routes.0.recipients.0.channel"),
        (
            "routes:\n  - recipients: [{channel: email, to: not-an-address}]",
            "'not-an-address' is not an email address",
        ),
        (
            "routes:\n  - recipients: [{channel: webhook, to: 'ftp://x.org'}]",
            "'ftp://x.org' is not an http(s) URL",
        ),
        (
            "routes:\n  - match: {severity: [urgent]}\n"
            "    recipients: [{channel: email, to: a@b.c}]",
            "routes.0.match.severity.0",
        ),
        ("routes: [", "not valid YAML"),
    ],
)
def test_a_broken_routing_file_is_refused_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(RoutingError, match=r"routing\.yaml") as error:
        routing_from(tmp_path, text)
    assert message in str(error.value)


def test_the_example_routing_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "routing.example.yaml"
    routing = load_routing(Settings(ROUTING_FILE=str(example)))
    channels = {r.channel for r in routing.recipients_for("critical", "GZ01", "AE-SAE")}
    assert channels == {"email", "slack", "webhook"}
