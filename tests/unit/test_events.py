"""The event envelope: encoding, decoding with precise errors, derived ids."""

import json
from datetime import date

import pytest

from shared.events import (
    EventDecodeError,
    LabGraded,
    LabResultReported,
    content_fingerprint,
    decode_event,
    derive_id,
    encode_event,
)
from tests.unit.factories import lab


def test_an_event_survives_the_round_trip_as_its_own_class() -> None:
    event = lab()
    decoded = decode_event(encode_event(event))
    assert isinstance(decoded, LabResultReported)
    assert decoded == event
    assert json.loads(encode_event(event))["schema_version"] == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("subject_id"), "subject_id: Field required"),
        (lambda e: e.update(event_type="Nonsense"), "does not match any of the expected tags"),
        (lambda e: e["payload"].update(test="XYZ"), "payload.test"),
        (lambda e: e.update(schema_version=2), "schema_version"),
    ],
)
def test_a_bad_event_is_refused_with_the_field_and_reason(mutate, message: str) -> None:
    body = json.loads(encode_event(lab()))
    mutate(body)
    with pytest.raises(EventDecodeError, match=message):
        decode_event(json.dumps(body).encode())


def test_bytes_that_are_not_json_are_refused() -> None:
    with pytest.raises(EventDecodeError, match="Invalid JSON"):
        decode_event(b"\x00not json")


def test_derived_ids_are_deterministic() -> None:
    assert derive_id("a", "b") == derive_id("a", "b")
    assert derive_id("a", "b") != derive_id("ab")


@pytest.mark.parametrize(
    ("content", "digest"),
    [
        ([0.9, "10^9/L", 3, 3], "c14025bfc7c9fd368299361dc89ebe4d6f7e38a630540ca718057c5de9284e6d"),
        (
            {"b": 1, "a": "µmol/L", "d": date(2026, 3, 1)},
            "b8c1ee82e4f23bcbe9f07777c197c59111fa2afc1e9d8a2f67948171a05d38ac",
        ),
    ],
)
def test_a_content_fingerprint_never_changes(content: object, digest: str) -> None:
    # Part of published ids (a grade's id holds its graded value): the digest of the JSON with
    # sorted keys, no spaces, ASCII escapes and dates as text, as it has always been.
    assert content_fingerprint(content) == digest


def test_a_derived_event_points_to_its_cause() -> None:
    cause = lab()
    from services.ctcae_grader.domain import assess

    graded = next(e for e in assess(cause).assessments if isinstance(e, LabGraded))
    assert graded.causation_id == cause.event_id
    assert graded.subject_id == cause.subject_id
    assert (
        graded.event_id
        == next(e for e in assess(cause).assessments if isinstance(e, LabGraded)).event_id
    )
