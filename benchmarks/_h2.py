"""The HTTP/2 framing the benchmarks' cheap gRPC clients share (benchmarks/_fanout_h2.py
for server streams, benchmarks/_intake_h2.py for unary calls).

grpc.aio costs a client ~100-500 µs of CPU per call or message, as much as the server
it measures; on a 2-core machine such a client measures itself. These clients write
pre-encoded frames and parse frames straight off the socket: one recv carries frames
of many streams, and a frame costs a few microseconds. Request headers are HPACK
literals without indexing, so the encoder keeps no state; response headers are never
decoded (HPACK state is not needed to see where frames end).
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 0x3, 0x4
DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
# Give the connection's receive window back once this much has been received.
REFILL = 2**30
FRAME_HEADER = struct.Struct(">HBBBI")  # length (24 bits as 16 + 8), type, flags, stream


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream) + payload


def grpc_message(message: bytes) -> bytes:
    """A DATA payload: the 5-byte gRPC prefix (not compressed, length) + the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


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


def literal_status(block: bytes) -> str:
    """grpc-status of a trailers block if it is sent as a plain literal (a server's
    first use of the name; later ones refer to its dynamic table), else "?"."""
    at = block.find(b"grpc-status")
    if at < 0 or at + 12 >= len(block) or block[at + 11] & 0x80:  # absent, or Huffman
        return "?"
    size = block[at + 11]
    return block[at + 12 : at + 12 + size].decode(errors="replace")


class Http2Connection(asyncio.Protocol):
    """The connection-level half of an HTTP/2 client: the preface, SETTINGS and their
    ACK, PING answers, the receive window kept wide open, the server's stream limit,
    its connection send window for our DATA, and GOAWAY. Subclasses handle streams
    through the on_* hooks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.Event()
        self.buffer = b""
        self.next_stream = 1
        self.unacknowledged = 0
        self.max_streams = MAX_WINDOW
        # What we may still send as DATA on the connection (the server's window).
        self.send_window = DEFAULT_WINDOW
        self.closing = False
        # After a GOAWAY: the last stream the server still processes.
        self.last_stream: int | None = None

    # Hooks: a stream's DATA payload (padding removed), a header block (first
    # fragment), RST_STREAM, GOAWAY, the send window or stream limit grown, connection lost.
    def on_data(self, stream: int, payload: bytes, end: bool) -> None: ...
    def on_headers(self, stream: int, block: bytes, end: bool) -> None: ...
    def on_reset(self, stream: int, code: int) -> None: ...
    def on_goaway(self, last_stream: int, why: str) -> None: ...
    def on_window(self) -> None: ...
    def on_lost(self, why: str) -> None: ...

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        settings = struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)
        transport.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big"))
        )
        self.connected.set()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.closing = True
            self.on_lost(f"connection lost: {exc!r}")

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
                self.on_data(stream, payload, bool(flags & END_STREAM))
            elif kind == HEADERS:
                block = buffer[start:pos]
                if flags & PADDED:
                    block = block[1 : len(block) - block[0]]
                if flags & PRIORITY:
                    block = block[5:]
                self.on_headers(stream, block, bool(flags & END_STREAM))
            elif kind == RST_STREAM:
                self.on_reset(stream, int.from_bytes(buffer[start:pos], "big"))
            elif kind == SETTINGS:
                if not flags & ACK:
                    self._settings(buffer[start:pos])
            elif kind == PING:
                if not flags & ACK:
                    self.write(frame(PING, ACK, 0, buffer[start:pos]))
            elif kind == WINDOW_UPDATE:
                if stream == 0:
                    self.send_window += int.from_bytes(buffer[start:pos], "big") & MAX_WINDOW
                    self.on_window()
            elif kind == GOAWAY:
                self.last_stream = int.from_bytes(buffer[start : start + 4], "big") & MAX_WINDOW
                code = int.from_bytes(buffer[start + 4 : start + 8], "big")
                self.on_goaway(self.last_stream, f"GOAWAY {code} {buffer[start + 8 : pos][:64]!r}")
        self.buffer = buffer[pos:]
        if received:
            self.unacknowledged += received
            if self.unacknowledged >= REFILL:
                self.write(frame(WINDOW_UPDATE, 0, 0, self.unacknowledged.to_bytes(4, "big")))
                self.unacknowledged = 0

    def _settings(self, payload: bytes) -> None:
        # SETTINGS_INITIAL_WINDOW_SIZE only bounds a stream's DATA: our requests are
        # one small message each, far below any window a server announces.
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
        self.write(frame(SETTINGS, ACK, 0))
        self.on_window()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
