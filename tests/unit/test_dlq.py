"""Dead letters read back from their headers, and which of them a replay selection takes."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services import cli
from services.ops.dlq import (
    DeadLetter,
    ReplayItem,
    Selection,
    age,
    audit_line,
    one_copy_per_message,
    parse_dead_letter,
    parse_position,
    plan,
    replay_mark,
    scan_start,
    service_of,
    truncate,
)
from shared.events import encode_event
from shared.settings import Settings
from shared.topics import DEAD_LETTER_HEADERS
from tests.unit.factories import lab

SETTINGS = Settings(TOPIC_NAMESPACE="ns.")
CLINICAL = "ns.safety.clinical-events.v1"
PARKED_AT = datetime(2025, 4, 14, 8, 0, tzinfo=UTC)
H = DEAD_LETTER_HEADERS


def record(
    value: bytes, headers: dict[str, str], key: bytes | None = b"GZ01-005", offset: int = 7
) -> ConsumerRecord:
    return ConsumerRecord(
        topic="ns.safety.dead-letters.v1",
        partition=2,
        offset=offset,
        timestamp=int(PARKED_AT.timestamp() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=[(name, text.encode()) for name, text in headers.items()],
    )


def parked_by(
    service: str, reason: str = "failed 5 times: KeyError('x')", offset: int = 41
) -> dict[str, str]:
    return {
        H.reason: reason,
        H.source_topic: CLINICAL,
        H.source_partition: "1",
        H.source_offset: str(offset),
        H.consumer_group: f"ns.safetymon-{service}",
    }


def letter(
    service: str = "grader",
    reason: str = "failed 5 times: KeyError('x')",
    value: bytes | None = None,
    offset: int = 7,
    headers: dict[str, str] | None = None,
) -> DeadLetter:
    value = encode_event(lab()) if value is None else value
    return parse_dead_letter(
        record(value, parked_by(service, reason) if headers is None else headers, offset=offset),
        SETTINGS,
    )


# --- reading a dead letter --------------------------------------------------------------------


def test_a_dead_letter_is_read_from_its_headers_and_its_record() -> None:
    event = lab()
    d = letter(value=encode_event(event))
    assert (d.dlq_partition, d.dlq_offset, d.position) == (2, 7, "2:7")
    assert d.dead_lettered_at == PARKED_AT
    assert d.reason == "failed 5 times: KeyError('x')"
    assert (d.source_topic, d.source_partition, d.source_offset) == (CLINICAL, 1, 41)
    assert d.source == f"{CLINICAL}:1:41"
    assert (d.consumer_group, d.service) == ("ns.safetymon-grader", "grader")
    assert (d.key, d.raw_key, d.value_size) == ("GZ01-005", b"GZ01-005", len(d.value))
    assert (d.decodable, d.event_type, d.event_id) == (True, "LabResultReported", event.event_id)


def test_an_undecodable_value_is_listed_without_an_event_type() -> None:
    d = letter(value=b'{"event_type": "LabResultReported"}', reason="subject_id: Field required")
    assert (d.decodable, d.event_type, d.event_id, d.value_size) == (False, None, None, 35)


def test_missing_or_garbled_headers_leave_fields_empty_rather_than_drop_the_record() -> None:
    d = letter(headers={H.source_partition: "one", H.source_topic: CLINICAL})
    assert (d.reason, d.source_partition, d.source_offset, d.source) == ("", None, None, None)
    assert letter(headers={H.source_partition: "1", H.source_topic: CLINICAL}).source is None
    assert (d.consumer_group, d.service) == (None, None)
    keyless = parse_dead_letter(record(b"x", {}, key=None), SETTINGS)
    assert (keyless.key, keyless.raw_key) == (None, None)


def test_the_value_never_leaves_in_the_listing() -> None:
    dumped = letter().model_dump(mode="json")
    assert "value" not in dumped and "raw_key" not in dumped and dumped["key"] == "GZ01-005"


@pytest.mark.parametrize(
    ("group", "service"),
    [
        ("ns.safetymon-grader", "grader"),
        ("ns.safetymon-dsmb-clinical", "dsmb-clinical"),
        ("other.safetymon-grader", None),  # another namespace's group
        ("ns.safetymon-", None),
        (None, None),
    ],
)
def test_the_service_is_the_group_name_without_namespace_and_prefix(
    group: str | None, service: str | None
) -> None:
    assert service_of(group, SETTINGS) == service


# --- selecting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},  # nothing chosen: never means "everything"
        {"reason_contains": "KeyError"},
        {"all": True, "service": "grader"},
        {"service": "grader", "positions": ["2:7"]},
    ],
)
def test_a_selection_names_exactly_one_of_all_service_positions(fields: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        Selection(**fields)


def test_positions_are_partition_colon_offset() -> None:
    assert Selection(positions=["2:7", "0:11"]).positions == {(2, 7), (0, 11)}
    assert parse_position("3:0") == (3, 0)
    for bad in ("2", "2:", ":7", "a:7", "2:-1", "2:7:1"):
        with pytest.raises(ValueError, match="is not PARTITION:OFFSET"):
            parse_position(bad)


def test_selection_by_service_position_or_all_narrowed_by_reason() -> None:
    grader = letter("grader", "failed 5 times: KeyError('ANC')", offset=7)
    dsmb = letter("dsmb-clinical", "failed 5 times: OperationalError('disk')", offset=8)
    assert [Selection(service="grader").matches(d) for d in (grader, dsmb)] == [True, False]
    by_group = Selection(service="ns.safetymon-dsmb-clinical")
    assert [by_group.matches(d) for d in (grader, dsmb)] == [False, True]
    assert [Selection(positions=["2:8"]).matches(d) for d in (grader, dsmb)] == [False, True]
    assert [Selection(all=True).matches(d) for d in (grader, dsmb)] == [True, True]
    narrowed = Selection(all=True, reason_contains="operationalerror")
    assert [narrowed.matches(d) for d in (grader, dsmb)] == [False, True]
    assert not Selection(service="grader", reason_contains="disk").matches(grader)


# --- planning a replay ------------------------------------------------------------------------


def test_a_message_copied_before_is_not_copied_again() -> None:
    d = letter()
    assert replay_mark(SETTINGS, d) == "ns.safety.dead-letters.v1:2:7"
    item = plan(d, Selection(all=True), {f"{CLINICAL}:1:41": f"{CLINICAL}:1:90"})
    assert (item.action, item.replayed_as) == ("already_replayed", f"{CLINICAL}:1:90")
    assert plan(d, Selection(all=True), {f"{CLINICAL}:1:40": "..."}).action == "would_replay"


def test_a_message_parked_by_two_consumers_gets_one_copy() -> None:
    grader, dsmb = letter("grader", offset=7), letter("dsmb-clinical", offset=8)
    other = parse_dead_letter(record(b"x", parked_by("grader", offset=42), offset=9), SETTINGS)
    chosen = Selection(all=True, include_undecodable=True)
    items = one_copy_per_message([plan(d, chosen, {}) for d in (grader, dsmb, other)])
    assert [(i.action, i.same_as) for i in items] == [
        ("would_replay", None),
        ("same_message", "2:7"),
        ("would_replay", None),
    ]
    assert audit_line(items[1]).startswith(
        f"same message as dlq 2:7 (one copy serves both): dlq 2:8 [dsmb-clinical] {CLINICAL}:1:41"
    )


def test_an_undecodable_value_is_replayed_only_on_request() -> None:
    poison = letter(value=b"{not json")
    assert plan(poison, Selection(all=True), {}).action == "undecodable"
    chosen = Selection(all=True, include_undecodable=True)
    assert plan(poison, chosen, {}).action == "would_replay"


def test_a_dead_letter_without_its_source_cannot_be_replayed() -> None:
    for partial in (
        {H.source_topic: CLINICAL},
        {H.source_topic: CLINICAL, H.source_partition: "1"},
    ):
        d = letter(headers={H.reason: "?", **partial})
        assert plan(d, Selection(all=True), {}).action == "no_source"


def test_copies_are_looked_for_after_the_source_offset_unless_the_log_was_recreated() -> None:
    assert scan_start(42, 100) == 42
    assert scan_start(100, 100) == 100  # nothing after it yet
    assert scan_start(42, 5) == 0  # the partition no longer reaches the source offset


# --- printing ---------------------------------------------------------------------------------


def test_the_audit_line_says_what_happened_where_and_why() -> None:
    d = letter()
    line = audit_line(ReplayItem(dead_letter=d, action="replayed", replayed_as=f"{CLINICAL}:1:90"))
    assert line == (
        f"replayed: dlq 2:7 [grader] {CLINICAL}:1:41 -> {CLINICAL}:1:90 key=GZ01-005 "
        f"LabResultReported {d.event_id}: failed 5 times: KeyError('x')"
    )
    poison = letter(value=b"{not json")
    assert "left (undecodable; --include-undecodable to replay)" in audit_line(
        ReplayItem(dead_letter=poison, action="undecodable")
    )


def test_ages_and_truncated_reasons() -> None:
    assert [age(timedelta(seconds=s)) for s in (-1, 59, 61, 7200, 3 * 86400)] == [
        "0s",
        "59s",
        "1m",
        "2h",
        "3d",
    ]
    assert truncate("x" * 60) == "x" * 60
    assert truncate("x" * 61) == "x" * 59 + "…"


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "replay"],  # replaying everything is never implied
        ["dlq", "replay", "--all", "--service", "grader"],
        ["dlq", "replay", "--service", "grader", "--offset", "0:1"],
        ["dlq"],
    ],
)
def test_the_command_refuses_an_unclear_selection(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2


def test_the_command_refuses_a_malformed_offset(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dlq", "replay", "--offset", "one:2"]) == 2
    assert "'one:2' is not PARTITION:OFFSET" in capsys.readouterr().err
