"""A TCP proxy in front of a server, which a test stops to make the server unreachable."""

from __future__ import annotations

import asyncio
import urllib.parse

from sqlalchemy.engine import make_url

from devstack.infra import free_port


def host_and_port(url: str) -> tuple[str, int]:
    """The server address in a redis://, nats:// or SQLAlchemy URL."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname, f"no host in {url}"
    assert parsed.port, f"no port in {url}"
    return parsed.hostname, parsed.port


class TcpProxy:
    """Forwards 127.0.0.1:`port` to an upstream server. `stop()` refuses new
    connections and cuts the open ones, as a network partition or a dead server
    would look to a client, without touching the server itself; `hold()` keeps
    what clients send from reaching the server (a stall), and a `stop()` then
    drops it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        # What clients sent to the server through the proxy.
        self.bytes_sent = 0
        self._cut_at: int | None = None
        self._cutting: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def url_for(self, database_url: str) -> str:
        """`database_url` with the proxy as its host."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    def hold(self) -> None:
        self._flowing.clear()

    def cut_after(self, upstream_bytes: int) -> None:
        """Behaves as `stop()` once clients have sent `upstream_bytes` more: the
        server goes away in the middle of whatever they were doing."""
        self._cut_at = self.bytes_sent + upstream_bytes

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, upstream_w}
        for task in (
            asyncio.create_task(self._pipe(client_r, upstream_w, client_w, upstream=True)),
            asyncio.create_task(self._pipe(upstream_r, client_w, upstream_w, upstream=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        own: asyncio.StreamWriter,
        upstream: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if upstream:
                    await self._flowing.wait()
                    if self._cut_at is not None and self.bytes_sent + len(data) > self._cut_at:
                        self._cut_at = None
                        self._cutting = asyncio.create_task(self.stop())
                        return
                    self.bytes_sent += len(data)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (sink, own):
                self._writers.discard(writer)
                writer.transport.abort()
