"""The sync job's exit status names the dependency that failed (the CronJob's
alerting and docs/operations.md rely on it): 3 when NATS does not answer, 2 when
the database does not, with one line for a person that says which server."""

from __future__ import annotations

import pytest

from devstack.infra import free_port
from tests.faults.processes import SyncCommand, SyncResult
from tests.stack import Stack

NATS_FAILED = 3
DATABASE_FAILED = 2


async def run_sync(settings: dict[str, object]) -> SyncResult:
    command = SyncCommand(settings)
    await command.start()
    return await command.wait(within=60)


def person_lines(result: SyncResult) -> list[str]:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert lines, result.describe()
    assert not any("Traceback" in line for line in lines), result.describe()
    return lines


@pytest.mark.timeout(90)
async def test_nats_that_does_not_answer_is_exit_status_3_naming_it(module_stack: Stack) -> None:
    unreachable = f"nats://127.0.0.1:{free_port()}"

    result = await run_sync({**module_stack.common(), "nats_url": unreachable})

    assert result.returncode == NATS_FAILED, result.describe()
    said = person_lines(result)[0]
    assert "NATS" in said, result.describe()
    assert unreachable.removeprefix("nats://") in said, result.describe()


@pytest.mark.timeout(90)
async def test_a_database_that_does_not_answer_is_exit_status_2_naming_it(
    module_stack: Stack,
) -> None:
    port = free_port()
    unreachable = f"mysql+aiomysql://root@127.0.0.1:{port}/quizmesh"

    result = await run_sync({**module_stack.common(), "database_url": unreachable})

    assert result.returncode == DATABASE_FAILED, result.describe()
    said = person_lines(result)[0]
    assert "database" in said, result.describe()
    assert f"127.0.0.1:{port}" in said, result.describe()
