"""Structured logs: JSON lines carrying the service and the correlation id of the work in hand."""

import io
import json
import logging
import uuid
from collections.abc import Callable

from services.common.logs import (
    JsonFormatter,
    correlation_id_from,
    current_context,
    event_context,
    log_context,
)
from tests.unit.factories import lab


def logged(write: Callable[[logging.Logger], None]) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("grader"))
    logger = logging.getLogger("test-structured-logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    write(logger)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_service_and_message() -> None:
    (line,) = logged(lambda log: log.info("graded %d results", 3))
    assert line["level"] == "INFO"
    assert line["service"] == "grader"
    assert line["message"] == "graded 3 results"
    assert line["ts"].endswith("+00:00")


def test_an_event_being_handled_puts_its_correlation_id_on_every_line() -> None:
    event = lab().model_copy(update={"correlation_id": uuid.uuid4()})
    with event_context(event):
        (line,) = logged(lambda log: log.info("handled"))
    assert line["correlation_id"] == str(event.correlation_id)
    assert line["event_id"] == str(event.event_id)
    assert line["event_type"] == "LabResultReported"
    assert current_context() == {}  # gone after the block


def test_a_root_event_is_its_own_correlation_id() -> None:
    event = lab()
    with event_context(event):
        assert current_context()["correlation_id"] == str(event.event_id)


def test_contexts_nest_and_extra_fields_are_kept() -> None:
    with log_context(correlation_id="c-1"), log_context(event_id="e-1"):
        (line,) = logged(lambda log: log.warning("slow", extra={"seconds": 2.5}))
    assert (line["correlation_id"], line["event_id"], line["seconds"]) == ("c-1", "e-1", 2.5)


def test_an_exception_is_logged_with_its_traceback_in_one_line() -> None:
    def fail(log: logging.Logger) -> None:
        try:
            raise RuntimeError("broker gone")
        except RuntimeError:
            log.exception("publish failed")

    (line,) = logged(fail)
    assert "RuntimeError: broker gone" in line["exception"]


def test_a_callers_correlation_id_is_kept_only_when_it_is_a_uuid() -> None:
    given = uuid.uuid4()
    assert correlation_id_from(str(given)) == given
    assert correlation_id_from("drop table; <script>") != correlation_id_from(None)
    assert isinstance(correlation_id_from("not-a-uuid"), uuid.UUID)
