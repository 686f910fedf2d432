"""The Kafka broker, then PostgreSQL, stopped mid-stream and started again. Ingest answers 503
while the broker is away and the clients resend; the consumers retry the same message until their
dependency is back. The broker is one of the test's own (see harness.broker_to_stop;
FAULT_KAFKA=shared stops the shared one); PostgreSQL is the shared local server, down a few
seconds at a time and always started again, whatever happens."""

import asyncio
import time

import pytest

from tests.faults.harness import (
    at_times,
    broker_to_stop,
    fault_times,
    finish,
    infra,
    posting,
    restarted_in_the_end,
    scenario,
    stream_seconds,
)

pytestmark = pytest.mark.e2e
MAX_DOWNTIME_S = 20.0


async def test_kafka_broker_stopped_and_started(kafka_bootstrap: str, postgres_url: str) -> None:
    async with (
        broker_to_stop(kafka_bootstrap) as (bootstrap, kafka_env),
        scenario("kafka-outage", bootstrap, postgres_url) as run,
    ):
        outages = max(1, run.profile.faults // 2)
        downtimes = []
        async with posting(run) as clients, restarted_in_the_end("kafka", kafka_env):
            duration = stream_seconds(run)
            times = fault_times(run, outages, 0.2 * duration, 0.8 * duration, spacing=15)
            async for _ in at_times(times):
                stopped = time.monotonic()
                stopping = await infra("kafka", "stop", kafka_env)
                run.fault(f"Kafka broker stopped (took {stopping:.1f} s)")
                await asyncio.sleep(run.rng.uniform(1, 5))
                starting = await infra("kafka", "start", kafka_env)
                downtimes.append(round(time.monotonic() - stopped, 1))
                print(f"Kafka back after {downtimes[-1]:.1f} s (start took {starting:.1f} s)")
        await finish(run, clients, kafka_downtime_s=downtimes)
        if not kafka_env:  # the shared broker: others were waiting
            assert max(downtimes) < MAX_DOWNTIME_S, f"the shared broker was down {downtimes} s"


async def test_postgres_stopped_and_started(kafka_bootstrap: str, postgres_url: str) -> None:
    async with scenario("postgres-outage", kafka_bootstrap, postgres_url) as run:
        downtimes = []
        async with posting(run) as clients, restarted_in_the_end("postgres"):
            duration = stream_seconds(run)
            times = fault_times(run, run.profile.faults, 0.1 * duration, 0.8 * duration, spacing=8)
            async for _ in at_times(times):
                stopped = time.monotonic()
                stopping = await infra("postgres", "stop")
                run.fault(f"PostgreSQL stopped (took {stopping:.1f} s)")
                await asyncio.sleep(run.rng.uniform(1, 6))
                await infra("postgres", "start")
                downtimes.append(round(time.monotonic() - stopped, 1))
                print(f"PostgreSQL back after {downtimes[-1]:.1f} s")
        await finish(run, clients, postgres_downtime_s=downtimes)
        assert max(downtimes) < MAX_DOWNTIME_S
