"""Graceful shutdown and rebalancing mid-stream.

SIGTERM to each service in turn while the stream flows: it finishes what it has in hand, commits
its offsets and exits 0 within a bound; once restarted, no consumer handles a message a second
time (the offsets were committed) and the guarantees hold. A second grader joining the group and
leaving it mid-stream: the partitions move and move back, and every expected alert is still
raised exactly once (the grader must rebuild the state of the subjects it is handed)."""

import asyncio
import re
import signal
import time
from collections import Counter

import pytest

from services.common.net import free_port
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS
from tests.faults.harness import (
    Run,
    at_times,
    fault_times,
    finish,
    posting,
    scenario,
    start_service,
    stream_seconds,
    topic_events,
    until_posted,
    wait_healthy,
)

pytestmark = pytest.mark.e2e
SHUTDOWN_BOUND_S = 25.0  # uvicorn drains requests for up to 20 s, FastStream messages for 15 s
CONSUMERS = {  # consumer (as it logs) -> its topic
    "grader": CLINICAL_EVENTS,
    "alerts": ALERTS,
    "dsmb-clinical": CLINICAL_EVENTS,
    "dsmb-assessments": ASSESSMENTS,
    "dsmb-alerts": ALERTS,
}


async def stop_gracefully(run: Run, name: str) -> tuple[int, float]:
    """SIGTERM, as an orchestrator sends it; the exit code and the seconds it took."""
    process = run.pipeline.services.processes[name]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(process.wait, 60)
    except Exception:
        process.kill()
        raise
    return code, time.monotonic() - started


def handled(run: Run) -> Counter:
    """Messages each consumer reports handled, over every log of the run."""
    counts: Counter = Counter()
    # One line per message ("alerts: handled AlertRaised"), or per batch ("grader: handled a
    # batch of 500 (500 staged)", the whole batch counted).
    pattern = re.compile(r"services\.common\.consumer: ([a-z-]+): handled (?:a batch of (\d+))?")
    for log in run.log_dir.glob("*.log"):
        for consumer, batch in pattern.findall(log.read_text(errors="replace")):
            counts[consumer] += int(batch) if batch else 1
    return counts


async def test_each_service_stops_gracefully_on_sigterm_mid_stream(
    kafka_bootstrap: str, postgres_url: str
) -> None:
    async with scenario("sigterm", kafka_bootstrap, postgres_url) as run:
        services = ["ingest", "grader", "alerts", "dsmb"]
        run.rng.shuffle(services)
        stops = {}
        async with posting(run) as clients:
            duration = stream_seconds(run)
            times = fault_times(run, len(services), 0.1 * duration, 0.8 * duration, spacing=2)
            async for i in at_times(times):
                service = services[i]
                code, took = await stop_gracefully(run, service)
                stops[service] = (code, round(took, 1))
                run.fault(f"{service} SIGTERM: exit {code} after {took:.1f} s")
                start_service(run, service)
        for service in services:
            await wait_healthy(run, service)
        await finish(run, clients, graceful_stops=stops)

        assert {s: code for s, (code, _) in stops.items()} == dict.fromkeys(stops, 0)
        assert max(took for _, took in stops.values()) < SHUTDOWN_BOUND_S, stops
        # Committed on the way out: no consumer handled any record twice.
        records = {}
        for consumer, topic in CONSUMERS.items():
            events, undecodable = await topic_events(run, topic)
            records[consumer] = len(events) + undecodable
        counts = handled(run)
        print(f"records per consumer's topic {records}; handled {dict(counts)}")
        assert {c: counts[c] for c in CONSUMERS} == records


async def test_a_second_grader_joins_and_leaves_mid_stream(
    kafka_bootstrap: str, postgres_url: str
) -> None:
    async with scenario("grader-rebalance", kafka_bootstrap, postgres_url) as run:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # slower than the other scenarios, so the stream still flows while the second grader
        # starts (several seconds), works and leaves
        async with posting(run, rate=run.profile.rate / 2) as clients:
            await until_posted(clients, 0.1)
            for i in range(run.profile.faults):
                if i % 2 == 0:
                    start_service(run, "grader", "grader-2", GRADER_PORT=str(port))
                    took = await wait_healthy(run, "grader-2", url)
                    run.fault(f"a second grader joined ({took:.1f} s to start)")
                else:
                    code, took = await stop_gracefully(run, "grader-2")
                    run.fault(f"the second grader left: exit {code} after {took:.1f} s")
                    assert code == 0
                await asyncio.sleep(run.rng.uniform(1, 4))
            posted_during = clients.posted_events
        await finish(run, clients)
        second = (run.log_dir / "grader-2.log").read_text(errors="replace")
        handled_by_second = second.count("grader: handled")
        print(
            f"the second grader handled {handled_by_second} messages; "
            f"{posted_during} of {run.expected.events} events posted by its last move"
        )
        assert handled_by_second, "the second grader was never given work"
