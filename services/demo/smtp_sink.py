"""A local SMTP server that keeps what it receives: the mail server of the demo and the tests."""

from email import message_from_bytes
from email.message import Message

from aiosmtpd.controller import Controller

from services.common.net import free_port


class _Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._collector = _Collector()
        self._controller = Controller(self._collector, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self._collector.messages

    @property
    def count(self) -> int:
        return len(self._collector.messages)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
