"""A minimal HTTP/2 client for gRPC server streams, for measuring fan-out.

grpc.aio spends ~100 µs of client CPU per received message (a completion, a future
and a task step per message per stream), more than the server spends sending it;
on a 2-core machine such watchers measure their own backlog, not the server. This
client parses frames straight off the socket: one recv carries messages of many
streams, and a message costs a few microseconds. It only does what watching needs:
open streams with a fixed request, take DATA frames, keep flow control open, answer
SETTINGS and PING. Response headers are never decoded (HPACK state is not needed to
see where frames end); a stream that ends (END_STREAM or RST_STREAM) is reported.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 0x3, 0x4
MAX_WINDOW = 2**31 - 1
# Give the connection's window back once this much has been received.
REFILL = 2**30
FRAME_HEADER = struct.Struct(">HBBBI")

# stream index, message bytes (the gRPC message without its 5-byte prefix)
OnMessage = Callable[[int, bytes], None]
# stream index or -1 for the connection, why it ended
OnEnd = Callable[[int, str], None]


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """HPACK integer (RFC 7541 5.1), OR-ed into the first byte's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    return _integer(len(value), 7, 0) + value  # no Huffman coding


def _indexed_name(index: int, value: str) -> bytes:
    """Literal header field without indexing, name from the static table."""
    return _integer(index, 4, 0) + _string(value.encode())


def _new_name(name: str, value: str) -> bytes:
    return b"\x00" + _string(name.encode()) + _string(value.encode())


def request_headers(authority: str, path: str, token: str = "") -> bytes:
    """The HPACK block of a gRPC request (static table: 3 = :method POST,
    6 = :scheme http, 4 = :path, 1 = :authority, 31 = content-type, 23 = authorization)."""
    block = (
        b"\x83\x86"
        + _indexed_name(4, path)
        + _indexed_name(1, authority)
        + _indexed_name(31, "application/grpc")
        + _new_name("te", "trailers")
    )
    if token:
        block += _indexed_name(23, f"Bearer {token}")
    return block


class GrpcWatchConnection(asyncio.Protocol):
    """One HTTP/2 connection carrying many server streams of the same method."""

    def __init__(self, on_message: OnMessage, on_end: OnEnd) -> None:
        self.on_message = on_message
        self.on_end = on_end
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.Event()
        self.buffer = b""
        self.next_stream = 1
        # HTTP/2 stream id -> the caller's stream index.
        self.streams: dict[int, int] = {}
        self.partial: dict[int, bytes] = {}
        self.unacknowledged = 0
        self.max_streams = MAX_WINDOW
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)
        transport.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - 65535).to_bytes(4, "big"))
        )
        self.connected.set()

    def open(self, requests: list[tuple[int, bytes, bytes]]) -> None:
        """Opens a stream per (index, HPACK header block, serialized request)."""
        assert self.transport is not None
        out = []
        for index, headers, request in requests:
            stream = self.next_stream
            self.next_stream += 2
            self.streams[stream] = index
            body = b"\x00" + len(request).to_bytes(4, "big") + request
            out.append(frame(HEADERS, END_HEADERS, stream, headers))
            out.append(frame(DATA, END_STREAM, stream, body))
        self.transport.write(b"".join(out))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.on_end(-1, f"connection lost: {exc!r}")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = len(buffer)
        pos = 0
        received = 0
        while end - pos >= 9:
            high, low, kind, flags, stream = FRAME_HEADER.unpack_from(buffer, pos)
            length = high << 8 | low
            if end - pos - 9 < length:
                break
            start = pos + 9
            pos = start + length
            stream &= 0x7FFFFFFF
            if kind == DATA:
                received += length
                payload = buffer[start:pos]
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                self._data(stream, payload)
                if flags & END_STREAM:
                    self._ended(stream, "the stream ended")
            elif kind == HEADERS:
                if flags & END_STREAM:  # trailers: the server ended the stream
                    self._ended(stream, "the server ended the stream")
            elif kind == RST_STREAM:
                self._ended(stream, f"RST_STREAM {buffer[start:pos].hex()}")
            elif kind == SETTINGS:
                if not flags & ACK:
                    self._settings(buffer[start:pos])
            elif kind == PING:
                if not flags & ACK:
                    self._write(frame(PING, ACK, 0, buffer[start:pos]))
            elif kind == GOAWAY:
                self.on_end(-1, f"GOAWAY {buffer[start:pos][:64]!r}")
        self.buffer = buffer[pos:]
        if received:
            self.unacknowledged += received
            if self.unacknowledged >= REFILL:
                self._write(frame(WINDOW_UPDATE, 0, 0, self.unacknowledged.to_bytes(4, "big")))
                self.unacknowledged = 0

    def _data(self, stream: int, payload: bytes) -> None:
        index = self.streams.get(stream)
        if index is None:
            return
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

    def _ended(self, stream: int, why: str) -> None:
        index = self.streams.pop(stream, None)
        if index is not None and not self.closing:
            self.on_end(index, why)

    def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
        self._write(frame(SETTINGS, ACK, 0))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def connect(
    host: str, port: int, on_message: OnMessage, on_end: OnEnd
) -> GrpcWatchConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: GrpcWatchConnection(on_message, on_end), host, port
    )
    await protocol.connected.wait()
    return protocol
