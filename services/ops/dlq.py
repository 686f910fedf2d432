"""Dead letters: what the consumers parked, and publishing it again once a fix lets them take it.

A dead letter is the original record (key and value, byte for byte) on the dead-letter topic with
headers naming the reason, where it came from (topic, partition, offset) and the consumer group
that gave up on it (shared/kafka.py, publish_dead_letter). The record's own timestamp is when it
was parked; the service is the group's name without the "<namespace>safetymon-" prefix
(Settings.consumer_group), so neither needs a header of its own.

Replaying publishes a dead letter's original key and value again to the partition it came from,
with headers naming the message it copies (REPLAY_OF) and the dead letter (REPLAYED_FROM), so the
consumer that failed takes it again. Every other consumer of that topic sees the copy too: they
took the message the first time and what they derive from it again repeats nothing, because event
ids are deterministic (a derived event's id comes from its cause and rule) and the alert store and
the DSMB read models ignore an id they already hold. The grader itself does not recognise a
clinical event it has already applied, so a message must not be put back twice: before
publishing, the source partition is read after the message's offset for a copy of it, and a
message copied before is not copied again; when two consumers parked the same message, one copy
serves both. Repeating a replay therefore publishes nothing new. A copy that fails again is parked
as a new dead letter (of the copy), which can itself be replayed. Nothing is deleted from the
dead-letter topic (the log is append-only; it keeps dead letters 90 days).
"""

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.events import EventDecodeError, decode_event
from shared.kafka import _log_reader, make_broker, read_to_end
from shared.settings import Settings, get_settings
from shared.topics import DEAD_LETTER_HEADERS, DEAD_LETTERS

log = logging.getLogger(__name__)

# On a replayed copy: "<topic>:<partition>:<offset>" of the message it copies, and
# "<dead-letter topic>:<partition>:<offset>" of the dead letter it was replayed from.
REPLAY_OF = "x-replay-of"
REPLAYED_FROM = "x-replayed-from-dead-letter"
REASON_WIDTH = 60  # characters of the reason a table row or an audit line shows


class DeadLetter(BaseModel):
    """One record of the dead-letter topic, read back. Where a header is missing or unreadable
    (a record some other producer wrote) the field is None rather than the record dropped."""

    model_config = ConfigDict(frozen=True)

    dlq_partition: int
    dlq_offset: int
    dead_lettered_at: AwareDatetime
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    consumer_group: str | None
    service: str | None
    key: str | None
    value_size: int
    decodable: bool  # the value is a safetymon event (decoded by this version of the code)
    event_type: str | None
    event_id: UUID | None
    # The original bytes, for the replay: never printed (the value holds clinical data).
    raw_key: bytes | None = Field(None, exclude=True, repr=False)
    value: bytes = Field(b"", exclude=True, repr=False)

    @property
    def position(self) -> str:
        """partition:offset on the dead-letter topic, as --offset takes it."""
        return f"{self.dlq_partition}:{self.dlq_offset}"

    @property
    def source(self) -> str | None:
        """topic:partition:offset of the message that was parked."""
        if self.source_topic is None or self.source_partition is None or self.source_offset is None:
            return None
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    def belongs_to(self, service: str) -> bool:
        """Parked by `service` (grader, dsmb-clinical...), or by the consumer group so named."""
        return service in (self.service, self.consumer_group)


def parse_dead_letter(record: ConsumerRecord, settings: Settings) -> DeadLetter:
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    h = DEAD_LETTER_HEADERS
    group = headers.get(h.consumer_group)
    try:
        event = decode_event(record.value or b"")
    except EventDecodeError:
        event = None
    return DeadLetter(
        dlq_partition=record.partition,
        dlq_offset=record.offset,
        dead_lettered_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        reason=headers.get(h.reason, ""),
        source_topic=headers.get(h.source_topic),
        source_partition=_int_or_none(headers.get(h.source_partition)),
        source_offset=_int_or_none(headers.get(h.source_offset)),
        consumer_group=group,
        service=service_of(group, settings),
        key=None if record.key is None else record.key.decode(errors="replace"),
        value_size=len(record.value or b""),
        decodable=event is not None,
        event_type=None if event is None else event.event_type,
        event_id=None if event is None else event.event_id,
        raw_key=record.key,
        value=record.value or b"",
    )


def service_of(group: str | None, settings: Settings) -> str | None:
    """The service whose consumer group `group` is (Settings.consumer_group reversed)."""
    prefix = settings.consumer_group("")
    if group is None or not group.startswith(prefix) or group == prefix:
        return None
    return group.removeprefix(prefix)


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


async def read_dead_letters(
    settings: Settings,
    *,
    service: str | None = None,
    source_topic: str | None = None,
    since: datetime | None = None,
) -> list[DeadLetter]:
    """The dead letters up to the end of the topic at the time of the call, oldest first;
    `source_topic` is a topic's full name or its name without the namespace."""
    topics = None if source_topic is None else {source_topic, settings.topic(source_topic)}

    def wanted(letter: DeadLetter) -> bool:
        return (
            (service is None or letter.belongs_to(service))
            and (topics is None or letter.source_topic in topics)
            and (since is None or letter.dead_lettered_at >= since)
        )

    letters = [
        parse_dead_letter(record, settings)
        async for batch in read_to_end(settings, settings.topic(DEAD_LETTERS))
        for record in batch
    ]
    return sorted(
        filter(wanted, letters), key=lambda d: (d.dead_lettered_at, d.dlq_partition, d.dlq_offset)
    )


# ---------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------


def parse_position(text: str) -> tuple[int, int]:
    """`P:O` (as --offset takes it) -> (partition, offset) on the dead-letter topic."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"'{text}' is not PARTITION:OFFSET (e.g. 2:17)")
    return int(partition), int(offset)


class Selection(BaseModel):
    """Which dead letters to replay. Exactly one of `all`, `service`, `positions` says which;
    replaying everything is never implied by an empty selection."""

    model_config = ConfigDict(frozen=True)

    all: bool = False
    service: str | None = None
    positions: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) on the DLQ
    reason_contains: str | None = None  # narrows any of the three (case-insensitive)
    include_undecodable: bool = False

    @field_validator("positions", mode="before")
    @classmethod
    def _parse_positions(cls, value: object) -> object:
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            return frozenset(parse_position(v) if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="after")
    def _explicit(self) -> "Selection":
        chosen = [self.all, self.service is not None, bool(self.positions)]
        if sum(chosen) != 1:
            raise ValueError("select by exactly one of: all, service, positions (--offset)")
        return self

    def matches(self, letter: DeadLetter) -> bool:
        if self.reason_contains and self.reason_contains.lower() not in letter.reason.lower():
            return False
        if self.service is not None:
            return letter.belongs_to(self.service)
        return self.all or (letter.dlq_partition, letter.dlq_offset) in self.positions


Action = Literal[
    "replayed", "would_replay", "already_replayed", "same_message", "undecodable", "no_source"
]


class ReplayItem(BaseModel):
    """What happened to one selected dead letter. `replayed_as` is where the copy of its message
    sits (topic:partition:offset): just published, or published by an earlier replay; for
    "same_message", `same_as` is the dead letter (position) of the same message whose copy
    serves this one too."""

    dead_letter: DeadLetter
    action: Action
    replayed_as: str | None = None
    same_as: str | None = None


class ReplayResult(BaseModel):
    dry_run: bool
    items: list[ReplayItem]
    unknown_positions: list[str]  # asked for by --offset, not on the dead-letter topic

    def count(self, action: Action) -> int:
        return sum(item.action == action for item in self.items)


async def replay(settings: Settings, selection: Selection, dry_run: bool = False) -> ReplayResult:
    """Publish each selected dead letter's key and value again to the partition it came from,
    in source order (so a subject's events keep their order), unless undecodable (it would only
    be parked again; `include_undecodable` overrides) or already replayed."""
    letters = await read_dead_letters(settings)
    chosen = sorted(filter(selection.matches, letters), key=_source_order)
    copies = await _earlier_copies(settings, chosen)
    items = one_copy_per_message([plan(letter, selection, copies) for letter in chosen])
    if not dry_run:
        items = await _publish(settings, items)
    present = {(letter.dlq_partition, letter.dlq_offset) for letter in letters}
    unknown = [f"{p}:{o}" for p, o in sorted(selection.positions - present)]
    return ReplayResult(dry_run=dry_run, items=items, unknown_positions=unknown)


def _source_order(letter: DeadLetter) -> tuple[str, int, int, int, int]:
    source = (letter.source_topic or "", letter.source_partition or 0, letter.source_offset or 0)
    return (*source, letter.dlq_partition, letter.dlq_offset)


def replay_mark(settings: Settings, letter: DeadLetter) -> str:
    """The REPLAYED_FROM header value of `letter`'s copy."""
    return f"{settings.topic(DEAD_LETTERS)}:{letter.position}"


def plan(letter: DeadLetter, selection: Selection, copies: dict[str, str]) -> ReplayItem:
    """What to do with a selected dead letter, given the copies already published (message ->
    where its copy sits): a message is never copied twice, an undecodable one only on request."""
    if letter.source is None:
        return ReplayItem(dead_letter=letter, action="no_source")
    if (copy := copies.get(letter.source)) is not None:
        return ReplayItem(dead_letter=letter, action="already_replayed", replayed_as=copy)
    if not letter.decodable and not selection.include_undecodable:
        return ReplayItem(dead_letter=letter, action="undecodable")
    return ReplayItem(dead_letter=letter, action="would_replay")


def one_copy_per_message(items: list[ReplayItem]) -> list[ReplayItem]:
    """Where several consumers parked the same message, the first dead letter's copy serves
    them all (every group reads the copy): the others are not copied again."""
    first: dict[str, str] = {}  # message (source) -> the dead letter whose copy it gets
    kept = []
    for item in items:
        source = str(item.dead_letter.source)
        if item.action != "would_replay":
            kept.append(item)
        elif source in first:
            update = {"action": "same_message", "same_as": first[source]}
            kept.append(item.model_copy(update=update))
        else:
            first[source] = item.dead_letter.position
            kept.append(item)
    return kept


async def _earlier_copies(settings: Settings, letters: list[DeadLetter]) -> dict[str, str]:
    """Message (topic:partition:offset) -> where its copy sits, for the copies already published
    of `letters`' messages. A copy goes to its message's partition, after it: only that stretch of
    each partition is read."""
    starts: dict[TopicPartition, int] = {}
    for letter in letters:
        topic, partition, offset = (
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
        )
        if topic is not None and partition is not None and offset is not None:
            tp = TopicPartition(topic, partition)
            starts[tp] = min(starts.get(tp, offset + 1), offset + 1)
    copies: dict[str, str] = {}
    async for record in _records_from(settings, starts):
        copied = dict(record.headers or ()).get(REPLAY_OF)
        if copied is not None:
            copies.setdefault(copied.decode(), f"{record.topic}:{record.partition}:{record.offset}")
    return copies


def scan_start(after_source: int, end: int) -> int:
    """Where to look for copies in a partition ending at `end`: after the dead letter's source
    offset, unless the partition no longer reaches it (the topic was deleted and created
    again): then from its beginning."""
    return after_source if after_source <= end else 0


async def _records_from(
    settings: Settings, starts: dict[TopicPartition, int]
) -> AsyncIterator[ConsumerRecord]:
    """Each partition's records from its start offset (see scan_start) up to its end at the
    time of the call."""
    if not starts:
        return
    reader = _log_reader(settings)
    await reader.start()
    try:
        reader.assign(list(starts))
        ends = await reader.end_offsets(list(starts))
        first = {tp: scan_start(starts[tp], end) for tp, end in ends.items()}
        remaining = {tp: end for tp, end in ends.items() if end > first[tp]}
        for tp in remaining:
            reader.seek(tp, first[tp])
        while remaining:
            batches = await reader.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < remaining[tp]:
                        yield record
                if await reader.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        await reader.stop()


async def _publish(settings: Settings, items: list[ReplayItem]) -> list[ReplayItem]:
    """Publish the planned copies one by one (each acknowledged by every in-sync replica before
    the next, so they keep their order)."""
    if not any(item.action == "would_replay" for item in items):
        return items
    broker = make_broker(settings, client_id="safetymon-dlq-replay")
    await broker.start()
    try:
        items = [await _publish_one(broker, settings, item) for item in items]
    finally:
        await broker.stop()
    copies = {item.dead_letter.position: item.replayed_as for item in items}
    return [
        item.model_copy(update={"replayed_as": copies[item.same_as]}) if item.same_as else item
        for item in items
    ]


async def _publish_one(broker: KafkaBroker, settings: Settings, item: ReplayItem) -> ReplayItem:
    if item.action != "would_replay":
        return item
    letter = item.dead_letter
    headers = {REPLAY_OF: str(letter.source), REPLAYED_FROM: replay_mark(settings, letter)}
    if letter.event_type is not None:  # as publish_events labels an event
        headers["event_type"] = letter.event_type
    sent = await broker.publish(
        letter.value,
        topic=letter.source_topic,
        partition=letter.source_partition,
        key=letter.raw_key,
        headers=headers,
    )
    copy = f"{sent.topic}:{sent.partition}:{sent.offset}"
    log.info("replayed dead letter %s (%s) as %s", letter.position, letter.reason, copy)
    return item.model_copy(update={"action": "replayed", "replayed_as": copy})


# ---------------------------------------------------------------------------------------------
# The `safetymon dlq` command
# ---------------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    """`dlq list` and `dlq replay`, from the arguments services/cli.py parsed; exit 2 on a
    malformed selection or when Kafka cannot be read (e.g. no dead-letter topic yet)."""
    try:
        if args.dlq_action == "list":
            return list_command(args.service, args.json)
        return _replay_command(args)
    except KafkaError as error:
        print(f"error: Kafka: {error}", file=sys.stderr)
        return 2


def _replay_command(args: argparse.Namespace) -> int:
    try:
        selection = Selection(
            all=args.all,
            service=args.service,
            positions=args.offsets or (),
            reason_contains=args.reason_contains,
            include_undecodable=args.include_undecodable,
        )
    except (ValidationError, ValueError) as error:
        print(f"error: {_first_error(error)}", file=sys.stderr)
        return 2
    return replay_command(selection, args.dry_run)


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return error.errors()[0]["msg"]
    return str(error)


def list_command(service: str | None, as_json: bool) -> int:
    settings = get_settings()
    letters = asyncio.run(read_dead_letters(settings, service=service))
    if as_json:
        print(json.dumps([letter.model_dump(mode="json") for letter in letters], indent=2))
        return 0
    if not letters:
        print(f"no dead letters in {settings.topic(DEAD_LETTERS)}")
        return 0
    _print_table(letters, datetime.now(UTC))
    return 0


def _print_table(letters: list[DeadLetter], now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("DLQ", "age", "service", "source", "event", "reason")
    for d in letters:
        event = f"{d.event_type} {d.event_id}" if d.decodable else "undecodable"
        table.add_row(
            d.position,
            age(now - d.dead_lettered_at),
            d.service or d.consumer_group or "?",
            d.source or "?",
            event,
            truncate(d.reason),
        )
    console = Console()
    if not console.is_terminal:  # piped (grep, a file): one line per dead letter, not wrapped
        console = Console(width=250)
    console.print(table)


def replay_command(selection: Selection, dry_run: bool) -> int:
    """Replay and print one audit line per selected dead letter; exit 1 if an --offset named
    no dead letter."""
    result = asyncio.run(replay(get_settings(), selection, dry_run))
    for item in result.items:
        print(audit_line(item))
    for position in result.unknown_positions:
        print(f"error: no dead letter at {position}", file=sys.stderr)
    done = "would replay" if dry_run else "replayed"
    print(
        f"{done} {result.count('would_replay' if dry_run else 'replayed')} of "
        f"{len(result.items)} selected; {result.count('already_replayed')} replayed before, "
        f"{result.count('same_message')} sharing another's copy, "
        f"{result.count('undecodable')} undecodable left, {result.count('no_source')} "
        "without a source"
    )
    return 1 if result.unknown_positions else 0


_VERB = {
    "replayed": "replayed",
    "would_replay": "would replay",
    "already_replayed": "already replayed",
    "undecodable": "left (undecodable; --include-undecodable to replay)",
    "same_message": "same message as",
    "no_source": "left (no source topic/partition/offset header)",
}


def audit_line(item: ReplayItem) -> str:
    d = item.dead_letter
    what = f"{d.event_type} {d.event_id}" if d.decodable else f"undecodable ({d.value_size} B)"
    copy = f" -> {item.replayed_as}" if item.replayed_as else ""
    verb = _VERB[item.action] + (
        f" dlq {item.same_as} (one copy serves both)" if item.same_as else ""
    )
    return (
        f"{verb}: dlq {d.position} [{d.service or d.consumer_group}] "
        f"{d.source}{copy} key={d.key} {what}: {truncate(d.reason)}"
    )


def age(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def truncate(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
