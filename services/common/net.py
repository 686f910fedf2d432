"""Small network helpers for the demo and the tests."""

import random
import socket
from collections.abc import Sequence

# Servers started later are given ports from below the range Linux takes the local ports of
# outgoing connections from (32768-60999 by default): a port from that range can go to an
# outgoing connection between this choice and the server's bind ("address already in use").
# The project's own servers listen above these (Kafka 19092, PostgreSQL 15432; CI's 29092, 25432).
SERVER_PORTS: Sequence[int] = range(10000, 15000)
_ATTEMPTS = 200
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that no earlier call in
    this process returned (two servers started together never get the same one)."""
    candidates = random.sample(SERVER_PORTS, min(len(SERVER_PORTS), _ATTEMPTS))
    for port in candidates:
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise OSError(f"no free port in {SERVER_PORTS!r}: {len(candidates)} tried")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
