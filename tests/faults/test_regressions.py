"""Regressions of what the fault tests found, each small enough to run on every change.

1. PostgreSQL stopped mid-stream: the consumers saw "the database system is shutting down" and "is
starting up" (SQLSTATE 57P03), which SQLAlchemy's asyncpg dialect raises as a plain DBAPIError,
not as the OperationalError the consumer treated as transient. Each counted as a defect of the
message; the fifth sent it to the dead letters: an alert never stored, or a read-model row
missing, because the database restarted at the wrong moment.

2. The database going away while the alert service sends an email: the notification was claimed
("sending"), reading the alert (or recording the outcome) failed, and so did recording the
failure. The message was retried once the database was back, found nothing pending (the claim
still said "sending") and was committed: the email was never sent, until the service restarted.

3. Ingest answered 503 to a request whose records Kafka wrote
anyway, or was killed between Kafka's ack and its answer; the client resent, so the same event
sits twice in the clinical-events topic (the Kafka outage scenario saw over a hundred). The
grader records it twice; a later correction of that result leaves the duplicate standing, so the
alert it raised was never retracted (and the dose hold stayed). The ledger now applies an
event id once.
"""

import asyncio

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, OperationalError

from services.alerts.app import create_app
from services.alerts.store import AlertStore
from services.common import consumer
from services.common.consumer import subscribe, unreachable
from services.ctcae_grader.domain import assess
from services.ctcae_grader.ledger import SubjectLedger
from services.demo.smtp_sink import SmtpSink
from services.ingest.domain import LabCorrectionIn, lab_correction_event
from shared.events import AlertRaised, Envelope, EventRetracted
from shared.kafka import broker_running, make_broker
from shared.protocol import study_protocol
from shared.settings import Settings
from shared.topics import ALERTS, CLINICAL_EVENTS, DEAD_LETTERS
from tests.support import PHYSICIAN, eventually, produce_events, read_topic, running
from tests.unit.factories import enrolment, lab, lab_request

DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def as_sqlalchemy_raises_it(error: asyncpg.PostgresError) -> DBAPIError:
    """The exception SQLAlchemy's asyncpg dialect raises for `error` (its translation table)."""
    for kind in type(error).__mro__:
        if kind in DBAPI._asyncpg_error_translate:
            adapted = DBAPI._asyncpg_error_translate[kind](error.args[0], error)
            return DBAPIError.instance("SELECT 1", (), adapted, DBAPI.Error)
    raise AssertionError(f"no translation of {type(error)}")


SHUTTING_DOWN = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
STARTING_UP = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
TERMINATED = asyncpg.exceptions.AdminShutdownError(
    "terminating connection due to administrator command"
)
TOO_MANY = asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")
CONNECTION_FAILURE = asyncpg.exceptions.ConnectionFailureError("connection failure")


@pytest.mark.parametrize(
    "error", [SHUTTING_DOWN, STARTING_UP, TERMINATED, TOO_MANY, CONNECTION_FAILURE]
)
def test_postgres_shutting_down_or_starting_up_is_a_dependency_out_of_reach(
    error: asyncpg.PostgresError,
) -> None:
    raised = as_sqlalchemy_raises_it(error)
    assert type(raised) is DBAPIError  # not OperationalError: why it was missed
    assert unreachable(raised)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.DivisionByZeroError("division by zero"),
        asyncpg.exceptions.UndefinedColumnError('column "x" does not exist'),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    ],
)
def test_an_error_of_the_statement_is_still_a_defect(error: asyncpg.PostgresError) -> None:
    assert not unreachable(as_sqlalchemy_raises_it(error))


@pytest.mark.integration
async def test_a_message_outlasts_a_database_restart_instead_of_going_to_the_dead_letters(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More failures than MAX_FAILURES while the database restarts: the message is handled
    once it is back, and nothing is dead-lettered."""
    monkeypatch.setattr(consumer, "RETRY_PAUSE_S", 0.02)
    outage = [SHUTTING_DOWN] * 3 + [STARTING_UP] * (consumer.MAX_FAILURES + 1)
    handled: list[Envelope] = []

    async def handle(event: Envelope) -> None:
        if outage:
            raise as_sqlalchemy_raises_it(outage.pop(0))
        handled.append(event)

    broker = make_broker(settings, client_id="faults-regression")
    subscribe(broker, settings, "faults-regression", settings.topic(CLINICAL_EVENTS), handle)
    async with broker_running(settings, broker):
        await produce_events(
            settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS), [lab("ANC", 0.9)]
        )
        assert await eventually(lambda: handled, 30.0), f"never handled; {len(outage)} left"
        await asyncio.sleep(0.5)
    dead = await read_topic(
        settings.kafka_bootstrap_servers, settings.topic(DEAD_LETTERS), lambda r: False, 2.0
    )
    assert dead == [] and len(handled) == 1


def database_gone() -> OperationalError:
    return OperationalError("SELECT", {}, ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.integration
@pytest.mark.parametrize("failing", [("get", "mark_notification"), ("mark_notification",)])
async def test_an_email_claimed_as_the_database_went_away_is_sent_once_it_is_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failing: tuple[str, ...]
) -> None:
    """The database gone right after the email was claimed. ("get", "mark_notification"):
    reading the alert fails, then recording the failure: the email was never sent.
    ("mark_notification",): the email is sent, recording it fails: it stayed "sending" (sent
    again at the next restart) and the alert never became "notified"."""
    sink = SmtpSink()
    sink.start()
    settings = settings.model_copy(
        update={
            "smtp_port": sink.port,
            "alert_email_recipients": ["desk@example.org"],
            "notification_retry_s": 0.3,
            "smtp_timeout_s": 0.5,
            "webhook_timeout_s": 0.5,
        }
    )
    alert = assess(lab("ANC", 0.7, source_message_id=f"db-gone-{len(failing)}")).alerts[0]
    outage = dict.fromkeys(failing, 1)  # each fails once, in the delivery, then works again
    for name in failing:
        real = getattr(AlertStore, name)

        async def flaky(self, *args, _name=name, _real=real, **kwargs):
            if outage[_name] and (_name != "get" or outage.get("claimed")):
                outage[_name] -= 1
                raise database_gone()
            return await _real(self, *args, **kwargs)

        monkeypatch.setattr(AlertStore, name, flaky)
    real_claim = AlertStore.claim

    async def claim(self, note, *args, **kwargs):
        claimed = await real_claim(self, note, *args, **kwargs)
        outage["claimed"] = outage.get("claimed", 0) + claimed
        return claimed

    monkeypatch.setattr(AlertStore, "claim", claim)
    mine = lambda: [  # noqa: E731
        m for m in sink.messages if m["X-Safetymon-Alert-Id"] == str(alert.payload.alert_id)
    ]
    try:
        async with running(create_app(settings), PHYSICIAN) as client:
            await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), [alert])
            assert await eventually(mine, 15.0), "the email was never sent"

            async def recorded() -> dict | None:
                detail = await client.get(f"/v1/alerts/{alert.payload.alert_id}")
                return detail.json() if detail.status_code == 200 else None

            async def notified() -> dict | None:
                found = await recorded()
                return found if found and found["status"] == "notified" else None

            detail = await eventually(notified, 15.0) or await recorded()
    finally:
        sink.stop()
    assert not any(outage[name] for name in failing), "the outage was not met"
    assert detail and detail["status"] == "notified"
    assert [n["status"] for n in detail["notifications"]] == ["sent"]
    assert len(mine()) == 1


def test_a_resent_result_then_corrected_retracts_its_alert() -> None:
    protocol = study_protocol("NCT05173246")
    ledger = SubjectLedger()
    ledger.record(protocol, enrolment(), None)
    anc = lab("ANC", 0.9)  # day 1: D1-ANC-HOLD, alerted
    (alert,) = ledger.record(protocol, anc, None).alerts
    ledger.record(protocol, anc.model_copy(), None)  # the resend: same event id
    correction = lab_correction_event(
        LabCorrectionIn(
            subject_id=anc.subject_id,
            site_id=anc.site_id,
            corrected_event_id=anc.event_id,
            reason="transcription error",
            corrected=lab_request("ANC", 2.4),
            source_message_id="anc-fix",
        ),
        anc.study_id,
    )
    retracted = ledger.record(protocol, correction, None).alerts
    assert isinstance(alert, AlertRaised)
    assert [r.payload.retracted_event_id for r in retracted if isinstance(r, EventRetracted)] == [
        alert.event_id
    ]
