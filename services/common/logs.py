"""Structured logs: one JSON object per line, with the service and the correlation id of the
work in hand, so one lab result can be followed from ingest through the grader to its alert.

The correlation id comes from the request (X-Correlation-ID, else a new one) at ingest, travels
in every event's envelope (derived events keep their cause's), and is set for the duration of
each consumed message. Log lines never carry payloads: subject ids at most, never names.
"""

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from shared.events import Envelope

CORRELATION_HEADER = "X-Correlation-ID"
_context: ContextVar[Mapping[str, str]] = ContextVar(
    "safetymon_log_context", default=MappingProxyType({})
)
# Record attributes that are not ours to print (uvicorn adds an ANSI-coloured copy of lines).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def current_context() -> dict[str, str]:
    return dict(_context.get())


@contextmanager
def log_context(**values: str | uuid.UUID | None) -> Iterator[None]:
    """Add `values` to every log line written inside the block (this task only)."""
    merged = {**_context.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


@contextmanager
def event_context(event: Envelope) -> Iterator[None]:
    """The log context of handling one event: its correlation id (its own id for a root)."""
    with log_context(
        correlation_id=event.correlation_id or event.event_id,
        event_id=event.event_id,
        event_type=event.event_type,
    ):
        yield


def correlation_id_from(header: str | None) -> uuid.UUID:
    """The caller's correlation id when it is a UUID, else a new one (never trust free text
    into logs and events)."""
    try:
        return uuid.UUID(header) if header else uuid.uuid4()
    except ValueError:
        return uuid.uuid4()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
        }
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in line}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, service: str, log_format: str = "json") -> None:
    """Root logging for a service process: JSON lines (LOG_FORMAT=json) or plain text."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "faststream.access"):
        # Their own handlers would print their lines unstructured (or a second time).
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
