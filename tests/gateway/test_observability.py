"""What operators see of the gateway: a JSON access log without tokens, and Prometheus
stats on a port of their own that exposes nothing else of the admin."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.gateway import EnvoyProcess, GatewaySettings, render_envoy_config, write_envoy_config
from devstack.infra import free_port
from services.identity.tokens import Role
from tests.gateway.conftest import QUIZ_ID, SERVICE_KEYS, Backend, Keys, bearer, local_settings


async def test_access_log_is_json_and_never_records_tokens(
    http: httpx.AsyncClient, envoy: EnvoyProcess, keys: Keys
) -> None:
    token = keys.token("frank", Role.PLAYER)
    # A quiz id of its own: other tests' watches end (and are logged) at any time.
    watch_path = "/v1/quizzes/ACCESSLOG/events:watch"
    await http.get(watch_path, params={"access_token": "x.y.z"})
    await http.get(f"/v1/quizzes/{QUIZ_ID}", headers=bearer(token))
    assert envoy.log_file is not None

    entries: list[dict[str, Any]] = []
    for _ in range(100):  # Envoy flushes its access log about once a second
        lines = envoy.log_file.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        if any(e["path"] == watch_path for e in entries):
            break
        await asyncio.sleep(0.05)

    watch = [e for e in entries if e["path"] == watch_path]
    assert len(watch) == 1, entries
    assert watch[-1]["status"] == 401
    assert {"time", "client", "method", "rpc", "grpc_status", "duration_ms"} <= watch[-1].keys()
    log = envoy.log_file.read_text()
    assert "x.y.z" not in log
    assert token not in log


def test_stats_listener_needs_a_fixed_admin_port(keys: Keys) -> None:
    assert "stats" not in render_envoy_config(local_settings(keys))
    with pytest.raises(ValueError, match="fixed admin port"):
        local_settings(keys, admin_port=0, stats_port=9468)


async def test_stats_port_serves_prometheus_stats_and_nothing_else_of_the_admin(
    backend: Backend, keys: Keys, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        upstreams=dict.fromkeys(SERVICE_KEYS, f"127.0.0.1:{backend.port}"),
        listen_port=0,
        listen_address="127.0.0.1",
        # The stats listener forwards to the admin, so the admin port must be known.
        admin_port=free_port(),
        stats_port=0,
        jwks_path=keys.jwks,
    )
    config = write_envoy_config(tmp_path / "envoy.yaml", settings)
    async with (
        EnvoyProcess(config, log_file=tmp_path / "envoy.log") as envoy,
        httpx.AsyncClient(base_url=envoy.base_url, timeout=10) as http,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy.stats_port}", timeout=10) as stats,
    ):
        assert envoy.stats_port not in (None, 0, envoy.port)
        assert (await http.get(f"/v1/quizzes/{QUIZ_ID}")).status_code == 200

        scrape = await stats.get("/stats/prometheus")
        assert scrape.status_code == 200, scrape.text
        assert scrape.headers["content-type"].startswith("text/plain")
        assert "# TYPE envoy_cluster_upstream_rq_total counter" in scrape.text
        requests = re.search(
            r'^envoy_cluster_upstream_rq_total\{envoy_cluster_name="quiz"\} (\d+)$',
            scrape.text,
            re.MULTILINE,
        )
        assert requests is not None, scrape.text
        assert int(requests[1]) >= 1

        # Nothing else of the admin: no config (keys, paths), no shutdown, no changes.
        for method, path in [
            ("GET", "/config_dump"),
            ("GET", "/quitquitquit"),
            ("POST", "/quitquitquit"),
            ("POST", "/healthcheck/fail"),
            ("POST", "/runtime_modify?quizmesh.ratelimit.join.enabled=0"),
            ("POST", "/stats/prometheus"),
            ("GET", "/stats"),
            ("GET", "/"),
            ("GET", "/stats/prometheus/../config_dump"),
        ]:
            answer = await stats.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "configuration" not in answer.text.lower()
        async with httpx.AsyncClient(base_url=envoy.admin_url, timeout=5) as admin:
            assert (await admin.get("/ready")).text.strip() == "LIVE"
