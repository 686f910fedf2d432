"""Alert emails go over kept-open SMTP connections (services/alerts/notify.py SmtpSender): one
connection for emails in a row, a new one when the server dropped the kept one or refused a
message, and a failure raised (so the delivery is recorded and retried) when no server answers."""

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from services.alerts.notify import SmtpSender
from services.common.net import free_port
from shared.settings import Settings


class Server:
    """An SMTP server noting the client connection (peer address) of each message received;
    it refuses recipients at refused.example.org."""

    def __init__(self, port: int) -> None:
        self.peers: list[tuple[str, int]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.running = False

    def start(self) -> None:
        self.controller.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list
    ) -> str:
        if address.endswith("@refused.example.org"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server(port: int) -> Iterator[Server]:
    running = Server(port)
    running.start()
    yield running
    running.stop()


def sender(port: int) -> SmtpSender:
    return SmtpSender(Settings(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT_S=2.0))


def email(to: str = "desk@example.org", n: int = 1) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "safetymon@localhost", to, f"alert {n}"
    message.set_content("an alert")
    return message


async def test_emails_in_a_row_go_over_one_connection(server: Server, port: int) -> None:
    mailer = sender(port)
    for n in range(3):
        await mailer.send(email(n=n))
    await mailer.close()
    assert len(server.peers) == 3
    assert len(set(server.peers)) == 1


async def test_a_connection_the_server_dropped_is_replaced_without_a_failure(
    server: Server, port: int
) -> None:
    mailer = sender(port)
    await mailer.send(email(n=1))
    server.stop()  # drops the kept connection, as a restarted mail server would
    again = Server(port)
    again.start()
    try:
        await mailer.send(email(n=2))
        await mailer.close()
    finally:
        again.stop()
    assert len(server.peers) == 1 and len(again.peers) == 1


async def test_a_refused_message_fails_and_the_next_one_goes_over_a_new_connection(
    server: Server, port: int
) -> None:
    mailer = sender(port)
    await mailer.send(email(n=1))
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await mailer.send(email("desk@refused.example.org", n=2))
    await mailer.send(email(n=3))
    await mailer.close()
    assert len(server.peers) == 2
    assert server.peers[0] != server.peers[1]  # the refused one's connection was not reused


async def test_no_server_is_a_failure_to_record_and_retry(port: int) -> None:
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await sender(port).send(email())
