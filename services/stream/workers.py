"""Several stream-service processes on one port, for more than one core per replica.

One Python process sends through one main thread: fan-out to N watchers costs
N writes there. With QUIZMESH_PROCESSES=n the service starts n workers, each a
complete stream service (own hubs, own NATS subscriptions) bound to the same port
with SO_REUSEPORT, so the kernel spreads client connections over them. Watchers
are spread per connection, not per stream: a client (or Envoy) multiplexing many
streams on one connection puts them all on one worker.

Each worker serves its metrics on QUIZMESH_METRICS_PORT + its index (0: any port).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from services.stream.config import Settings

log = logging.getLogger(__name__)


def supervise(settings: Settings) -> int:
    """Runs `settings.processes` workers until SIGTERM/SIGINT (passed on to each) or
    until one of them exits; then stops the rest. Returns the exit code."""
    if settings.grpc_port == 0:
        raise SystemExit(
            "QUIZMESH_PROCESSES > 1 needs a fixed QUIZMESH_GRPC_PORT: with port 0 every "
            "worker would listen on a port of its own"
        )
    workers: list[subprocess.Popen[bytes]] = []
    for index in range(settings.processes):
        metrics_port = settings.metrics_port + index if settings.metrics_port else 0
        env = {
            **os.environ,
            "QUIZMESH_PROCESSES": "1",
            "QUIZMESH_METRICS_PORT": str(metrics_port),
        }
        workers.append(subprocess.Popen([sys.executable, "-m", "services.stream.server"], env=env))
    log.info("workers started", extra={"pids": [w.pid for w in workers]})
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    code = 0
    try:
        pid, status = os.wait()
        if not stopping:
            status_code = os.waitstatus_to_exitcode(status)
            log.error(
                "a worker exited; stopping the others", extra={"pid": pid, "code": status_code}
            )
            stop(signal.SIGTERM, None)
            code = status_code if status_code > 0 else 1
    finally:
        # Each worker has its own shutdown grace period; give them that, then kill.
        deadline = time.monotonic() + settings.shutdown_grace_seconds + 5
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return code
