"""Who may submit to ingest over HTTP, and for which sites: one bearer token per sending system.

- The senders come from a YAML file (`INGEST_SENDERS_FILE`, format: deploy/senders.example.yaml),
  validated on load; a bad file stops the service with the file, the entry and the reason.
- A token is kept as its sha256 hex, as the alert service keeps API tokens
  (services/alerts/auth.py): tokens are long random strings, so a fast hash suffices and a check
  stays cheap.
- A sender's `sites` bound what it may submit: an event (after the adapters have mapped patients
  to subjects and sites) for any other site is refused, 403, and nothing of the request is
  published. `["*"]` is every site (an EDC that serves the whole study).
- HL7 v2 over MLLP carries no HTTP header, so no token: it is authenticated by the network
  (mutual TLS terminated in front of it, a VPN, a NetworkPolicy admitting only the sites' lab
  systems) and bounded by the interop file's facility -> site map: a message is only taken for
  the site whose sending facility (MSH-4) it names.

Operators make a token with

    .venv/bin/python -m services.alerts.auth new-token   # prints a token and its sha256
"""

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.alerts.auth import token_hash
from services.common import entry_files
from shared.metrics import INGEST_REJECTS

SENDERS_FILE_ENV = "INGEST_SENDERS_FILE"
EVERY_SITE = "*"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Sender:
    """An authenticated sending system and the sites it may submit for."""

    system: str
    sites: frozenset[str]

    def may_submit_for(self, site_id: str) -> bool:
        return EVERY_SITE in self.sites or site_id in self.sites

    def refusal(self, site_id: str) -> str:
        """Why this sender may not submit an event of `site_id`."""
        return (
            f"sender '{self.system}' may not submit for site {site_id} "
            f"(its sites: {', '.join(sorted(self.sites))})"
        )


class SenderFileError(ValueError):
    """A senders file that cannot be used; the message names the file, the entry and why."""


class _Entry(BaseModel):
    """One sender of the file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    sites: list[str] = Field(min_length=1)
    # One hash, or several while a token is being replaced (old and new both valid).
    token_sha256: list[str] = Field(min_length=1)

    @field_validator("sites")
    @classmethod
    def _sites(cls, sites: list[str]) -> list[str]:
        sites = [site.strip() for site in sites]
        if not all(sites):
            raise ValueError("a site id is empty")
        if EVERY_SITE in sites and len(sites) > 1:
            raise ValueError(f"'{EVERY_SITE}' (every site) stands alone")
        if len(set(sites)) != len(sites):
            raise ValueError("a site is listed twice")
        return sites

    @field_validator("token_sha256", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, hashes: list[str]) -> list[str]:
        hashes = [digest.strip().lower() for digest in hashes]
        if not all(_SHA256_HEX.fullmatch(digest) for digest in hashes):
            raise ValueError(
                "must be the sha256 hex (64 hex characters) of the token, never the token "
                "itself; make one with `python -m services.alerts.auth new-token`"
            )
        return hashes


class SenderDirectory:
    """The sending systems, by the hash of their token, from a YAML file:

    senders:
      - system: lis-gz01          # the sending system (the events' source when unnamed)
        sites: [GZ01]             # the sites it sends for; ["*"] for every site
        token_sha256: <sha256 hex of its bearer token>
    """

    def __init__(self, senders: Iterable[tuple[str, Sender]], origin: str = "<senders>") -> None:
        self.origin = origin
        self._by_digest = list(senders)

    @classmethod
    def load(cls, path: str | Path) -> "SenderDirectory":
        return cls.parse(*entry_files.read_text(path, SenderFileError))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SenderDirectory":
        path = entry_files.path_from_env(
            environ, SENDERS_FILE_ENV, "the senders file", SenderFileError
        )
        return cls.load(path)

    @classmethod
    def parse(cls, text: str, origin: str = "<senders>") -> "SenderDirectory":
        what = "a list of sending systems"
        entries = entry_files.entries(text, origin, "senders", what, SenderFileError)
        parsed = [_entry(entry, f"{origin}: sender #{n}") for n, entry in enumerate(entries, 1)]
        return cls(_unique(parsed, origin), origin)

    @property
    def sites(self) -> frozenset[str]:
        """Every site some sender names (`*` included when one may send for all)."""
        return frozenset(site for _, sender in self._by_digest for site in sender.sites)

    def senders(self) -> list[Sender]:
        return list(dict.fromkeys(sender for _, sender in self._by_digest))

    def authenticate(self, token: str) -> Sender | None:
        """The sender whose token this is, or None. Every stored hash is compared (with
        `hmac.compare_digest`), whichever matches, so the time does not tell which matched."""
        if not isinstance(token, str) or not token:
            return None
        digest = token_hash(token)
        found: Sender | None = None
        for stored, sender in self._by_digest:
            if hmac.compare_digest(stored, digest):
                found = sender
        return found


def _entry(entry: object, where: str) -> _Entry:
    if isinstance(entry, dict) and isinstance(entry.get("system"), str):
        where += f" ({entry['system']})"
    try:
        return _Entry.model_validate(entry)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        reason = problem["msg"].removeprefix("Value error, ")
        raise SenderFileError(f"{where}: {field + ': ' if field else ''}{reason}") from None


def _unique(entries: list[_Entry], origin: str) -> list[tuple[str, Sender]]:
    """(token digest, sender) pairs; a system named twice, or a token of two systems, is
    refused: each token must name one sender."""
    owner: dict[str, str] = {}
    systems: set[str] = set()
    pairs: list[tuple[str, Sender]] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{origin}: sender #{number} ({entry.system})"
        if entry.system in systems:
            raise SenderFileError(f"{where}: system '{entry.system}' is listed twice")
        systems.add(entry.system)
        sender = Sender(entry.system, frozenset(entry.sites))
        for digest in entry.token_sha256:
            if digest in owner:
                raise SenderFileError(
                    f"{where}: token hash {digest[:12]}... is also the token of "
                    f"'{owner[digest]}': a token must name one sender"
                )
            owner[digest] = entry.system
            pairs.append((digest, sender))
    return pairs


# -- the FastAPI dependency -------------------------------------------------------------------

_bearer_scheme = HTTPBearer(
    auto_error=False, description="the sending system's token: Authorization: Bearer ..."
)


def _unauthorized(detail: str, error: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": f'Bearer error="{error}"'})


def sender_dependency(directory: SenderDirectory) -> Callable[..., Awaitable[Sender]]:
    """A dependency giving the `Sender` of `Authorization: Bearer <token>`; 401 with
    `WWW-Authenticate: Bearer` when the header is missing, malformed or names no sender."""

    async def current_sender(
        request: Request, _token: Annotated[object, Depends(_bearer_scheme)]
    ) -> Sender:
        # The route's template, not the path: an unauthenticated caller must not be able to
        # mint metric series (/v1/sdtm/<anything>).
        endpoint = getattr(request.scope.get("route"), "path", "other")
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            INGEST_REJECTS.labels(endpoint, "unauthenticated").inc()
            raise _unauthorized(
                "send the sending system's token: Authorization: Bearer <token>", "invalid_request"
            )
        sender = directory.authenticate(token.strip())
        if sender is None:
            INGEST_REJECTS.labels(endpoint, "unauthenticated").inc()
            raise _unauthorized("invalid or revoked token", "invalid_token")
        return sender

    return current_sender
