"""A subject's clinical events and what they currently imply, kept so that a correction or a
retraction can re-evaluate the subject from scratch. No I/O but the process's scratch file.

A corrected event keeps its place and id with the corrected payload; a retracted one is dropped.
The subject is then replayed through the protocol from an empty state: outputs that no longer
follow are retracted with an event saying why, new ones are published, and ones that still hold
keep their ids and are left alone (a decision or alert id comes from its cause and rule; a grade's
id also from the graded value, so a corrected value's grade is a new event).

What a ledger keeps in memory is small, as the grader holds one per subject of its partitions
(bench/bench_grader_memory.py): a 4-byte fingerprint per event applied and where its events are
stored. The events themselves (as encoded) and the subject's state after them live in the
process's scratch store, a temporary SQLite file that goes with the process; the states last
used stay in memory too. The outputs in force are not kept at all: they are what replaying the
events gives (the same events give the same outputs, with the same ids), so a revision replays
the events before it as well as after.
"""

import contextlib
import os
import pickle
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from uuid import UUID

from pydantic import ValidationError

from services.ctcae_grader.domain import step
from services.ctcae_grader.state import PatientState
from shared.events import (
    AlertRaised,
    Envelope,
    EventCorrected,
    EventDecodeError,
    EventRetracted,
    EventRetractedPayload,
    Source,
    decode_event,
    derive_id,
    encode_event,
)
from shared.protocol import Protocol
from shared.reference_ranges import ReferenceRangeTable


class RevisionRefused(LookupError):
    """A correction or retraction that cannot be applied (no such event, or a payload that
    does not fit it); the message says which."""


@dataclass
class Outputs:
    assessments: list[Envelope] = field(default_factory=list)  # grades, decisions, signals
    alerts: list[Envelope] = field(default_factory=list)  # AlertRaised, or their retractions


Context = tuple[Protocol, ReferenceRangeTable | None]


class SubjectLedger:
    """One subject's events applied, each once. `clone()` is a copy to work on (O(1)); `record`
    applies an event; `state` is the subject's state after them; `events` the events in effect
    (revisions applied)."""

    __slots__ = ("_ids", "_lineage", "_tail")

    def __init__(self) -> None:
        # The ledger and the clones it came from or gave: their events are stored under it.
        self._lineage: _Lineage | None = None
        self._tail = 0  # the stored row of the last event applied (0: none); rows chain back
        # Every event id applied, revisions included, as a fingerprint: the log is at-least-once
        # (a client resends what got no answer, though Kafka may have written it), so a second
        # copy changes nothing. A fingerprint seen before is checked against the stored ids.
        self._ids = b""

    def clone(self) -> "SubjectLedger":
        """A copy to work on: kept only once its outputs are durable. The two share what is
        stored: an event applied to either is stored in a row of its own, pointing back at
        the last event the ledger had."""
        copy = SubjectLedger()
        copy._lineage, copy._tail, copy._ids = self._lineage, self._tail, self._ids
        return copy

    @property
    def state(self) -> PatientState | None:
        if self._lineage is None or not self._tail:
            return None
        store = _the_store()
        stored, state = store.state(self._lineage, self._tail)
        if stored:
            return state
        protocol, ranges = store.context(self._lineage)
        return replay(protocol, self._events(store), ranges)[0]

    @property
    def events(self) -> list[Envelope]:
        """The clinical events in effect, in order: corrections applied, retractions dropped."""
        return self._events(_the_store())

    def record(
        self,
        protocol: Protocol,
        event: Envelope,
        ranges: ReferenceRangeTable | None,
        raw: bytes | None = None,
    ) -> Outputs:
        """A new clinical fact: applied on top of the current state, once. `raw`: the event as
        encoded (the message it came in), which spares encoding it again to store it."""
        store = _the_store()
        fingerprint = zlib.crc32(event.event_id.bytes).to_bytes(4, "little")
        if self._applied(store, event.event_id, fingerprint):
            return Outputs()
        if isinstance(event, EventCorrected | EventRetracted):
            state, outputs = self._revise(store, protocol, event, ranges)
        else:
            state, assessment = step(protocol, self._state(store, protocol, ranges), event, ranges)
            outputs = Outputs(list(assessment.assessments), list(assessment.alerts))
        # Stored after: a refused revision may come again, refused again.
        if self._lineage is None:
            self._lineage = _Lineage(next(_numbers))
        raw = encode_event(event) if raw is None else raw
        self._tail = store.add(
            self._lineage, self._tail, event.event_id, raw, state, (protocol, ranges)
        )
        self._ids += fingerprint
        return outputs

    def _applied(self, store: "_Store", event_id: UUID, fingerprint: bytes) -> bool:
        at = self._ids.find(fingerprint)
        while at >= 0 and at % 4:
            at = self._ids.find(fingerprint, at + 1)
        if at < 0 or self._lineage is None:
            return False
        return event_id.bytes in {id_ for id_, _ in store.chain(self._lineage, self._tail)}

    def _state(
        self, store: "_Store", protocol: Protocol, ranges: ReferenceRangeTable | None
    ) -> PatientState | None:
        if self._lineage is None or not self._tail:
            return None
        stored, state = store.state(self._lineage, self._tail)
        return state if stored else replay(protocol, self._events(store), ranges)[0]

    def _events(self, store: "_Store") -> list[Envelope]:
        events: list[Envelope] = []
        if self._lineage is None:
            return events
        for _, raw in store.chain(self._lineage, self._tail):
            event = decode_event(raw)
            if isinstance(event, EventCorrected | EventRetracted):
                events = revised_events(events, event)  # applied once before: applies again
            else:
                events.append(event)
        return events

    def _revise(
        self,
        store: "_Store",
        protocol: Protocol,
        revision: EventCorrected | EventRetracted,
        ranges: ReferenceRangeTable | None,
    ) -> tuple[PatientState | None, Outputs]:
        events = self._events(store)
        revised = revised_events(events, revision)
        live = replay(protocol, events, ranges)[1]  # the outputs in force until now
        state, now = replay(protocol, revised, ranges)
        gone = [old for old_id, old in live.items() if old_id not in now]
        new = [output for output_id, output in now.items() if output_id not in live]
        outputs = Outputs()
        for output, published in [
            *((n, n) for n in new),
            *((g, retraction(revision, g)) for g in gone),
        ]:
            # An alert's retraction goes where the alert went, for the alert service to close it.
            (outputs.alerts if isinstance(output, AlertRaised) else outputs.assessments).append(
                published
            )
        return state, outputs


# The events a subject ledger takes: what ingest publishes on the clinical-events topic.
CLINICAL_EVENT_TYPES = frozenset(
    {
        "SubjectEnrolled",
        "LabResultReported",
        "AdverseEventReported",
        "DoseAdministered",
        "EventCorrected",
        "EventRetracted",
    }
)


def replay_into(
    ledgers: dict[str, "SubjectLedger"],
    raw: bytes,
    protocol: Protocol,
    ranges: ReferenceRangeTable | None,
) -> None:
    """Apply one message of the clinical-events log to its subject's ledger, as the grader
    applied it when it came: what it could not take then (undecodable, not a clinical event, a
    revision of nothing) changes nothing now."""
    try:
        event = decode_event(raw)
    except EventDecodeError:
        return
    if event.event_type in CLINICAL_EVENT_TYPES:
        ledger = ledgers.setdefault(event.subject_id, SubjectLedger())
        with contextlib.suppress(RevisionRefused):
            ledger.record(protocol, event, ranges, raw)


def revised_events(
    events: list[Envelope], revision: EventCorrected | EventRetracted
) -> list[Envelope]:
    target = (
        revision.payload.corrected_event_id
        if isinstance(revision, EventCorrected)
        else revision.payload.retracted_event_id
    )
    index = next((i for i, e in enumerate(events) if e.event_id == target), None)
    if index is None:
        raise RevisionRefused(f"{revision.event_type} of {target}: no such event for this subject")
    if isinstance(revision, EventRetracted):
        return events[:index] + events[index + 1 :]
    old = events[index]
    try:
        corrected = type(old).model_validate(
            old.model_dump() | {"payload": revision.payload.corrected_payload.model_dump()}
        )
    except ValidationError as error:
        raise RevisionRefused(
            f"the corrected payload does not fit {old.event_type} {target}: {error}"
        ) from None
    return [*events[:index], corrected, *events[index + 1 :]]


def replay(
    protocol: Protocol, events: list[Envelope], ranges: ReferenceRangeTable | None
) -> tuple[PatientState | None, dict[UUID, Envelope]]:
    state, outputs = None, {}
    for event in events:
        state, assessment = step(protocol, state, event, ranges)
        for output in [*assessment.assessments, *assessment.alerts]:
            outputs[output.event_id] = output
    return state, outputs


def retraction(revision: EventCorrected | EventRetracted, output: Envelope) -> EventRetracted:
    """An output that no longer follows from the subject's events, retracted with the reason."""
    p = revision.payload
    target = p.corrected_event_id if isinstance(revision, EventCorrected) else p.retracted_event_id
    what = f"{revision.event_type} of {target}"
    return EventRetracted(
        event_id=derive_id("retracted", str(output.event_id), str(revision.event_id)),
        study_id=output.study_id,
        site_id=output.site_id,
        subject_id=output.subject_id,
        occurred_at=revision.occurred_at,
        recorded_at=revision.recorded_at,
        causation_id=revision.event_id,
        correlation_id=output.correlation_id,
        source=Source(system="safetymon", message_id=str(revision.event_id)),
        payload=EventRetractedPayload(
            retracted_event_id=output.event_id,
            reason=f"{output.event_type} no longer holds after {what}: {p.reason}",
        ),
    )


# ---------------------------------------------------------------------------------------------
# The scratch store: every ledger's events and states, in a temporary file of the process
# ---------------------------------------------------------------------------------------------

STATES_IN_MEMORY = 256  # states last used or made, kept unpickled (written out when dropped)
FLUSH_ROWS = 512  # rows written together, in one transaction
_numbers = count(1)  # lineage ids; not reset in a forked child, so never reused there


class _Lineage(int):
    """The id under which a ledger and its clones store their events. When the last of them
    is gone, its rows are deleted (at the store's next use)."""

    __slots__ = ()

    def __del__(self) -> None:
        try:
            store = _store
        except NameError:  # the interpreter is shutting down
            return
        if store is not None:
            store.dead.append(int(self))  # only appended: this may run inside a store call


# A state in memory, by the row of the last event it follows: (lineage, state, context index,
# stored or not to be: a state another followed is not written out).
_Cached = tuple[int, PatientState | None, int, bool]


class _Store:
    """A temporary SQLite database (deleted when closed, so with the process). Each event
    applied is a row pointing back at the row of the event before it in that ledger, so clones
    share their common past and never overwrite each other. Per lineage, the latest state written
    out (pickled) with the row it follows; the states last used or made stay in memory. Rows are
    written a few hundred at a time, in one transaction, and read from memory until then."""

    def __init__(self) -> None:
        self.first = next(_numbers)  # lineages numbered below belong to another process
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # A scratch copy of what the log holds: durability would only cost time.
        for pragma in ("journal_mode = MEMORY", "synchronous = OFF", "locking_mode = EXCLUSIVE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("PRAGMA cache_size = -4096")  # KiB: SQLite's page cache stays small
        self.db.execute(
            "CREATE TABLE events (row INTEGER PRIMARY KEY, lineage INTEGER NOT NULL,"
            " prev INTEGER NOT NULL, id BLOB NOT NULL, raw BLOB NOT NULL)"
        )
        self.db.execute("CREATE INDEX events_of_lineage ON events (lineage)")
        self.db.execute(
            "CREATE TABLE states (lineage INTEGER PRIMARY KEY, tail INTEGER NOT NULL,"
            " context INTEGER NOT NULL, state BLOB NOT NULL)"
        )
        self.lock = threading.Lock()
        self.rows = count(1)
        self.pending: dict[int, tuple[int, int, bytes, bytes]] = {}  # row -> (lineage, prev, ...)
        self.pending_states: dict[int, tuple[int, int, bytes]] = {}  # lineage -> (tail, ...)
        self.cache: OrderedDict[int, _Cached] = OrderedDict()
        self.dead: list[int] = []
        # The protocols and range tables ledgers were recorded with (a process has one or two).
        self.contexts: list[Context] = []

    def add(
        self,
        lineage: int,
        prev: int,
        event_id: UUID,
        raw: bytes,
        state: PatientState | None,
        context: Context,
    ) -> int:
        """An event stored after row `prev` of `lineage`, with the state after it; its row."""
        lineage = int(lineage)  # not the _Lineage: what is stored must not keep it alive
        with self._using(lineage):
            row = next(self.rows)
            self.pending[row] = (lineage, prev, event_id.bytes, raw)
            cache = self.cache
            before = cache.get(prev)
            if before is not None and before[0] == lineage and not before[3]:
                # Followed now: need not be written out (if wanted again, it is replayed).
                cache[prev] = (lineage, before[1], before[2], True)
            cache[row] = (lineage, state, self._context(context), False)
            if len(cache) > STATES_IN_MEMORY:
                self._trim()
            if len(self.pending) >= FLUSH_ROWS:
                self._flush()
            return row

    def state(self, lineage: int, tail: int) -> tuple[bool, PatientState | None]:
        """(stored, the state after the event of row `tail`): not stored when a later state of
        the lineage was written out over it."""
        lineage = int(lineage)
        with self._using(lineage):
            cached = self.cache.get(tail)
            if cached is not None:
                self.cache.move_to_end(tail)
                return True, cached[1]
            found = (
                self.pending_states.get(lineage)
                or self.db.execute(
                    "SELECT tail, context, state FROM states WHERE lineage = ?", (lineage,)
                ).fetchone()
            )
            if found is None or found[0] != tail:
                return False, None
            state = pickle.loads(found[2])
            self.cache[tail] = (lineage, state, found[1], True)
            self._trim()
            return True, state

    def context(self, lineage: int) -> Context:
        """The protocol and ranges the lineage's latest state came from."""
        with self._using(lineage):
            index = next((c[2] for c in reversed(self.cache.values()) if c[0] == lineage), None)
            if index is None:
                found = (
                    self.pending_states.get(lineage)
                    or self.db.execute(
                        "SELECT tail, context FROM states WHERE lineage = ?", (lineage,)
                    ).fetchone()
                )
                if found is None:
                    raise LookupError(f"no state stored for lineage {lineage}")
                index = found[1]
            return self.contexts[index]

    def chain(self, lineage: int, tail: int) -> list[tuple[bytes, bytes]]:
        """(event id, encoded event) of the events up to row `tail`, in the order applied."""
        with self._using(lineage):
            out = []
            row = tail
            while row:
                item = (
                    self.pending.get(row)
                    or self.db.execute(
                        "SELECT lineage, prev, id, raw FROM events WHERE row = ?", (row,)
                    ).fetchone()
                )
                if item is None:
                    raise LookupError(f"no stored event at row {row} of lineage {lineage}")
                out.append((item[2], item[3]))
                row = item[1]
            out.reverse()
            return out

    # under the lock -----------------------------------------------------------------------

    @contextmanager
    def _using(self, lineage: int) -> Iterator[None]:
        with self.lock:
            if lineage < self.first:
                raise RuntimeError("a subject ledger is used only in the process that recorded it")
            try:
                if self.dead:
                    self._sweep()
                yield
            except sqlite3.OperationalError as error:
                # A full or failing disk: a condition that passes (the consumer retries).
                raise OSError(f"the subject ledgers' scratch store: {error}") from error

    def _context(self, context: Context) -> int:
        last = self.contexts[-1] if self.contexts else None
        if last is not None and last[0] is context[0] and last[1] is context[1]:
            return len(self.contexts) - 1
        for index, (protocol, ranges) in enumerate(self.contexts):
            if protocol is context[0] and ranges is context[1]:
                return index
        self.contexts.append(context)
        return len(self.contexts) - 1

    def _trim(self) -> None:
        while len(self.cache) > STATES_IN_MEMORY:
            tail, (lineage, state, context, stored) = self.cache.popitem(last=False)
            if not stored:
                blob = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
                self.pending_states[lineage] = (tail, context, blob)

    def _flush(self) -> None:
        if not self.pending and not self.pending_states:
            return
        try:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                [(row, *item) for row, item in self.pending.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?)",
                [(lineage, *item) for lineage, item in self.pending_states.items()],
            )
            self.db.execute("COMMIT")
        except sqlite3.Error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")  # what is pending stays pending, for the next try
            raise
        self.pending.clear()
        self.pending_states.clear()

    def _sweep(self) -> None:
        """Delete what lineages no ledger holds any more stored."""
        if not self.dead:
            return
        gone = set()
        while self.dead:  # popped one by one: another thread may be appending
            lineage = self.dead.pop()
            if lineage >= self.first:
                gone.add(lineage)
        if not gone:
            return
        self._flush()
        for tail in [tail for tail, cached in self.cache.items() if cached[0] in gone]:
            del self.cache[tail]
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM events WHERE lineage = ?", [(g,) for g in gone])
        self.db.executemany("DELETE FROM states WHERE lineage = ?", [(g,) for g in gone])
        self.db.execute("COMMIT")


_store: _Store | None = None
_inherited: list[_Store] = []  # a parent's store in a forked child: never used, never closed
_opening = threading.Lock()


def _the_store() -> _Store:
    global _store
    if _store is None:
        with _opening:
            if _store is None:
                _store = _Store()
    return _store


def _forked() -> None:
    """In a forked child the parent's store (its open file) stays the parent's."""
    global _store
    if _store is not None:
        _inherited.append(_store)
    _store = None


os.register_at_fork(after_in_child=_forked)
