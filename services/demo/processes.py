"""The services as child processes, the way the demo and the end-to-end tests run them."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.common.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "grader", "alerts", "dsmb")
# The sending systems of local runs: the published throwaway tokens of the example file (the demo
# posts as its `edc`, which may send for every site).
EXAMPLE_SENDERS = REPO_ROOT / "deploy" / "senders.example.yaml"
EXAMPLE_EDC_TOKEN = "local-only-token-sender-edc-not-for-production"


def service_environment(
    *, bootstrap: str, database_url: str, namespace: str, smtp_port: int, **extra: str
) -> dict[str, str]:
    """What the services of one run share: the broker, the database, a topic namespace of
    their own, the SMTP server on this host and the example senders (whose tokens the demo and
    the tests present); `extra` adds or replaces settings."""
    return os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_NAMESPACE": namespace,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "INGEST_SENDERS_FILE": str(EXAMPLE_SENDERS),
        **extra,
    }


class Services:
    """The services as child processes on free local ports, a log file each in `log_dir`."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        ports = {service: free_port() for service in SERVICES}
        self.urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        self.mllp_port = free_port()
        self.env = env | {f"{service.upper()}_PORT": str(port) for service, port in ports.items()}
        self.env["MLLP_PORT"] = str(self.mllp_port)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        logs = self.log_dir
        logs.mkdir(parents=True, exist_ok=True)
        for service in ("alerts", "dsmb", "grader", "ingest"):
            log_file = open(logs / f"{service}.log", "w")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", service],
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    async def wait_healthy(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            for service, url in self.urls.items():
                while True:
                    if self.processes[service].poll() is not None:
                        exited = f"{service} exited at start-up"
                        raise RuntimeError(f"{exited}: {self._log_tail(service)}")
                    try:
                        if (await client.get(f"{url}/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        late = f"{service} not healthy after {timeout_s:.0f} s"
                        raise RuntimeError(f"{late}: {self._log_tail(service)}")
                    await asyncio.sleep(0.3)

    def _log_tail(self, service: str, lines: int = 15) -> str:
        """The end of the service's log, for the error (a test run's logs are overwritten by the
        next run's; the error stays in its report)."""
        log = self.log_dir / f"{service}.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
        return f"{log}, ending:\n" + "\n".join(tail)

    def stop(self, timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM every service, as an orchestrator would; the exit codes, by service."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return {name: process.returncode for name, process in self.processes.items()}
