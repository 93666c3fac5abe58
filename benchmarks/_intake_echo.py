"""The floor of the intake benchmark: a bare grpc.aio unary handler in one uvloop
process, as a service runs, parsing a SubmitAnswerRequest and answering with a
SubmitAnswerResponse of a real one's size. No interceptor, no Redis, no NATS.

    .venv/bin/python -m benchmarks._intake_echo --port 0   # prints the bound port

With --as-score it also answers as ScoreService.SubmitAnswer, so that Envoy can
transcode JSON to it (benchmarks/gateway.py: Envoy's own cost per request).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp
from quizmesh.score.v1 import score_pb2

from services.mesh.app import SERVER_OPTIONS

SERVICE = "quizmesh.bench.v1.EchoService"
METHOD = f"/{SERVICE}/Echo"


def sample_request() -> score_pb2.SubmitAnswerRequest:
    """As large as a real request (8-character quiz code, two-digit question)."""
    return score_pb2.SubmitAnswerRequest(quiz_id="K7QX2M9A", question_index=42, choice_index=2)


def sample_response() -> score_pb2.SubmitAnswerResponse:
    """As large as a real accepted answer's response (millisecond timestamp)."""
    return score_pb2.SubmitAnswerResponse(
        result=score_pb2.AnswerResult(
            question_index=42,
            choice_index=2,
            correct=True,
            points_awarded=987,
            answered_at=Timestamp(seconds=1_780_000_000, nanos=123_000_000),
        ),
        total_score=41_234,
    )


async def serve(port: int, as_score: bool = False) -> None:
    reply = sample_response()

    async def echo(
        request: score_pb2.SubmitAnswerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> score_pb2.SubmitAnswerResponse:
        return reply

    handler = grpc.unary_unary_rpc_method_handler(
        echo,
        request_deserializer=score_pb2.SubmitAnswerRequest.FromString,
        response_serializer=score_pb2.SubmitAnswerResponse.SerializeToString,
    )
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),)
    )
    if as_score:
        score = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(score, {"SubmitAnswer": handler}),)
        )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(bound, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--as-score", action="store_true", help="also serve SubmitAnswer")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.as_score))


if __name__ == "__main__":
    main()
