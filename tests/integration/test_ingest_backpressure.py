"""Back-pressure: with Kafka unreachable, ingest still starts, says so on /health (503), answers
every submission 503 with Retry-After at once (it does not hold the sender, nor accept what it
cannot make durable), and recovers by itself when Kafka answers. The shared broker is never
stopped: "unreachable" is a local port nothing listens on, and "back" is a TCP relay opened on
that port to the real broker."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
import pytest

from services.common.net import free_port
from services.ingest.app import create_app
from services.ingest.interop.routes import HL7_MEDIA_TYPE
from shared.settings import Settings
from tests.support import INGEST_AUTH, eventually, running

pytestmark = pytest.mark.integration
PROMPT_S = 15.0  # generous: the refusal takes milliseconds (printed), the old deadline was 30 s

LAB = {
    "subject_id": "GZ01-005",
    "site_id": "GZ01",
    "test": "ANC",
    "value": 0.9,
    "unit": "10^9/L",
    "collected_at": "2026-11-20T07:30:00+08:00",
    "visit": {"cycle": 2, "day": 1},
    "source_message_id": "backpressure-1",
}
ORU = "\r".join(
    [
        "MSH|^~\\&|LIS|GZ01-LIS|SAFETYMON|NCT05173246|202611200815+0800||ORU^R01|BP1|P|2.5.1",
        "PID|1||GZ0700185^^^GZH^MR",
        "OBR|1|P-BP1|F-BP1|57021-8^CBC^LN|||202611200730+0800",
        "OBX|1|NM|751-8^Neutrophils^LN||0.9|10*9/L|1.8-6.3|L|||F|||202611200730+0800",
    ]
).encode()


def on(settings: Settings, bootstrap: str) -> Settings:
    """The test's settings on another bootstrap address (and an MLLP port of its own)."""
    return settings.model_copy(
        update={"kafka_bootstrap_servers": bootstrap, "mllp_port": free_port()}
    )


@asynccontextmanager
async def relay(port: int, target: str) -> AsyncIterator[None]:
    """A TCP relay from 127.0.0.1:`port` to `target` (host:port) while the block runs."""
    host, target_port = target.rsplit(":", 1)
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        writers.extend((writer, upstream_writer))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def timed_post(client: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    started = time.monotonic()
    response = await client.post(path, headers=INGEST_AUTH | kwargs.pop("headers", {}), **kwargs)
    print(f"\n{path}: HTTP {response.status_code} in {time.monotonic() - started:.3f} s")
    return response


async def test_without_kafka_ingest_starts_and_answers_503_with_retry_after_promptly(
    settings: Settings,
) -> None:
    started = time.monotonic()
    async with running(create_app(on(settings, f"127.0.0.1:{free_port()}"))) as client:
        print(f"\nstarted without Kafka in {time.monotonic() - started:.3f} s")
        assert time.monotonic() - started < PROMPT_S
        assert (await client.get("/live")).status_code == 200
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["checks"] == {"kafka": False}

        json_lab = await timed_post(client, "/v1/labs", json=LAB)
        hl7_message = await timed_post(
            client, "/v1/hl7", content=ORU, headers={"content-type": HL7_MEDIA_TYPE}
        )
        refused = await timed_post(client, "/v1/labs", json=LAB | {"unit": "mg/dL"})
        unauthenticated = await client.post("/v1/labs", json=LAB)

    assert json_lab.status_code == 503
    assert json_lab.headers["Retry-After"] == "5"
    assert "retry the same request" in json_lab.json()["detail"]
    assert json_lab.elapsed.total_seconds() < PROMPT_S
    assert hl7_message.status_code == 503 and hl7_message.headers["Retry-After"] == "5"
    assert "|AE|" in hl7_message.text  # the ACK: resend
    assert refused.status_code == 422  # what can be checked without Kafka still is
    assert unauthenticated.status_code == 401

    # Another ingest on the real broker takes the same request.
    async with running(create_app(settings), INGEST_AUTH) as client:
        assert (await client.post("/v1/labs", json=LAB)).status_code == 202


async def test_ingest_recovers_by_itself_when_kafka_answers(settings: Settings) -> None:
    port = free_port()
    async with running(create_app(on(settings, f"127.0.0.1:{port}")), INGEST_AUTH) as client:
        assert (await client.post("/v1/labs", json=LAB)).status_code == 503
        async with relay(port, settings.kafka_bootstrap_servers):
            back = time.monotonic()

            async def accepted() -> bool:
                return (await client.post("/v1/labs", json=LAB)).status_code == 202

            assert await eventually(accepted, 30.0), "ingest did not reconnect within 30 s"
            print(f"\naccepting {time.monotonic() - back:.1f} s after Kafka answered")
            assert (await client.get("/health")).status_code == 200
