"""Who hears of an alert, and how: routes from a configuration file (ROUTING_FILE).

Each route matches alerts by severity, site and rule (an absent key matches all) and names
recipients on a channel: `email` (an address), `webhook` (a URL; JSON body) or `slack` (a URL;
Slack-compatible body). An alert goes to every recipient of every matching route, once.
`escalation` lists who hears of an alert nobody acknowledged in time. Without a file, the
desk addresses in ALERT_EMAIL_RECIPIENTS and ESCALATION_RECIPIENTS are the routes.
"""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.settings import Settings


class RoutingError(ValueError):
    """A routing file that cannot be used; the message names the file, the field and why."""


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["email", "webhook", "slack"]
    to: str = Field(min_length=3, max_length=500)

    @field_validator("to")
    @classmethod
    def _address_fits_channel(cls, to: str, info) -> str:
        channel = info.data.get("channel")
        if channel == "email" and "@" not in to:
            raise ValueError(f"'{to}' is not an email address")
        if channel in ("webhook", "slack") and not to.startswith(("http://", "https://")):
            raise ValueError(f"'{to}' is not an http(s) URL")
        return to


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: tuple[Literal["critical", "high", "medium", "low", "info"], ...] | None = None
    site: tuple[str, ...] | None = None
    rule: tuple[str, ...] | None = None

    def matches(self, severity: str, site_id: str, rule_id: str) -> bool:
        return (
            (self.severity is None or severity in self.severity)
            and (self.site is None or site_id in self.site)
            and (self.rule is None or rule_id in self.rule)
        )


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Match = Match()
    recipients: tuple[Recipient, ...] = Field(min_length=1)


class Routing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = Field(min_length=1)
    escalation: tuple[Recipient, ...] = ()

    def recipients_for(self, severity: str, site_id: str, rule_id: str) -> list[Recipient]:
        found: dict[Recipient, None] = {}
        for route in self.routes:
            if route.match.matches(severity, site_id, rule_id):
                found.update(dict.fromkeys(route.recipients))
        return list(found)


def load_routing(settings: Settings) -> Routing:
    if settings.routing_file is None:
        return Routing(
            routes=(
                Route(
                    recipients=tuple(
                        Recipient(channel="email", to=a) for a in settings.alert_email_recipients
                    )
                ),
            ),
            escalation=tuple(
                Recipient(channel="email", to=a) for a in settings.escalation_recipients
            ),
        )
    path = Path(settings.routing_file)
    try:
        return Routing.model_validate(yaml.safe_load(path.read_text()))
    except OSError as error:
        raise RoutingError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RoutingError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'routing'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise RoutingError(f"{path}: {problems}") from None
