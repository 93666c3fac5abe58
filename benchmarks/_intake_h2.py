"""A cheap unary gRPC client for the intake benchmark's load (framing in benchmarks/_h2.py).

A call is a pre-encoded HPACK block and a pre-encoded DATA payload; per call only the
stream id is packed into two frame headers. A connection's writes of one loop
iteration go out in one send. A call succeeds when its stream delivered a message
and ended; a stream that ends without one (a trailers-only response: a gRPC error)
or is reset fails with CallError, whose text is what the benchmark counts.
"""

from __future__ import annotations

import asyncio
from collections import deque

from benchmarks._h2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    HEADERS,
    RST_STREAM,
    Http2Connection,
    frame,
    literal_status,
)

CANCEL = 0x8


class CallError(Exception):
    """A call that ended without a reply message; str() says how."""


class UnaryConnection(Http2Connection):
    """One HTTP/2 connection carrying unary calls, at most the server's
    MAX_CONCURRENT_STREAMS at a time (the rest wait their turn in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.calls: dict[int, asyncio.Future[bytes]] = {}
        self.replies: dict[int, bytes] = {}
        self.queued: deque[tuple[bytes, bytes, asyncio.Future[bytes]]] = deque()
        self.out: list[bytes] = []

    @property
    def usable(self) -> bool:
        return not self.closing and self.last_stream is None

    def call(self, headers: bytes, body: bytes) -> asyncio.Future[bytes]:
        """The reply message (without its gRPC prefix) to the request of `headers`
        (an HPACK block) and `body` (a DATA payload)."""
        future = self.loop.create_future()
        if not self.usable:
            future.set_exception(CallError("connection closed"))
        elif self.queued or len(self.calls) >= self.max_streams or self.send_window < len(body):
            self.queued.append((headers, body, future))
        else:
            self._send(headers, body, future)
        return future

    def _send(self, headers: bytes, body: bytes, future: asyncio.Future[bytes]) -> None:
        stream = self.next_stream
        self.next_stream += 2
        self.calls[stream] = future
        self.send_window -= len(body)
        if not self.out:
            self.loop.call_soon(self._flush)
        h, b = len(headers), len(body)
        self.out += (
            FRAME_HEADER.pack(h >> 8, h & 0xFF, HEADERS, END_HEADERS, stream),
            headers,
            FRAME_HEADER.pack(b >> 8, b & 0xFF, DATA, END_STREAM, stream),
            body,
        )

    def _flush(self) -> None:
        if self.out:
            self.write(b"".join(self.out))
            self.out.clear()

    def on_window(self) -> None:
        queued = self.queued
        while (
            queued and len(self.calls) < self.max_streams and self.send_window >= len(queued[0][1])
        ):
            headers, body, future = queued.popleft()
            if not future.done():  # not given up by its caller
                self._send(headers, body, future)

    def on_data(self, stream: int, payload: bytes, end: bool) -> None:
        pending = self.replies.get(stream)
        self.replies[stream] = payload if pending is None else pending + payload
        if end:
            self._end(stream, b"")

    def on_headers(self, stream: int, block: bytes, end: bool) -> None:
        if end:  # trailers, or a trailers-only response (an error)
            self._end(stream, block)

    def _end(self, stream: int, trailers: bytes) -> None:
        future = self.calls.pop(stream, None)
        reply = self.replies.pop(stream, None)
        if future is not None and not future.done():
            if (
                reply is not None
                and len(reply) >= 5
                and len(reply) == 5 + int.from_bytes(reply[1:5], "big")
            ):
                future.set_result(reply[5:])
            else:
                why = f"gRPC status {literal_status(trailers)}" if trailers else "no trailers"
                future.set_exception(CallError(f"{why}, no reply message"))
        if self.queued:
            self.on_window()

    def on_reset(self, stream: int, code: int) -> None:
        self.replies.pop(stream, None)
        self._fail(self.calls.pop(stream, None), f"RST_STREAM {code}")
        if self.queued:
            self.on_window()

    def on_goaway(self, last_stream: int, why: str) -> None:
        # Streams after last_stream were not processed; calls later go to a new connection.
        for stream in [s for s in self.calls if s > last_stream]:
            self._fail(self.calls.pop(stream), why)
        self._fail_queued(why)

    def on_lost(self, why: str) -> None:
        self.expire(why)

    def expire(self, why: str) -> None:
        """Gives up every call still in flight or waiting (cancelling its stream)."""
        for stream, future in self.calls.items():
            self._fail(future, why)
            self.write(frame(RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big")))
        self.calls.clear()
        self.replies.clear()
        self._fail_queued(why)

    def _fail_queued(self, why: str) -> None:
        while self.queued:
            self._fail(self.queued.popleft()[2], why)

    @staticmethod
    def _fail(future: asyncio.Future[bytes] | None, why: str) -> None:
        if future is not None and not future.done():
            future.set_exception(CallError(why))


class UnaryClient:
    """`size` connections to one server; a caller picks one by a number of its own
    (a player keeps to one connection, as a real client does). A connection closed
    or going away is replaced on its next call."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self.authority = f"{host}:{port}"
        self.connections: list[UnaryConnection] = []
        self.size = size
        self._opening: dict[int, asyncio.Future[UnaryConnection]] = {}

    async def start(self) -> None:
        self.connections = [await self._connect() for _ in range(self.size)]

    async def call(self, which: int, headers: bytes, body: bytes) -> bytes:
        slot = which % self.size
        connection = self.connections[slot]
        if not connection.usable:
            connection = await self._replace(slot)
        return await connection.call(headers, body)

    def expire(self, why: str) -> None:
        for connection in self.connections:
            connection.expire(why)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()

    async def _replace(self, slot: int) -> UnaryConnection:
        opening = self._opening.get(slot)
        if opening is None:
            opening = self._opening[slot] = asyncio.ensure_future(self._connect())
            opening.add_done_callback(lambda _: self._opening.pop(slot, None))
        connection = await opening
        self.connections[slot] = connection
        return connection

    async def _connect(self) -> UnaryConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(UnaryConnection, self.host, self.port)
        await connection.connected.wait()
        return connection
