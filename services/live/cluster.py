"""The pipelined client against a Redis Cluster: one PipelinedRedis per node, each
command sent to the node that owns its key's slot.

The slot map comes from CLUSTER SLOTS, asked of any node known (the seeds first
time). A MOVED reply updates that slot at once and has the whole map read again in
the background (a resharding or a failover moves many); ASK (a slot being migrated)
is followed for the one command with ASKING. A node that fails has the map read
again too, so that a replica promoted in its place is found; the calls that failed
raise ConnectionError as on one server (the clients retry, SubmitAnswer being
idempotent): a command already written may have run, so it is never sent twice here.

All of a quiz's keys share the hash tag {quiz_id} (services/live/keys.py), so every
script and multi-key command of the live state touches one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from services.live.pipeline import Arg, PipelinedRedis

log = logging.getLogger(__name__)

SLOTS = 16384
# Redirections followed for one command before giving up (a slot moving twice).
MAX_REDIRECTS = 5
# While the cluster elects a new primary (CLUSTERDOWN, TRYAGAIN): waits before the
# same command is sent again, then it fails as unavailable.
DOWN_WAITS = (0.05, 0.1, 0.2, 0.4)
# The map is read again at most this often when errors keep asking for it.
REFRESH_EVERY = 0.1

Node = tuple[str, int]


def slot_of(key: Arg) -> int:
    return key_slot(key.encode() if isinstance(key, str) else b"%d" % key)


def key_of(args: Sequence[Arg]) -> Arg | None:
    """The key a command is routed by: an EVAL(SHA)'s first key, else the first
    argument (every other command this client sends starts with its key)."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return args[3] if int(args[2]) > 0 else None
    if name in ("SCRIPT", "CLUSTER", "PING", "ASKING") or len(args) < 2:
        return None
    return args[1]


class ClusterPipes:
    """Routes `owner`'s calls to a PipelinedRedis per node of the cluster its
    address names (the owner's settings, with each node's host and port)."""

    def __init__(self, owner: PipelinedRedis) -> None:
        self.owner = owner
        self.seeds: list[Node] = list(owner.address.seeds)
        self._pipes: dict[Node, PipelinedRedis] = {}
        self._slots: list[Node | None] = [None] * SLOTS
        self._known = False
        self._refreshing = asyncio.Lock()
        self._refresh_task: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0

    def _pipe(self, node: Node) -> PipelinedRedis:
        pipe = self._pipes.get(node)
        if pipe is None:
            from services.live.pipeline import PipelinedRedis

            o = self.owner
            address = dataclasses.replace(o.address, host=node[0], port=node[1], seeds=())
            pipe = PipelinedRedis(address, o.timeout, o.max_hold, o.observe_batch, o.min_gap)
            self._pipes[node] = pipe
        return pipe

    async def call(self, args: Sequence[Arg], route: Arg | None) -> Any:
        if not self._known:
            await self.refresh()
        key = key_of(args) if route is None else route
        slot = slot_of(key) if key is not None else random.randrange(SLOTS)
        asked: Node | None = None
        down = iter(DOWN_WAITS)
        for _ in range(MAX_REDIRECTS + len(DOWN_WAITS)):
            node = asked or self._slots[slot] or random.choice(self.seeds)
            try:
                if asked is not None:
                    asked = None
                    return await self._pipe(node).call_asking(*args)
                return await self._pipe(node).call(*args)
            except (RedisConnectionError, RedisTimeoutError):
                self.refresh_soon()  # a replica may be taking over
                raise
            except ResponseError as e:
                kind, _, rest = str(e).partition(" ")
                if kind == "MOVED":
                    self._slots[slot] = _node(rest)
                    self.refresh_soon()  # rarely one slot alone
                elif kind == "ASK":
                    asked = _node(rest)
                elif kind in ("CLUSTERDOWN", "TRYAGAIN"):
                    wait = next(down, None)
                    if wait is None:
                        raise RedisConnectionError(f"Redis Cluster not serving: {e}") from e
                    self.refresh_soon()
                    await asyncio.sleep(wait)
                else:
                    raise
        raise RedisConnectionError(f"Redis Cluster: slot {slot} redirected too often")

    def refresh_soon(self) -> None:
        """Reads the slot map again in the background, at most once per REFRESH_EVERY."""
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        if time.monotonic() - self._refreshed_at < REFRESH_EVERY:
            return
        self._refresh_task = asyncio.create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.refresh()

    async def refresh(self) -> None:
        """Reads the slot map (CLUSTER SLOTS) from the first node that answers: those
        of the current map, then the seeds."""
        async with self._refreshing:
            self._refreshed_at = time.monotonic()
            known = list(dict.fromkeys([*(n for n in self._slots if n is not None), *self.seeds]))
            errors: list[str] = []
            for node in known:
                try:
                    ranges = await self._pipe(node).call("CLUSTER", "SLOTS")
                except (RedisError, OSError) as e:
                    errors.append(f"{node[0]}:{node[1]}: {e}")
                    continue
                self._apply(node, ranges)
                return
            raise RedisConnectionError(f"no node of the Redis Cluster answers: {errors}")

    def _apply(self, asked: Node, ranges: list[Any]) -> None:
        slots: list[Node | None] = [None] * SLOTS
        for first, last, primary, *_replicas in ranges:
            # A node that does not know its own address says "" (the one asked).
            node = (str(primary[0]) or asked[0], int(primary[1]))
            slots[int(first) : int(last) + 1] = [node] * (int(last) - int(first) + 1)
        self._slots = slots
        self._known = True
        # Pipes of nodes that own no slot now stay until close(): a demoted primary
        # is a replica, and may be promoted again.

    def owner_of(self, key: Arg) -> Node | None:
        """The node the map says holds `key` (for tests and diagnostics)."""
        return self._slots[slot_of(key)]

    async def close(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
        pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            await pipe.close()


def _node(where: str) -> Node:
    """ "3999 10.0.0.4:6379" (the rest of a MOVED or ASK) -> its node."""
    address = where.split(" ")[-1]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
