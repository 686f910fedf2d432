"""Services killed with SIGKILL at random points while the stream flows, then restarted: every
expected alert stored once, every email sent once, nothing acknowledged lost, read models equal
to a rebuild from the log. FAULT_SEED replays a run; FAULT_PROFILE=long runs a bigger one."""

import asyncio

import pytest

from tests.faults.harness import (
    at_times,
    fault_times,
    finish,
    kill,
    poll_until,
    posting,
    scenario,
    sends_cut_off,
    start_service,
    stored_and_sent,
    stream_seconds,
    until_posted,
    until_progress,
    wait_healthy,
)

pytestmark = pytest.mark.e2e


async def test_grader_killed_and_restarted(kafka_bootstrap: str, postgres_url: str) -> None:
    async with scenario("grader-kill", kafka_bootstrap, postgres_url) as run:
        async with posting(run) as clients:
            duration = stream_seconds(run)
            times = fault_times(run, run.profile.faults, 0.1 * duration, 0.8 * duration, spacing=4)
            async for _ in at_times(times):
                kill(run, "grader")
                run.fault("grader SIGKILL")
                await asyncio.sleep(run.rng.uniform(0, 2))
                start_service(run, "grader")
        print(f"grader healthy {await wait_healthy(run, 'grader'):.1f} s after its last restart")
        await finish(run, clients)


async def test_alerts_killed_while_storing_and_sending(
    kafka_bootstrap: str, postgres_url: str
) -> None:
    """The alert service down while alerts pile up, then killed again and again at random
    points of catching up: after storing some alerts, or after recording some emails sent (so
    between storing an alert and sending its email, during a send, after it)."""
    async with scenario("alerts-kill", kafka_bootstrap, postgres_url) as run:
        kill(run, "alerts")
        alerts, in_flight = len(run.expected.alert_ids), 0
        async with posting(run) as clients:
            await until_posted(clients, 0.3)
            for _ in range(run.profile.faults):
                start_service(run, "alerts")
                stored, sent = await stored_and_sent(run)
                step = run.rng.randint(1, max(2, alerts // (run.profile.faults + 1)))
                if run.rng.random() < 0.5:
                    reached = await until_progress(run, stored + step, 10**9, 60)
                    what = f"after {step} more alerts stored"
                else:
                    reached = await until_progress(run, 10**9, sent + step, 60)
                    what = f"after {step} more emails recorded sent"
                await asyncio.sleep(run.rng.uniform(0, 0.05))
                kill(run, "alerts")
                run.fault(f"alerts SIGKILL {what}" + ("" if reached else " (not reached: idle)"))
                in_flight += await sends_cut_off(run)
            start_service(run, "alerts")
        await wait_healthy(run, "alerts")
        # A kill between the SMTP server's acceptance and the store recording it sends that
        # email again, with the same Message-ID: only an email being sent at that moment.
        await finish(run, clients, lambda o: in_flight, sends_in_flight=in_flight)


async def test_alerts_killed_at_crash_points(kafka_bootstrap: str, postgres_url: str) -> None:
    """Deterministic kills inside the alert service (SAFETYMON_FAULT_POINT, services/alerts/
    faults.py), alternating: right after an alert is stored with its emails queued, before any
    is sent; right after the SMTP server accepted an email, before it is recorded as sent. The
    alert service is down while the stream is posted, so every restart has alerts waiting and
    every crash point is reached."""
    points = ["alerts.after-store", "alerts.after-send"]
    async with scenario("alerts-crash-points", kafka_bootstrap, postgres_url) as run:
        plan = [f"{points[i % 2]}:{run.rng.randint(1, 5)}" for i in range(run.profile.faults)]
        kill(run, "alerts")
        async with posting(run) as clients:
            pass  # the whole stream in; its alerts wait in the topic
        sends_cut = in_flight = 0
        for point in plan:
            start_service(run, "alerts", SAFETYMON_FAULT_POINT=point)
            process = run.pipeline.services.processes["alerts"]
            await poll_until(lambda p=process: p.poll() is not None, 120, 0.05)
            assert process.returncode == -9, f"the crash point {point} was not reached"
            run.fault(f"alerts killed itself at {point}")
            sends_cut += point.startswith("alerts.after-send")
            in_flight += await sends_cut_off(run)
        start_service(run, "alerts")
        await wait_healthy(run, "alerts")
        # after-send: the email the SMTP server accepted is sent again after the restart (same
        # Message-ID), and any other being sent at that moment (the alert's other recipients,
        # an escalation, a pass over pending ones); after-store: only those being sent.
        assert in_flight >= sends_cut, "an after-send kill left no email claimed for sending"
        await finish(
            run, clients, lambda o: in_flight, sends_cut=sends_cut, sends_in_flight=in_flight
        )


async def test_ingest_killed_while_clients_post(kafka_bootstrap: str, postgres_url: str) -> None:
    """Clients resend what got no 2xx (the same event ids); everything acknowledged with a 2xx
    is in the clinical-events topic."""
    async with scenario("ingest-kill", kafka_bootstrap, postgres_url) as run:
        async with posting(run) as clients:
            duration = stream_seconds(run)
            times = fault_times(run, run.profile.faults, 0.1 * duration, 0.8 * duration, spacing=3)
            async for _ in at_times(times):
                kill(run, "ingest")
                run.fault("ingest SIGKILL")
                await asyncio.sleep(run.rng.uniform(0, 1))
                start_service(run, "ingest")
        await finish(run, clients)
