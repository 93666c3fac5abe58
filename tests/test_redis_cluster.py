"""QuizMesh on a Redis Cluster (QUIZMESH_REDIS_URL=redis+cluster://seed,seed): a
private cluster of 3 primaries with a replica each (devstack.infra), never the
suite's shared Redis. The pipelined client routes by slot and follows MOVED and
ASK; the reference game plays with quizzes on different shards; a shard killed and
started empty mid-quiz loses no acknowledged answer; a primary's replica takes over."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from devstack.infra import ValkeyCluster, ValkeyServer, node_command, start_valkey_cluster
from services.live.cluster import slot_of
from services.live.keys import QuizKeys
from services.live.pipeline import PipelinedRedis, RedisAddress, Script
from services.mesh.config import CommonSettings, RedisNodes
from tests.api import GrpcApi
from tests.faults.checks import (
    assert_each_answer_recorded_once,
    assert_redis_matches_the_log,
    assert_services_serving,
)
from tests.faults.game import Game
from tests.faults.plan import QuizPlan
from tests.faults.processes import fault_stack, sync_to_sql
from tests.faults.sql import assert_sql_matches_the_log
from tests.stack import Backends, running_stack
from tests.test_game import the_reference_game

PLAN = QuizPlan(players=200, questions=4, answer_window_seconds=2.0)


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[ValkeyCluster]:
    """A cluster the module's non-destructive tests share."""
    started = await start_valkey_cluster(primaries=3, replicas=1)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def own_cluster() -> AsyncIterator[ValkeyCluster]:
    """A cluster of the test's own, for the tests that kill its nodes."""
    started = await start_valkey_cluster(primaries=3, replicas=1)
    try:
        yield started
    finally:
        await started.close()


async def primary_of(cluster: ValkeyCluster, key: str) -> int:
    """The index in cluster.primaries of the primary serving `key`'s slot now."""
    slot = slot_of(key)
    ranges = await node_command(cluster.primaries[0].port, "CLUSTER", "SLOTS")
    port = next(int(r[2][1]) for r in ranges if r[0] <= slot <= r[1])
    return [s.port for s in cluster.primaries].index(port)


async def node_id(server: ValkeyServer) -> str:
    return str(await node_command(server.port, "CLUSTER", "MYID"))


# --- configuration --------------------------------------------------------------------


def test_a_cluster_url_names_its_seed_nodes_and_options_for_every_node() -> None:
    nodes = RedisNodes.parse("rediss+cluster://app:p%40ss@10.0.0.3:6379,10.0.0.4:6380/0?x=1")
    assert nodes.seeds == (("10.0.0.3", 6379), ("10.0.0.4", 6380))
    assert nodes.url == "rediss://app:p%40ss@10.0.0.3:6379/0?x=1"
    address = RedisAddress.parse("redis+cluster://10.0.0.3:7000,10.0.0.4")
    assert (address.host, address.port, address.seeds) == (
        "10.0.0.3",
        7000,
        (("10.0.0.3", 7000), ("10.0.0.4", 6379)),
    )
    assert RedisNodes.parse("redis://127.0.0.1:6379/2").seeds == ()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://", "redis+cluster://HOST:PORT,HOST:PORT"),
        ("redis+cluster://a:1,,b:2", "needs HOST:PORT seed nodes"),
        ("redis+cluster://a:port", "bad cluster node 'a:port'"),
        ("redis+cluster://a:1/3", "database 0 only"),
        ("cluster://a:1", "must be redis://"),
    ],
)
def test_a_bad_redis_url_is_refused_at_startup_saying_why(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match="redis_url") as refused:
        CommonSettings(redis_url=url)
    assert says in str(refused.value)


# --- the pipelined client -------------------------------------------------------------


async def test_the_pipelined_client_sends_each_key_to_its_shard_and_follows_ask_and_moved(
    cluster: ValkeyCluster,
) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(cluster.url), timeout=2.0)
    try:
        keys = [QuizKeys("tcluster:", f"quiz{i}").state for i in range(12)]
        for key in keys:
            assert await pipe.call("SET", key, key) == "OK"
        # Each key sits on the primary owning its slot (CLUSTER KEYSLOT agrees).
        shards = set()
        for key in keys:
            port = cluster.primaries[await primary_of(cluster, key)].port
            assert await node_command(port, "CLUSTER", "KEYSLOT", key) == slot_of(key)
            assert await node_command(port, "GET", key) == key
            shards.add(port)
        assert len(shards) == 3, "12 quizzes should spread over all 3 shards"

        # Migrating the slot of one key to another primary: ASK while it moves,
        # MOVED once it has.
        key = keys[0]
        slot = slot_of(key)
        source = cluster.primaries[await primary_of(cluster, key)]
        target = next(s for s in cluster.primaries if s is not source)
        source_id, target_id = await node_id(source), await node_id(target)
        await node_command(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        await node_command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        await node_command(
            source.port, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key
        )
        assert await pipe.call("GET", key) == key  # ASK, followed with ASKING
        for node in cluster.primaries:
            await node_command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        assert await pipe.call("GET", key) == key  # MOVED, followed
        assert await node_command(target.port, "CLUSTER", "COUNTKEYSINSLOT", slot) == 1
        # A script runs on its keys' shard (loaded there on NOSCRIPT).
        script = "return redis.call('GET', KEYS[1])"
        assert await Script(pipe, script)([key], []) == key
    finally:
        await pipe.close()


async def test_a_killed_primary_is_replaced_by_its_replica_and_the_client_finds_it(
    own_cluster: ValkeyCluster,
) -> None:
    pipe = PipelinedRedis(RedisAddress.parse(own_cluster.url), timeout=2.0)
    try:
        key = QuizKeys("tcluster:", "failover").state
        await pipe.call("SET", key, "kept")
        index = await primary_of(own_cluster, key)
        port = own_cluster.primaries[index].port
        assert await node_command(port, "WAIT", 1, 2000) == 1  # on the replica too
        await own_cluster.primaries[index].kill()
        failed = 0
        async with asyncio.timeout(30):
            while True:
                try:
                    value = await pipe.call("GET", key)
                    break
                except RedisConnectionError:
                    failed += 1  # until the replica is elected and the map read again
                    await asyncio.sleep(0.1)
        assert value == "kept"
        assert failed > 0, "the dead primary should have failed calls at first"
        ranges = await node_command(own_cluster.primaries[(index + 1) % 3].port, "CLUSTER", "SLOTS")
        owner = next(int(r[2][1]) for r in ranges if r[0] <= slot_of(key) <= r[1])
        assert owner == own_cluster.replicas[index][0].port, "the replica is the primary now"
    finally:
        await pipe.close()


# --- the services on a cluster --------------------------------------------------------


async def quiz_keys_by_node(cluster: ValkeyCluster, prefix: str) -> dict[str, set[int]]:
    """Quiz id -> the ports of the primaries holding its keys."""
    found: dict[str, set[int]] = defaultdict(set)
    for server in cluster.primaries:
        for key in await node_command(server.port, "KEYS", f"{prefix}quiz:*"):
            quiz_id = key[len(prefix) + len("quiz:{") :].split("}")[0]
            assert await node_command(server.port, "CLUSTER", "KEYSLOT", key) == slot_of(key)
            found[quiz_id].add(server.port)
    return found


@pytest.mark.timeout(180)
async def test_reference_games_play_on_a_cluster_with_quizzes_on_different_shards(
    own_backends: Backends, cluster: ValkeyCluster
) -> None:
    backends = dataclasses.replace(own_backends, redis_url=cluster.url)
    async with running_stack(backends) as stack:
        by_node: dict[str, set[int]] = {}
        # Quiz ids are random: games three at a time until quizzes sit on two shards
        # or more (one batch in 8 of 9 runs; four all on one shard: 1 in 500,000).
        for _ in range(4):
            await asyncio.gather(
                *(the_reference_game(GrpcApi(stack.channels), stack.host_token()) for _ in range(3))
            )
            by_node = await quiz_keys_by_node(cluster, stack.key_prefix)
            if len(set().union(*by_node.values())) >= 2:
                break
        assert all(len(ports) == 1 for ports in by_node.values()), (
            f"a quiz's keys on several shards: {by_node}"
        )
        assert len(set().union(*by_node.values())) >= 2, f"all quizzes on one shard: {by_node}"


@pytest.mark.timeout(150)
async def test_a_shard_killed_and_restarted_empty_mid_quiz_loses_and_doubles_no_answer(
    own_backends: Backends, own_cluster: ValkeyCluster
) -> None:
    """As tests/faults/test_redis_killed.py, on a cluster: the quiz's shard (its
    primary and replica) killed and started again empty; then the sync job, on the
    cluster too, writes SQL that matches."""
    backends = dataclasses.replace(own_backends, redis_url=own_cluster.url)
    async with fault_stack(backends) as stack, Game(stack, PLAN) as game:
        await game.create_and_join()
        index = await primary_of(own_cluster, QuizKeys(stack.key_prefix, game.quiz_id).state)
        shard = [own_cluster.primaries[index], *own_cluster.replicas[index]]

        async def outage() -> None:
            await game.log.until(PLAN.players + PLAN.players // 4)
            await asyncio.gather(*(node.kill() for node in shard))
            await asyncio.sleep(1.0)
            await asyncio.gather(*(node.start() for node in shard))  # empty

        await asyncio.gather(game.play(), outage())
        await game.close()
        print(game.log.summary())

        await assert_services_serving(stack, within=30)
        assert sum(game.log.retried.values()) > 0, "no client ever had to retry"
        expected = await assert_redis_matches_the_log(game)
        await assert_each_answer_recorded_once(game)

        await sync_to_sql(stack)
        await assert_sql_matches_the_log(backends.database_url, game, expected)
