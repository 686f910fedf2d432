"""Ports for servers the demo and the tests start: free, never handed out twice, and outside
the range the kernel gives outgoing connections (which could take a port before its server
binds it)."""

import socket
from pathlib import Path

import pytest

from services.common import net
from services.common.net import SERVER_PORTS, free_port


def test_a_port_handed_out_can_be_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_ports_are_never_handed_out_twice_in_a_process() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_ports_lie_outside_the_kernels_range_for_outgoing_connections() -> None:
    setting = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not setting.exists():
        pytest.skip("not Linux")
    low, high = map(int, setting.read_text().split())
    assert SERVER_PORTS.stop <= low or SERVER_PORTS.start > high
    assert all(not low <= free_port() <= high for _ in range(20))


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener, socket.socket() as spare:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        spare.bind(("127.0.0.1", 0))
        taken, free = listener.getsockname()[1], spare.getsockname()[1]
        spare.close()
        monkeypatch.setattr(net, "SERVER_PORTS", (taken,) * 99 + (free,))
        monkeypatch.setattr(net, "_handed_out", set())
        assert free_port() == free


def test_no_free_port_left_is_an_error_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        monkeypatch.setattr(net, "SERVER_PORTS", (taken,))
        with pytest.raises(OSError, match="no free port"):
            free_port()
