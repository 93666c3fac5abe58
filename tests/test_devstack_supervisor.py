"""`make run` (quizmesh-dev) supervises what it started: a process that exits on its
own is restarted with a back-off while the rest keeps serving, a process that keeps
crashing is given up on, no restart races a shutdown, and Ctrl-C still stops
everything (and the next start on the same ports is accepted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
import httpx
import pytest

from devstack import infra
from devstack.run import STATUS_FILE, RestartPolicy, Supervisor
from devstack.services import quizmesh_env
from services.identity.tokens import Role
from tests.api import ApiError, HttpApi
from tests.game import Player, join, next_question
from tests.stack import Backends, forget

T = TypeVar("T")

QUIZMESH_DEV = Path(sys.executable).parent / "quizmesh-dev"
# Generous: four Python services and Envoy start at once on a busy 2-core machine.
START_SECONDS = 90.0
# From the kill until the restarted score service takes answers again through Envoy:
# the first back-off (0.5 s) plus a service's start.
BACK_SECONDS = 30.0
STOP_SECONDS = 45.0


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.02)


# --- the supervisor on its own ---------------------------------------------------------------


class Sleeper(infra.ManagedProcess):
    """`sleep 300`, whose readiness a test can withhold."""

    def __init__(self, log_file: Path, ready_timeout: float = 30.0) -> None:
        super().__init__(
            "sleeper", ["sleep", "300"], log_file=log_file, ready_timeout=ready_timeout
        )
        self.serving = True

    async def ready(self) -> bool:
        return self.serving


async def test_a_killed_process_is_restarted_and_each_restart_logged_on_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = Sleeper(tmp_path / "sleeper.log")
    await process.start()
    stopping = asyncio.Event()
    supervisor = Supervisor(process, stopping, RestartPolicy(first_delay=0.05, max_delay=0.2))
    supervising = asyncio.create_task(supervisor.run())
    try:

        def restarted(times: int) -> Callable[[], bool]:
            return lambda: supervisor.restarts == times

        with caplog.at_level("INFO", logger="devstack"):
            for restart in (1, 2, 3):
                before = process.pid
                assert before is not None
                os.kill(before, signal.SIGKILL)
                await until(restarted(restart), 10, f"restart {restart}")
                assert process.running
                assert process.pid != before
    finally:
        stopping.set()
        await process.stop()
        await asyncio.wait_for(supervising, 5)

    # Quick crashes in a row: 0.05 s doubling, capped at 0.2 s.
    lines = [r.getMessage() for r in caplog.records if "exited with code" in r.getMessage()]
    assert lines == [
        "sleeper exited with code -9 (SIGKILL); restart 1 in 0.05 s",
        "sleeper exited with code -9 (SIGKILL); restart 2 in 0.1 s",
        "sleeper exited with code -9 (SIGKILL); restart 3 in 0.2 s",
    ]
    assert supervisor.last_exit == -9
    assert not process.running  # a stop asked for is not a crash: no restart


async def test_the_back_off_starts_afresh_once_a_process_stayed_up() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=10.0)

    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


async def test_a_process_that_keeps_crashing_is_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = infra.ManagedProcess(
        "crasher",
        ["sh", "-c", "sleep 0.2; echo cannot start; exit 3"],
        log_file=tmp_path / "crasher.log",
    )
    await process.start()
    policy = RestartPolicy(first_delay=0.01, max_delay=0.01, stable_after=30, give_up_after=3)
    supervisor = Supervisor(process, asyncio.Event(), policy)

    with caplog.at_level("INFO", logger="devstack"):
        await asyncio.wait_for(supervisor.run(), 15)

    assert supervisor.state == "gave up"
    assert supervisor.restarts == 3
    assert not process.running
    assert "crasher exited with code 3; it crashed 4 times in a row" in caplog.text
    assert "giving up on it, the rest keeps serving" in caplog.text
    assert "cannot start" in caplog.text  # with its last output


async def test_no_restart_once_a_stop_was_asked_for(tmp_path: Path) -> None:
    process = Sleeper(tmp_path / "sleeper.log")
    await process.start()
    stopping = asyncio.Event()
    supervisor = Supervisor(process, stopping, RestartPolicy(first_delay=0.5))
    supervising = asyncio.create_task(supervisor.run())

    await process.kill()  # crashes, and then the stop is asked for during the back-off
    await until(lambda: supervisor.state == "restarting", 5, "the restart to be planned")
    stopping.set()

    await asyncio.wait_for(supervising, 2)
    assert supervisor.restarts == 0
    assert not process.running


async def test_a_shutdown_during_a_restart_leaves_nothing_running(tmp_path: Path) -> None:
    process = Sleeper(tmp_path / "sleeper.log")
    await process.start()
    supervisor = Supervisor(process, asyncio.Event(), RestartPolicy(first_delay=0.01))
    supervising = asyncio.create_task(supervisor.run())
    first = process.pid

    process.serving = False  # the restarted process never becomes ready...
    await process.kill()
    await until(lambda: process.running and process.pid != first, 5, "the restart to begin")
    restarting = process.pid
    assert restarting is not None
    supervising.cancel()  # ...when the shutdown cancels the supervisor

    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(supervising, 10)
    assert not process.running
    with pytest.raises(ProcessLookupError):
        os.killpg(restarting, 0)


# --- quizmesh-dev ------------------------------------------------------------------------------


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on."""
    for _ in range(100):
        first = infra.free_port()
        if first + count <= 65535 and all(infra.port_is_free(first + i) for i in range(count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports")


@dataclass
class DevRun:
    """A running quizmesh-dev, its output and its status file."""

    process: asyncio.subprocess.Process
    output: Path
    state_dir: Path

    def status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = json.loads((self.state_dir / STATUS_FILE).read_text())
        except FileNotFoundError:
            return {}
        return status

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def pid(self, name: str) -> int:
        pid = self.status()["processes"][name]["pid"]
        assert isinstance(pid, int), self.status()
        return pid

    async def until_running(self) -> None:
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while self.status().get("state") != "running":
            assert self.process.returncode is None, f"quizmesh-dev exited:\n{self.log()}"
            assert asyncio.get_running_loop().time() < deadline, f"not running:\n{self.log()}"
            await asyncio.sleep(0.1)

    async def interrupt(self) -> int:
        """Ctrl-C, as from the terminal; the exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            raise AssertionError(f"quizmesh-dev did not stop:\n{self.log()}") from None


def new_file(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


@contextlib.asynccontextmanager
async def quizmesh_dev(argv: list[str], env: dict[str, str], folder: Path) -> AsyncIterator[DevRun]:
    output = folder / "quizmesh-dev.out"
    state_dir = folder / "state"
    with new_file(output) as out:
        process = await asyncio.create_subprocess_exec(
            str(QUIZMESH_DEV),
            *argv,
            "--state-dir",
            str(state_dir),
            "--log-dir",
            str(folder / "logs"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # the test's signals only, as a terminal's Ctrl-C
        )
    run = DevRun(process, output, state_dir)
    try:
        yield run
    finally:
        if process.returncode is None:  # the test failed: leave nothing behind
            pids = [p["pid"] for p in run.status().get("processes", {}).values() if p["pid"]]
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                for pid in [process.pid, *pids]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                await process.wait()


def in_time_wait(ports: set[int]) -> set[int]:
    """Those of `ports` with a local IPv4 socket in TIME_WAIT (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if fields[3] == "06" and port in ports:
            found.add(port)
    return found


def idle_connection(port: int) -> socket.socket:
    """A client connection that sends nothing: the server's side closes it first (as
    it exits), so that side lingers in TIME_WAIT on `port` once we close ours."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def close_after_the_server(connection: socket.socket) -> None:
    """Reads to the server's FIN (unread data would make our close a reset, which
    ends the TIME_WAIT), then closes."""
    with connection:
        while connection.recv(65536):
            pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until_accepted(call: Callable[[], Awaitable[T]], within: float) -> tuple[T, int]:
    """`call`'s reply once it is no longer UNAVAILABLE, and the refusals before it.
    Two tries a second, as the gateway's answer limit refills (a retry is a request)."""
    deadline = asyncio.get_running_loop().time() + within
    refused = 0
    while True:
        try:
            return await call(), refused
        except ApiError as e:
            if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise
            refused += 1
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still refused after {within:g} s")
        await asyncio.sleep(0.5)


QUIZ: dict[str, Any] = {
    "title": "Supervised",
    "instant_feedback": True,  # the live board follows each answer at once
    "questions": [
        # Long limits: a restart must not cost anyone a question.
        {
            "text": "2 + 2?",
            "choices": ["3", "4"],
            "correct_choice": 1,
            "points": 100,
            "time_limit_ms": 300_000,
        },
        {
            "text": "Capital of France?",
            "choices": ["Paris", "Rome"],
            "correct_choice": 0,
            "points": 100,
            "time_limit_ms": 300_000,
        },
    ],
}


async def answer(api: HttpApi, player: Player, quiz_id: str, question: int, choice: int) -> Any:
    return await api.call(
        "SubmitAnswer",
        {"quiz_id": quiz_id, "question_index": question, "choice_index": choice},
        player.token,
    )


async def test_quizmesh_dev_restarts_a_killed_service_and_the_quiz_goes_on(
    own_backends: Backends, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    key_prefix, nats_prefix = f"d{tag}:", f"d{tag}"
    env = quizmesh_env(
        {
            "environment": "test",
            "redis_url": own_backends.redis_url,
            "nats_url": own_backends.nats_url,
            "database_url": own_backends.database_url,
            "key_prefix": key_prefix,
            "nats_prefix": nats_prefix,
            "jwks_file": own_backends.jwks_file,
            "signing_key_file": own_backends.signing_key_file,
            "shutdown_grace_seconds": 2,
        }
    )
    port, admin_port, stats_port = (infra.free_port() for _ in range(3))
    argv = [
        *("--port", str(port), "--admin-port", str(admin_port), "--stats-port", str(stats_port)),
        *("--service-ports-from", str(consecutive_free_ports(4)), "--metrics-ports-from", "0"),
    ]
    host = own_backends.issuer().issue(Role.HOST, "alice", 3600)
    try:
        async with quizmesh_dev(argv, env, tmp_path / "first") as dev:
            await dev.until_running()
            first_pids = {name: dev.pid(name) for name in dev.status()["processes"]}
            assert set(first_pids) == {"quiz", "score", "leaderboard", "stream", "envoy"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                api = HttpApi(c)
                quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
                ann = await join(api, quiz_id, "ann")
                bob = await join(api, quiz_id, "bob")
                await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
                before = await answer(api, ann, quiz_id, 0, 1)
                assert before["result"]["correct"] is True

                score = dev.pid("score")
                os.kill(score, signal.SIGKILL)  # as the chaos run did

                # The others keep serving meanwhile, and answers are taken again soon.
                board = await api.call("GetLeaderboard", {"quiz_id": quiz_id})
                assert board["entries"][0]["nickname"] == "ann"
                after, refused = await until_accepted(
                    lambda: answer(api, bob, quiz_id, 0, 1), BACK_SECONDS
                )
                assert after["result"]["correct"] is True
                # (The supervisor may see it serve a moment after Envoy did.)
                await until(
                    lambda: dev.status()["processes"]["score"]["restarts"] == 1, 10, "restart 1"
                )
                status = dev.status()["processes"]
                assert status["score"]["state"] == "running"
                assert status["score"]["last_exit"] == -9
                assert status["score"]["pid"] not in (None, score)
                assert not alive(score)
                # Only the score service was restarted.
                for name in ("quiz", "leaderboard", "stream", "envoy"):
                    assert (status[name]["pid"], status[name]["restarts"]) == (first_pids[name], 0)
                assert re.search(
                    r"score exited with code -9 \(SIGKILL\); restart 1 in 0\.5 s\n", dev.log()
                ), dev.log()

                # The quiz goes on to its end, with the answer from before the kill.
                await next_question(api, quiz_id, host)
                a1 = await answer(api, ann, quiz_id, 1, 0)
                b1 = await answer(api, bob, quiz_id, 1, 1)
                assert (a1["result"]["correct"], b1["result"]["correct"]) == (True, False)
                await api.call("CloseQuiz", {"quiz_id": quiz_id}, host)
                mine = await api.call(
                    "GetPlayerScore", {"quiz_id": quiz_id, "player_id": ann.player_id}, ann.token
                )
                assert [a["question_index"] for a in mine["answers"]] == [0, 1]
                ann_total = before["result"]["points_awarded"] + a1["result"]["points_awarded"]
                assert mine["score"] == ann_total
                board = await api.call("GetLeaderboard", {"quiz_id": quiz_id})
                assert [(e["nickname"], e["score"]) for e in board["entries"]] == [
                    ("ann", ann_total),
                    ("bob", after["result"]["points_awarded"]),
                ]

            assert dev.process.returncode is None  # quizmesh-dev never went down
            pids = [dev.pid(name) for name in first_pids]
            lingering = idle_connection(port)
            assert await dev.interrupt() == 0, dev.log()
            assert dev.status()["state"] == "stopped"
            assert not [pid for pid in pids if alive(pid)]
            assert "exited with code" not in dev.log().split("stopping (Ctrl-C again")[-1]
            print(f"answers refused while the score service restarted: {refused}")
            close_after_the_server(lingering)
            # What made a second start wait for ~47 s before: TIME_WAIT on its ports.
            assert in_time_wait({port}) == {port}

        # At once again on the same ports, whatever the first run left in TIME_WAIT.
        async with quizmesh_dev(argv, env, tmp_path / "second") as dev:
            await dev.until_running()
            assert "ports in use" not in dev.log()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                quiz = await HttpApi(c).call("GetQuiz", {"quiz_id": quiz_id})
                assert quiz["quiz"]["state"] == "QUIZ_STATE_CLOSED"
            assert await dev.interrupt() == 0, dev.log()
    finally:
        await forget(own_backends, key_prefix, nats_prefix)
