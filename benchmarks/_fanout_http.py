"""A small keep-alive HTTP/1.1 JSON client for the end-to-end benchmark's players.

httpx's connection pool scans its queue on every request: with a thousand players
answering at once the benchmark's own client took ~20 s per answer while Envoy
measured ~40 ms (py-spy: httpcore's _assign_requests_to_connections). This one
keeps a fixed set of connections and hands them out through a queue.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            return status, b"".join(p[:-2] for p in parts)
        return status, await self.reader.readexactly(length or 0)

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    """`size` keep-alive connections to host:port, opened as needed."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self._free: asyncio.Queue[_Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(None)  # a slot without a connection yet
        self._all: list[_Connection] = []

    async def post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        """The JSON reply of a POST; HttpError unless 200."""
        status, reply = await self.request("POST", path, body, token)
        if status != 200:
            raise HttpError(status, reply)
        return json.loads(reply) if reply else None

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "")
            + "\r\n"
        ).encode()
        connection = await self._free.get()
        try:
            if connection is None:
                connection = _Connection(*await asyncio.open_connection(self.host, self.port))
                self._all.append(connection)
            result = await connection.request(head, payload)
        except BaseException:
            if connection is not None:
                connection.close()
                self._all.remove(connection)
            self._free.put_nowait(None)
            raise
        self._free.put_nowait(connection)
        return result

    def close(self) -> None:
        for connection in self._all:
            connection.close()
