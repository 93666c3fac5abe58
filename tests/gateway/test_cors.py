"""CORS: pages of the operator's listed origins (none by default) may call every
route from a browser, the SSE watches included; a preflight from anywhere else is
not allowed, and no listed origin is no CORS at all."""

from __future__ import annotations

import httpx
import yaml

from devstack.gateway import render_envoy_config
from tests.gateway.conftest import ALLOWED_ORIGIN, QUIZ_ID, Keys, local_settings

ANSWERS = f"/v1/quizzes/{QUIZ_ID}/answers"


async def preflight(http: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await http.options(
        ANSWERS,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )


async def test_a_listed_origin_s_preflight_is_allowed(http: httpx.AsyncClient) -> None:
    response = await preflight(http, ALLOWED_ORIGIN)

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"]
    assert "authorization" in allowed
    assert "content-type" in allowed


async def test_another_origin_s_preflight_is_not_allowed(http: httpx.AsyncClient) -> None:
    response = await preflight(http, "https://elsewhere.example")

    assert "access-control-allow-origin" not in response.headers


async def test_a_listed_origin_reads_json_and_its_error_headers(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/v1/quizzes/{QUIZ_ID}", headers={"origin": ALLOWED_ORIGIN})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "retry-after" in response.headers["access-control-expose-headers"]


async def test_a_listed_origin_watches_over_sse(http: httpx.AsyncClient) -> None:
    path = f"/v1/quizzes/{QUIZ_ID}/events:watch"
    async with http.stream("GET", path, headers={"origin": ALLOWED_ORIGIN}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_no_origin_is_listed_by_default(keys: Keys) -> None:
    config = yaml.safe_load(render_envoy_config(local_settings(keys)))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    host = manager["typed_config"]["route_config"]["virtual_hosts"][0]
    policy = host["typed_per_filter_config"]["envoy.filters.http.cors"]

    assert policy["allow_origin_string_match"] == []
