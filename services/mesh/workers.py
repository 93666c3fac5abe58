"""Several processes of one service on one port, to use more than one core per replica.

One Python process serves through one thread. With QUIZMESH_PROCESSES=n a service
runs n complete copies of itself (own connections, own NATS subscriptions), all bound
to the same gRPC port with SO_REUSEPORT, so the kernel spreads client *connections*
over them: a client (or Envoy) multiplexing many calls on one connection keeps them
all on one worker. Worker i serves /metrics on QUIZMESH_METRICS_PORT + i.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)


def supervise(
    name: str,
    target: Callable[..., None],
    args_of: Sequence[tuple[Any, ...]],
    grace: float,
) -> int:
    """Runs one worker per entry of `args_of` (`target(*args)`) until SIGTERM/SIGINT,
    which is passed on so each worker stops gracefully. If a worker exits on its own,
    the others are stopped too and its exit code is returned: the orchestrator then
    restarts the whole pod rather than run it short of a worker."""
    # Spawned, not forked: a forked process is unsafe once grpc has run.
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [
        context.Process(target=target, args=args, name=f"{name}-{i}")
        for i, args in enumerate(args_of)
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    log.info("workers started", extra={"pids": [w.pid for w in workers]})
    code = 0
    alive = list(workers)
    while alive:
        multiprocessing.connection.wait([w.sentinel for w in alive])
        for worker in [w for w in alive if w.exitcode is not None]:
            alive.remove(worker)
            if not stopping:
                log.error(
                    "a worker exited; stopping the others",
                    extra={"worker": worker.name, "exitcode": worker.exitcode},
                )
                # A worker killed by a signal has a negative exit code.
                code = worker.exitcode if worker.exitcode and worker.exitcode > 0 else 1
                stop(signal.SIGTERM, None)
    # Past the workers' own grace period, nothing is left running.
    for worker in workers:
        worker.join(grace + 5)
        if worker.exitcode is None:
            worker.kill()
    return code
