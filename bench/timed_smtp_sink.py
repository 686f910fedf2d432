"""An SMTP server that prints, per message received, the alert it is about and when it arrived:
`<X-Safetymon-Alert-Id>\\t<unix time>` on stdout, after a first line `ready`.

    .venv/bin/python bench/timed_smtp_sink.py PORT

bench/bench_latency.py runs it as a process of its own, so that the load the benchmark generates
never holds a message's arrival stamp back (one process: one interpreter lock). Stops on SIGTERM.
Imports nothing of safetymon: it starts in a fraction of a second."""

import signal
import sys
import time
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller


class Stamper:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()  # first: parsing the headers is not part of the delivery
        headers = BytesHeaderParser().parsebytes(envelope.content)
        print(f"{headers.get('X-Safetymon-Alert-Id')}\t{arrived:.6f}", flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    port = int(sys.argv[1])
    controller = Controller(Stamper(), hostname="127.0.0.1", port=port)
    controller.start()
    signal.signal(signal.SIGTERM, lambda *_: None)  # wake signal.pause(), then stop cleanly
    print("ready", flush=True)
    try:
        signal.pause()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
