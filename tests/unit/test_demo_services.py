"""The services as child processes (demo and end-to-end tests): one that cannot start is
reported with the end of its log, so a failed run's report says why (its log file is
overwritten by the next run)."""

from pathlib import Path

import pytest

from services.demo.processes import Services, service_environment


async def test_a_service_that_exits_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    env = service_environment(
        bootstrap="127.0.0.1:9",
        database_url="sqlite+aiosqlite:///unused.db",
        namespace="unused.",
        smtp_port=25,
        LOG_FORMAT="neither-json-nor-text",
    )
    services = Services(env, tmp_path)
    services.start()
    try:
        with pytest.raises(RuntimeError) as raised:
            await services.wait_healthy(timeout_s=60)
    finally:
        services.stop()
    message = str(raised.value)
    assert "exited at start-up" in message
    assert str(tmp_path) in message
    assert "LOG_FORMAT" in message or "log_format" in message
