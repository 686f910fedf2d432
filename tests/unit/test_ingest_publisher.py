"""The publisher every ingest format goes through: the sender's sites, the sender's system as
the source of a JSON request that names none, and back-pressure (a deadline on the broker's
acknowledgement, an immediate refusal while Kafka is known to be down). The broker is a stand-in
here: tests/integration/test_ingest_backpressure.py runs the real one."""

import asyncio
import time
from typing import Any

import pytest

from services.ingest.publisher import FORBIDDEN, BrokerLink, EventLogUnavailable, Publisher
from services.ingest.senders import EVERY_SITE, Sender
from tests.unit.factories import STUDY, lab_request

EDC = Sender("edc", frozenset({EVERY_SITE}))
LIS_GZ01 = Sender("lis-gz01", frozenset({"GZ01"}))


class Broker:
    """A stand-in for FastStream's KafkaBroker: acknowledges at once, or never."""

    def __init__(self, acknowledges: bool = True) -> None:
        self.acknowledges = acknowledges
        self.published: list[bytes] = []

    async def publish(self, message: bytes, **_: Any) -> asyncio.Future:
        self.published.append(message)
        acknowledgement = asyncio.get_running_loop().create_future()
        if self.acknowledges:
            acknowledgement.set_result(None)
        return acknowledgement


def publisher(broker: Broker, link: BrokerLink | None = None, timeout_s: float = 5.0) -> Publisher:
    return Publisher(
        broker,  # type: ignore[arg-type]
        "clinical",
        STUDY,
        regimen=set(),
        sites={"GZ01", "SH02"},
        link=link or BrokerLink(),
        timeout_s=timeout_s,
    )


# -- sites and source ------------------------------------------------------------------------


def test_an_event_of_another_site_is_refused_as_forbidden() -> None:
    request = lab_request(site_id="SH02", subject_id="SH02-006")
    event, refusals = publisher(Broker()).events_of(request, LIS_GZ01)
    assert event is None
    assert [(r.location, r.kind) for r in refusals] == [(("site_id",), FORBIDDEN)]
    assert refusals[0].reason == "sender 'lis-gz01' may not submit for site SH02 (its sites: GZ01)"


def test_a_sender_of_every_site_and_one_of_its_own_site_are_let_through() -> None:
    for sender, site in ((EDC, "SH02"), (LIS_GZ01, "GZ01")):
        event, refusals = publisher(Broker()).events_of(lab_request(site_id=site), sender)
        assert refusals == [] and event is not None and event.site_id == site


def test_the_senders_system_is_the_source_when_the_request_names_none() -> None:
    event, _ = publisher(Broker()).events_of(lab_request(), LIS_GZ01)
    assert event is not None and event.source.system == "lis-gz01"
    named, _ = publisher(Broker()).events_of(lab_request(source_system="lis-legacy"), LIS_GZ01)
    assert named is not None and named.source.system == "lis-legacy"
    # The source is part of the id: the same content from two senders is two events.
    other, _ = publisher(Broker()).events_of(lab_request(), EDC)
    assert other is not None and other.event_id != event.event_id


# -- back-pressure ---------------------------------------------------------------------------


async def test_an_acknowledged_publish_returns() -> None:
    broker = Broker()
    event, _ = publisher(broker).events_of(lab_request(), EDC)
    assert event is not None
    await publisher(broker).publish([event], "/v1/labs")
    assert len(broker.published) == 1


async def test_no_acknowledgement_within_the_deadline_is_unavailable_and_marks_the_link_down() -> (
    None
):
    link = BrokerLink()
    slow = publisher(Broker(acknowledges=False), link, timeout_s=0.2)
    event, _ = slow.events_of(lab_request(), EDC)
    assert event is not None
    started = time.monotonic()
    with pytest.raises(EventLogUnavailable, match="retry the same request"):
        await slow.publish([event], "/v1/labs")
    assert 0.2 <= time.monotonic() - started < 2.0
    assert not link.up and "did not acknowledge within 0.2 s" in link.reason


async def test_while_the_link_is_down_a_publish_is_refused_at_once_without_the_broker() -> None:
    broker = Broker()
    link = BrokerLink(up=False, reason="not connected to Kafka")
    down = publisher(broker, link)
    event, _ = down.events_of(lab_request(), EDC)
    assert event is not None
    started = time.monotonic()
    with pytest.raises(EventLogUnavailable, match=r"\(not connected to Kafka\)"):
        await down.publish([event], "/v1/labs")
    assert time.monotonic() - started < 0.1
    assert broker.published == []
    link.restored()
    await down.publish([event], "/v1/labs")
    assert len(broker.published) == 1


# -- logging -------------------------------------------------------------------------------


async def test_an_accepted_request_is_one_log_line_naming_the_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event, _ = publisher(Broker()).events_of(lab_request(), EDC)
    assert event is not None
    with caplog.at_level("INFO", logger="services.ingest.publisher"):
        await publisher(Broker()).publish([event], "/v1/labs", EDC)
    mine = [r.getMessage() for r in caplog.records if r.name == "services.ingest.publisher"]
    assert mine == ["published 1 events of /v1/labs from edc"]


async def test_a_publish_past_the_deadline_is_logged_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every request in flight times out when the broker is slow: a traceback each would make
    an overloaded ingest slower still."""
    slow = publisher(Broker(acknowledges=False), timeout_s=0.1)
    event, _ = slow.events_of(lab_request(), EDC)
    assert event is not None
    with caplog.at_level("INFO", logger="services.ingest.publisher"):
        with pytest.raises(EventLogUnavailable):
            await slow.publish([event], "/v1/labs", EDC)
    mine = [r for r in caplog.records if r.name == "services.ingest.publisher"]
    assert mine and not any(r.exc_info for r in mine)
    assert "not acknowledged within 0.1 s" in mine[-1].getMessage()
