"""Crash points for the fault-injection tests (tests/faults). Off unless SAFETYMON_FAULT_POINT
is set; never set it outside a test.

SAFETYMON_FAULT_POINT=<point>[:<n>] makes the alert service kill itself with SIGKILL (no
shutdown, no commit, as the OOM killer or a power cut would) the n-th time (default: the first)
it reaches <point>:

  alerts.after-store  an alert and its notifications stored, no email sent yet
  alerts.after-send   an email accepted by the SMTP server, not yet recorded as sent
"""

import os
import signal

POINTS = ("alerts.after-store", "alerts.after-send")
_point, _, _count = os.environ.get("SAFETYMON_FAULT_POINT", "").partition(":")
if _point and _point not in POINTS:
    raise ValueError(f"SAFETYMON_FAULT_POINT={_point!r}: one of {', '.join(POINTS)}")
_remaining = int(_count or 1) if _point else 0


def fault_point(point: str) -> None:
    global _remaining
    if point == _point:
        _remaining -= 1
        if _remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
