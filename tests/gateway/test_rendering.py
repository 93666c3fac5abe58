"""The rendered Envoy config: taken from the contract, complete, and valid for Envoy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.gateway import (
    GatewaySettings,
    envoy_binary,
    read_services,
    render_envoy_config,
    write_envoy_config,
)
from tests.gateway.conftest import Keys, local_settings


def transcoder(config: dict[str, Any]) -> dict[str, Any]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = manager["typed_config"]["http_filters"]
    return next(f for f in filters if f["name"] == "envoy.filters.http.grpc_json_transcoder")


def test_transcoder_and_clusters_come_from_the_contract(keys: Keys) -> None:
    config = yaml.safe_load(render_envoy_config(local_settings(keys)))

    assert transcoder(config)["typed_config"]["services"] == read_services()
    assert [c["name"] for c in config["static_resources"]["clusters"]] == [
        "leaderboard",
        "quiz",
        "score",
        "stream",
    ]
    assert "quizmesh" not in config  # the template's generator section is consumed


def listener_addresses(config: dict[str, Any]) -> dict[str, str]:
    return {
        listener["name"]: listener["address"]["socket_address"]["address"]
        for listener in config["static_resources"]["listeners"]
    }


def test_the_stats_listener_stays_on_loopback_unless_told(keys: Keys) -> None:
    # make run's Envoy: the public port for phones on the network, stats only here.
    local = local_settings(keys, listen_address="0.0.0.0", stats_port=9464)
    pod = local_settings(keys, stats_port=9464, stats_address="0.0.0.0")

    assert listener_addresses(yaml.safe_load(render_envoy_config(local))) == {
        "public": "0.0.0.0",
        "stats": "127.0.0.1",
    }
    assert listener_addresses(yaml.safe_load(render_envoy_config(pod)))["stats"] == "0.0.0.0"


def test_rendering_refuses_a_service_without_an_upstream(keys: Keys) -> None:
    settings = GatewaySettings(upstreams={"quiz": "127.0.0.1:1"}, jwks_path=keys.jwks)

    with pytest.raises(ValueError, match=r"no upstream address for quizmesh\.leaderboard"):
        render_envoy_config(settings)


async def test_rendered_config_is_valid_and_uses_no_deprecated_fields(
    keys: Keys, tmp_path: Path
) -> None:
    config = write_envoy_config(tmp_path / "envoy.yaml", local_settings(keys, web_root=tmp_path))
    validate = await asyncio.create_subprocess_exec(
        str(envoy_binary()),
        *("--mode", "validate", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await validate.communicate())[0].decode()

    assert validate.returncode == 0, output
    assert "deprecated" not in output.lower(), output
