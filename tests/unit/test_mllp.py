"""MLLP framing, and the listener and client over a real socket on 127.0.0.1."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.ingest.interop.mllp import (
    END,
    START,
    FrameDecoder,
    FrameError,
    frame,
    send_mllp,
    serve_mllp,
)

MESSAGE = b"MSH|^~\\&|LIS|GZ01-LIS|||20250414||ORU^R01|M1|P|2.5.1\rPID|1||GZ0700037"


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


def test_a_frame_is_the_message_between_the_start_and_end_blocks() -> None:
    assert frame(MESSAGE) == b"\x0b" + MESSAGE + b"\x1c\x0d"
    assert FrameDecoder().feed(frame(MESSAGE)) == [MESSAGE]


def test_several_messages_in_one_read_are_all_returned_in_order() -> None:
    data = frame(b"one") + frame(b"two") + frame(b"three")
    assert FrameDecoder().feed(data) == [b"one", b"two", b"three"]


def test_a_message_split_across_reads_is_returned_when_complete() -> None:
    decoder = FrameDecoder()
    data = frame(MESSAGE) + frame(b"next")[:3]
    received = [
        message for byte in range(len(data)) for message in decoder.feed(data[byte : byte + 1])
    ]
    assert received == [MESSAGE]
    assert decoder.feed(frame(b"next")[3:]) == [b"next"]


def test_an_end_block_split_across_reads_ends_the_message() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(START + b"abc" + END[:1]) == []
    assert decoder.feed(END[1:]) == [b"abc"]


def test_a_lone_file_separator_inside_a_message_does_not_end_it() -> None:
    assert FrameDecoder().feed(frame(b"a\x1cb")) == [b"a\x1cb"]


def test_bytes_before_a_start_block_are_ignored() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"garbage\r\n" + frame(b"one") + b"noise") == [b"one"]
    assert decoder.feed(frame(b"two")) == [b"two"]


def test_garbage_alone_is_dropped_and_not_kept_in_memory() -> None:
    decoder = FrameDecoder(max_message_bytes=10)
    for _ in range(100):
        assert decoder.feed(b"x" * 100) == []
    assert decoder.feed(frame(b"ok")) == [b"ok"]


def test_a_frame_restarted_before_its_end_keeps_the_restarted_message() -> None:
    assert FrameDecoder().feed(START + b"cut short" + frame(b"whole")) == [b"whole"]


def test_a_message_over_the_limit_is_an_error_even_before_it_ends() -> None:
    decoder = FrameDecoder(max_message_bytes=8)
    assert decoder.feed(frame(b"12345678")) == [b"12345678"]
    with pytest.raises(FrameError, match="exceeds 8 bytes"):
        decoder.feed(START + b"123456789")
    with pytest.raises(FrameError):
        FrameDecoder(max_message_bytes=8).feed(frame(b"123456789"))


def test_the_default_limit_is_one_mebibyte() -> None:
    assert FrameDecoder().feed(frame(b"x" * (1 << 20))) == [b"x" * (1 << 20)]
    with pytest.raises(FrameError):
        FrameDecoder().feed(START + b"x" * ((1 << 20) + 1))


# ---------------------------------------------------------------------------------------------
# Server and client
# ---------------------------------------------------------------------------------------------


async def acknowledge(message: bytes) -> bytes:
    return b"MSA|AA|" + message.split(b"|")[-1]


@pytest.fixture
async def listener() -> AsyncIterator[
    Callable[[Callable[[bytes], Awaitable[bytes]]], Awaitable[int]]
]:
    servers: list[asyncio.Server] = []

    async def start(handler: Callable[[bytes], Awaitable[bytes]]) -> int:
        server = await serve_mllp(handler, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    decoder, messages = FrameDecoder(), []
    while len(messages) < count:
        data = await asyncio.wait_for(reader.read(4096), 5)
        if not data:
            break
        messages += decoder.feed(data)
    return messages


async def test_the_client_gets_the_handlers_reply(listener) -> None:
    port = await listener(acknowledge)
    assert await send_mllp("127.0.0.1", port, b"MSH|M1", timeout=5) == b"MSA|AA|M1"


async def test_two_messages_on_one_connection_are_answered_in_order(listener) -> None:
    async def slow_first(message: bytes) -> bytes:
        if message.endswith(b"M1"):
            await asyncio.sleep(0.05)  # the second must still be answered after the first
        return await acknowledge(message)

    port = await listener(slow_first)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"MSH|M1") + frame(b"MSH|M2"))
    await writer.drain()
    assert await read_frames(reader, 2) == [b"MSA|AA|M1", b"MSA|AA|M2"]
    writer.close()
    await writer.wait_closed()


async def test_a_handler_that_raises_closes_that_connection_without_a_reply(
    listener, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(message: bytes) -> bytes:
        if b"BOOM" in message:
            raise RuntimeError("handler failed")
        return await acknowledge(message)

    port = await listener(failing)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(b"MSH|BOOM") + frame(b"MSH|M2"))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing written
    writer.close()
    assert "HL7 handler failed" in caplog.text and "BOOM" not in caplog.text
    assert await send_mllp("127.0.0.1", port, b"MSH|M3", timeout=5) == b"MSA|AA|M3"


async def test_a_peer_that_closes_mid_message_does_not_disturb_the_server(listener) -> None:
    port = await listener(acknowledge)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(START + b"MSH|half a mess")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert await send_mllp("127.0.0.1", port, b"MSH|M4", timeout=5) == b"MSA|AA|M4"


async def test_an_oversize_message_closes_the_connection(listener) -> None:
    port = await listener(acknowledge)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(START + b"x" * ((1 << 20) + 10))
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionError:  # the server may close while we are still writing
        closed = True
    assert closed
    writer.close()


async def test_the_client_times_out_when_no_reply_comes(listener) -> None:
    release = asyncio.Event()

    async def stalled(message: bytes) -> bytes:
        await release.wait()
        return b"late"

    port = await listener(stalled)
    with pytest.raises(TimeoutError):
        await send_mllp("127.0.0.1", port, b"MSH|M5", timeout=0.2)
    release.set()


async def test_the_client_reports_a_connection_closed_without_reply(listener) -> None:
    async def failing(message: bytes) -> bytes:
        raise RuntimeError("no")

    port = await listener(failing)
    with pytest.raises(ConnectionError, match="without a reply"):
        await send_mllp("127.0.0.1", port, b"MSH|M6", timeout=5)
