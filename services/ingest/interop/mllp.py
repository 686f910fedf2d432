"""MLLP, HL7 v2's framing over TCP: <VT> message <FS><CR>. Pure framing, plus an asyncio
server (one reply per message, in order) and a client."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

START = b"\x0b"
END = b"\x1c\x0d"
MAX_MESSAGE_BYTES = 1 << 20  # a lab result message is kilobytes; more is a broken peer
READ_BYTES = 64 * 1024

log = logging.getLogger(__name__)
Handler = Callable[[bytes], Awaitable[bytes]]


class FrameError(ValueError):
    """The peer's byte stream cannot be framed (a message over the size limit)."""


def frame(message: bytes) -> bytes:
    return START + message + END


class FrameDecoder:
    """Fed the bytes of a connection as they arrive; returns the messages they complete.
    Bytes outside a frame are dropped; a frame restarted before its end keeps the restart."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._limit = max_message_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while (message := self._next()) is not None:
            messages.append(message)
        return messages

    def _next(self) -> bytes | None:
        start = self._buffer.find(START)
        if start < 0:
            self._buffer.clear()  # garbage: nothing in it can start a frame
            return None
        del self._buffer[:start]
        end = self._buffer.find(END)
        if end < 0:
            self._check_size(len(self._buffer) - 1)
            return None
        message = bytes(self._buffer[1:end])
        del self._buffer[: end + len(END)]
        message = message[message.rfind(START) + 1 :]  # an unfinished frame before a restart
        self._check_size(len(message))
        return message

    def _check_size(self, size: int) -> None:
        if size > self._limit:
            self._buffer.clear()
            raise FrameError(f"an MLLP message exceeds {self._limit} bytes")


async def _serve_connection(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int
) -> None:
    decoder = FrameDecoder(limit)
    while data := await reader.read(READ_BYTES):
        for message in decoder.feed(data):
            try:
                reply = await handler(message)
            except Exception:
                # No reply: the sender resends after its timeout, which is right for a failure
                # we could not acknowledge. The message itself is not logged (patient data).
                log.exception("HL7 handler failed: closing the MLLP connection without a reply")
                return
            writer.write(frame(reply))
            await writer.drain()


async def serve_mllp(
    handler: Handler, host: str, port: int, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> asyncio.Server:
    """An MLLP listener: every message of a connection gets `handler`'s reply, in order."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            await _serve_connection(handler, reader, writer, max_message_bytes)
        except FrameError as error:
            log.warning("MLLP peer %s: %s; closing the connection", peer, error)
        except ConnectionError as error:
            log.info("MLLP peer %s went away: %s", peer, error)
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(connection, host, port)


async def send_mllp(
    host: str,
    port: int,
    message: bytes,
    timeout: float = 10.0,  # noqa: ASYNC109 (callers pass a number: the CLI, tests)
) -> bytes:
    """Send one message and return the reply (TimeoutError, ConnectionError if none comes)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(frame(message))
            await writer.drain()
            decoder = FrameDecoder()
            while data := await reader.read(READ_BYTES):
                if replies := decoder.feed(data):
                    return replies[0]
            raise ConnectionError("the MLLP peer closed the connection without a reply")
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
