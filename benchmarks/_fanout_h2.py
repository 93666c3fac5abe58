"""A minimal HTTP/2 client for gRPC server streams, for measuring fan-out.

grpc.aio spends ~100 µs of client CPU per received message (a completion, a future
and a task step per message per stream), more than the server spends sending it;
on a 2-core machine such watchers measure their own backlog, not the server. This
client (framing in benchmarks/_h2.py) only does what watching needs: open streams
with a fixed request, take DATA frames; a stream that ends (END_STREAM or
RST_STREAM) is reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from benchmarks._h2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    Http2Connection,
    frame,
    grpc_message,
)
from benchmarks._h2 import request_headers as request_headers

# stream index, message bytes (the gRPC message without its 5-byte prefix)
OnMessage = Callable[[int, bytes], None]
# stream index or -1 for the connection, why it ended
OnEnd = Callable[[int, str], None]


class GrpcWatchConnection(Http2Connection):
    """One HTTP/2 connection carrying many server streams of the same method."""

    def __init__(self, on_message: OnMessage, on_end: OnEnd) -> None:
        super().__init__()
        self.on_message = on_message
        self.on_end = on_end
        # HTTP/2 stream id -> the caller's stream index.
        self.streams: dict[int, int] = {}
        self.partial: dict[int, bytes] = {}

    def open(self, requests: list[tuple[int, bytes, bytes]]) -> None:
        """Opens a stream per (index, HPACK header block, serialized request)."""
        assert self.transport is not None
        out = []
        for index, headers, request in requests:
            stream = self.next_stream
            self.next_stream += 2
            self.streams[stream] = index
            out.append(frame(HEADERS, END_HEADERS, stream, headers))
            out.append(frame(DATA, END_STREAM, stream, grpc_message(request)))
        self.transport.write(b"".join(out))

    def on_lost(self, why: str) -> None:
        self.on_end(-1, why)

    def on_goaway(self, last_stream: int, why: str) -> None:
        self.on_end(-1, why)

    def on_data(self, stream: int, payload: bytes, end: bool) -> None:
        index = self.streams.get(stream)
        if index is not None:
            pending = self.partial.pop(stream, None)
            if pending is not None:
                payload = pending + payload
            # Usually one DATA frame holds exactly one gRPC message.
            while len(payload) >= 5:
                size = int.from_bytes(payload[1:5], "big")
                if len(payload) < 5 + size:
                    break
                self.on_message(index, payload[5 : 5 + size])
                payload = payload[5 + size :]
            if payload:
                self.partial[stream] = payload
        if end:
            self._ended(stream, "the stream ended")

    def on_headers(self, stream: int, block: bytes, end: bool) -> None:
        if end:  # trailers: the server ended the stream
            self._ended(stream, "the server ended the stream")

    def on_reset(self, stream: int, code: int) -> None:
        self._ended(stream, f"RST_STREAM {code}")

    def _ended(self, stream: int, why: str) -> None:
        index = self.streams.pop(stream, None)
        if index is not None and not self.closing:
            self.on_end(index, why)


async def connect(
    host: str, port: int, on_message: OnMessage, on_end: OnEnd
) -> GrpcWatchConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: GrpcWatchConnection(on_message, on_end), host, port
    )
    await protocol.connected.wait()
    return protocol
