"""Wiring of the score service: Redis, JetStream, tokens; `create_server` for tests."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys

import grpc
from quizmesh.score.v1 import score_pb2, score_pb2_grpc

from services.core import logs, runtime
from services.core.connections import Connections, token_verifier
from services.core.metrics import Metrics
from services.database.engine import create_engine
from services.recovery.live_state import LiveStateRecovery
from services.score.answer_log import AnswerLog
from services.score.config import Settings
from services.score.pipeline import PipelinedRedis, RedisAddress
from services.score.service import ScoreService
from services.score.store import AnswerBook
from services.score.tokens import KnownTokens

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GC_YOUNG_THRESHOLD = 20_000  # net allocations between gen-0 collections (default 700)
SERVICE_NAME = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name


async def create_server(settings: Settings) -> runtime.ServiceApp:
    metrics = Metrics("score")
    conn = await Connections.open(settings, "score")
    # SQL only to rebuild a quiz whose live state Redis lost; answers never wait on it.
    engine = create_engine(settings.database_url)
    batch_sizes = metrics.histogram(
        "quizmesh_answer_batch_size",
        "Answers sharing one write: scripts to Redis (stage=redis), records to NATS (stage=nats)",
        ["stage"],
        buckets=BATCH_BUCKETS,
    )
    script_pipe = PipelinedRedis(
        RedisAddress.parse(settings.redis_url),
        timeout=settings.redis_timeout_seconds,
        max_hold=settings.batch_hold_seconds,
        observe_batch=batch_sizes.labels("redis").observe,
    )
    answer_log = AnswerLog(
        conn.nc,
        settings.publish_timeout_seconds,
        max_hold=settings.batch_hold_seconds,
        observe_batch=batch_sizes.labels("nats").observe,
    )
    await answer_log.start()
    service = ScoreService(
        book=AnswerBook(conn.redis, script_pipe, settings.key_prefix),
        answer_log=answer_log,
        subjects=conn.subjects,
        tokens=KnownTokens(token_verifier(settings), settings.token_cache_size),
        recovery=LiveStateRecovery.of(engine, conn, settings),
        answers=metrics.counter(
            "quizmesh_answers", "Answers by outcome: accepted, replayed or why refused", ["outcome"]
        ),
    )

    def register(server: grpc.aio.Server) -> None:
        score_pb2_grpc.add_ScoreServiceServicer_to_server(service, server)

    app = runtime.build_server(
        settings,
        register,
        [SERVICE_NAME],
        conn.checks(),
        metrics,
    )
    app.after_stop += [answer_log.stop, script_pipe.close, conn.close, engine.dispose]
    return app


async def create_frozen_server(settings: Settings) -> runtime.ServiceApp:
    """create_server, tuned for a long-running process. Each answer allocates a few
    hundred objects, so the cyclic GC runs often (~4% of the server's CPU under
    load; benchmarks/notes-intake.md): what is alive after startup is frozen out
    of collections (full ones no longer re-scan it), and a larger young generation
    lets most calls' objects die before a collection promotes them."""
    app = await create_server(settings)
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return app


def main() -> None:
    settings = Settings()
    if settings.processes == 1:
        runtime.serve("score", settings, create_frozen_server)
    else:
        serve_in_processes(settings)


def serve_one_of(settings: Settings, index: int) -> None:
    """One of several worker processes: its own metrics port, the shared gRPC port."""
    port = settings.metrics_port + index if settings.metrics_port else 0
    runtime.serve(
        "score",
        settings.model_copy(update={"processes": 1, "metrics_port": port}),
        create_frozen_server,
    )


def serve_in_processes(settings: Settings) -> None:
    """Runs `settings.processes` workers on the same port and supervises them:
    SIGTERM/SIGINT are passed on (each worker stops gracefully); if a worker dies
    on its own the others are stopped too and we exit with its code, so that the
    orchestrator restarts the whole pod rather than run it short of a worker."""
    logs.configure("score", settings.log_level)
    # Spawned, not forked: a forked grpc process is unsafe once grpc has run.
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=serve_one_of, args=(settings, i), name=f"score-{i}")
        for i in range(settings.processes)
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
    log.info("workers started", extra={"processes": settings.processes})
    code = 0
    alive = list(workers)
    while alive:
        multiprocessing.connection.wait([w.sentinel for w in alive])
        for worker in [w for w in alive if w.exitcode is not None]:
            alive.remove(worker)
            if not stopping:
                log.error(
                    "worker died; stopping the others",
                    extra={"worker": worker.name, "exitcode": worker.exitcode},
                )
                code = worker.exitcode or 1
                stop(signal.SIGTERM, None)
    # Past the workers' own grace period, nothing is left running.
    for worker in workers:
        worker.join(settings.shutdown_grace_seconds + 5)
        if worker.exitcode is None:
            worker.kill()
    sys.exit(code)


if __name__ == "__main__":
    main()
