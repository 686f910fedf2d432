"""Dead letters against the real broker: the grader parks what it cannot take, `dlq list` shows
it, and once the defect is fixed `dlq replay` hands it back to the grader, once."""

import asyncio
import json
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from services import cli
from services.common import consumer
from services.ctcae_grader import domain
from services.ctcae_grader.app import create_app
from services.ops.dlq import REPLAY_OF, REPLAYED_FROM, Selection, read_dead_letters, replay
from shared.events import Envelope, LabGraded
from shared.kafka import ensure_topics
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS, DEAD_LETTER_HEADERS, DEAD_LETTERS
from tests.support import events_of, produce, produce_events, read_topic, running
from tests.unit.factories import lab

pytestmark = pytest.mark.integration


def grading_defect(*args: object) -> None:
    """Stands for a grader release with a bug meeting ANC results."""
    raise KeyError("ANC reference range")


def graded(records: list) -> list[LabGraded]:
    return [e for e in events_of(records) if isinstance(e, LabGraded)]


ANC = lab("ANC", 0.9)  # grade 3 on day 1: graded, dose held (D1-ANC-HOLD), alerted
MISPLACED = domain.assess(lab("PLT", 42, day=8)).alerts[0]  # derived: refused on clinical
FIXED = Selection(service="grader", reason_contains="keyerror")


async def park_three(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grader release with a defect meets a poison message, a misplaced derived event and
    ANC: all three parked, for three reasons."""
    boot, clinical = settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS)
    monkeypatch.setattr(consumer, "RETRY_PAUSE_S", 0.05)  # five failures in well under a second
    with monkeypatch.context() as defect:
        defect.setattr(domain, "grade_lab_event", grading_defect)
        async with running(create_app(settings)):
            await produce(boot, clinical, [(b"GZ01-005", b"{not json")])
            await produce_events(boot, clinical, [MISPLACED, ANC])
            await read_topic(boot, settings.topic(DEAD_LETTERS), lambda r: len(r) >= 3, 30)


async def test_parked_messages_are_listed_and_a_fixed_one_is_replayed_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot, clinical = settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS)
    await park_three(settings, monkeypatch)

    poison, refused, failed = await read_dead_letters(settings)
    assert (poison.decodable, poison.event_type, poison.key) == (False, None, "GZ01-005")
    assert "Invalid JSON" in poison.reason and poison.value_size == len(b"{not json")
    assert (refused.event_type, refused.event_id) == ("AlertRaised", MISPLACED.event_id)
    assert refused.reason == "AlertRaised does not belong on the clinical-events topic"
    assert (failed.event_type, failed.event_id) == ("LabResultReported", ANC.event_id)
    assert failed.reason == "failed 5 times: KeyError('ANC reference range')"
    assert {(d.service, d.consumer_group) for d in (poison, refused, failed)} == {
        ("grader", settings.consumer_group("grader"))
    }
    assert [(d.source_topic, d.source_offset) for d in (poison, refused, failed)] == [
        (clinical, 0),
        (clinical, 1),
        (clinical, 2),
    ]
    assert await read_dead_letters(settings, service="dsmb-clinical") == []

    # The fix is deployed (the defect is gone); the grader runs again.
    async with running(create_app(settings)):
        dry = await replay(settings, FIXED, dry_run=True)
        assert [(i.action, i.dead_letter.position) for i in dry.items] == [
            ("would_replay", failed.position)
        ]
        first = await replay(settings, FIXED)
        assessed = await read_topic(
            boot, settings.topic(ASSESSMENTS), lambda r: len(graded(r)) >= 1, 30
        )
        (item,) = first.items
        assert item.action == "replayed" and item.replayed_as is not None
        assert item.replayed_as.startswith(f"{clinical}:{failed.source_partition}:")

        again = await replay(settings, FIXED)
        everything = await replay(settings, Selection(all=True), dry_run=True)
        await asyncio.sleep(3)  # time for the grader to act on anything a repeat published
        assessed_later = await read_topic(
            boot, settings.topic(ASSESSMENTS), lambda r: len(r) >= len(assessed) + 1, 5
        )

    expected = [e for e in domain.assess(ANC).assessments if isinstance(e, LabGraded)]
    assert [g.event_id for g in graded(assessed)] == [e.event_id for e in expected]
    assert [(i.action, i.replayed_as) for i in again.items] == [
        ("already_replayed", item.replayed_as)
    ]
    assert {i.dead_letter.position: i.action for i in everything.items} == {
        poison.position: "undecodable",
        refused.position: "would_replay",
        failed.position: "already_replayed",
    }
    copies = await read_topic(boot, clinical, lambda r: len(r) >= 5, 3)  # a 5th would show
    assert len(copies) == 4  # the three originals and one copy: the repeat published nothing
    assert dict(copies[-1].headers)[REPLAYED_FROM] == (
        f"{settings.topic(DEAD_LETTERS)}:{failed.position}".encode()
    )
    assert dict(copies[-1].headers)[REPLAY_OF] == f"{failed.source}".encode()
    assert copies[-1].value == copies[2].value and copies[-1].key == b"GZ01-005"
    assert len(assessed_later) == len(assessed)


async def test_a_replayed_lab_yields_everything_it_implies(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await park_three(settings, monkeypatch)
    implied = domain.assess(ANC)
    expected = {e.event_id for e in [*implied.assessments, *implied.alerts]}
    assert {e.event_type for e in [*implied.assessments, *implied.alerts]} == {
        "LabGraded",
        "DoseDecisionMade",
        "AlertRaised",
    }
    boot = settings.kafka_bootstrap_servers

    def ids(records: list) -> set:
        return {e.event_id for e in events_of(records)}

    async with running(create_app(settings)):
        await replay(settings, FIXED)
        assessed = await read_topic(
            boot, settings.topic(ASSESSMENTS), lambda r: len(graded(r)) >= 1, 30
        )
        alerts = await read_topic(boot, settings.topic(ALERTS), lambda r: len(r) >= 1, 10)
    assert ids([*assessed, *alerts]) == expected


# ---------------------------------------------------------------------------------------------
# The command line, against a namespace of its own (TOPIC_NAMESPACE)
# ---------------------------------------------------------------------------------------------


async def park(
    settings: Settings,
    event: Envelope | None,
    reason: str,
    service: str = "dsmb-clinical",
    source_offset: int | None = None,
) -> None:
    """A message on partition 0 of the clinical topic that `service` gave up on, parked as
    publish_dead_letter parks it: a new message (an undecodable one when `event` is None), or
    the one at `source_offset`."""
    value = b"\x00garbage" if event is None else event.model_dump_json().encode()
    clinical, h = settings.topic(CLINICAL_EVENTS), DEAD_LETTER_HEADERS
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        if source_offset is None:
            sent = await producer.send_and_wait(clinical, value, key=b"GZ01-007", partition=0)
            source_offset = sent.offset
        headers = [
            (h.reason, reason.encode()),
            (h.source_topic, clinical.encode()),
            (h.source_partition, b"0"),
            (h.source_offset, str(source_offset).encode()),
            (h.consumer_group, settings.consumer_group(service).encode()),
        ]
        await producer.send_and_wait(
            settings.topic(DEAD_LETTERS), value, key=b"GZ01-007", partition=0, headers=headers
        )
    finally:
        await producer.stop()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The command reads its settings from the environment: point it at the test's namespace."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("TOPIC_NAMESPACE", settings.topic_namespace)
    monkeypatch.setenv("TOPIC_PARTITIONS", str(settings.topic_partitions))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_the_command_lists_and_replays_each_message_once(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, event = cli_env, lab("ANC", 0.4, subject_id="GZ01-007")
    clinical = settings.topic(CLINICAL_EVENTS)

    async def setup() -> None:
        await ensure_topics(settings)
        await park(settings, None, "Invalid JSON: expected value at line 1 column 1")
        await park(settings, event, "failed 5 times: OperationalError('disk full')")
        await park(settings, event, "failed 5 times: KeyError('ANC')", "grader", source_offset=1)

    assert cli.main(["dlq", "list"]) == 2  # no dead-letter topic yet: said, no traceback
    assert "UnknownTopicOrPartitionError" in capsys.readouterr().err
    asyncio.run(setup())
    assert cli.main(["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["dlq_offset"], d["service"], d["source_offset"], d["event_id"]) for d in listed] == [
        (0, "dsmb-clinical", 0, None),
        (1, "dsmb-clinical", 1, str(event.event_id)),
        (2, "grader", 1, str(event.event_id)),
    ]
    assert "value" not in listed[0] and "raw_key" not in listed[0]  # clinical data stays put

    assert cli.main(["dlq", "list", "--service", "alerts"]) == 0
    assert "no dead letters in" in capsys.readouterr().out
    assert cli.main(["dlq", "list", "--service", "grader"]) == 0
    table = capsys.readouterr().out
    assert "grader" in table and "KeyError('ANC')" in table and "dsmb-clinical" not in table
    assert cli.main(["dlq", "list"]) == 0
    table = capsys.readouterr().out
    assert "dsmb-clinical" in table and "undecodable" in table and "LabResultReported" in table

    assert cli.main(["dlq", "replay", "--offset", "0:0", "--offset", "0:9"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("left (undecodable") and "no dead letter at 0:9" in err

    # Both consumers parked the message at clinical 0:1: one copy serves both.
    assert cli.main(["dlq", "replay", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("left (undecodable; --include-undecodable to replay): dlq 0:0 ")
    assert out[1].startswith(f"replayed: dlq 0:1 [dsmb-clinical] {clinical}:0:1 -> {clinical}:0:2 ")
    assert out[2].startswith(
        "same message as dlq 0:1 (one copy serves both): dlq 0:2 [grader] "
        f"{clinical}:0:1 -> {clinical}:0:2 "
    )
    assert out[3].startswith("replayed 1 of 3 selected; 0 replayed before, 1 sharing")
    records = asyncio.run(
        read_topic(settings.kafka_bootstrap_servers, clinical, lambda r: len(r) >= 3)
    )
    copy = records[-1]
    assert (copy.partition, copy.offset, copy.key) == (0, 2, b"GZ01-007")
    assert copy.value == records[1].value
    assert dict(copy.headers)["event_type"] == b"LabResultReported"
    assert dict(copy.headers)[REPLAY_OF] == f"{clinical}:0:1".encode()

    assert cli.main(["dlq", "replay", "--all", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": dlq ")[0] for line in out[:3]] == [
        "left (undecodable; --include-undecodable to replay)",
        "already replayed",
        "already replayed",
    ]
    assert out[1].endswith("OperationalError('disk full')") and f"-> {clinical}:0:2 " in out[2]
    assert out[3].startswith("would replay 0 of 3 selected; 2 replayed before")
