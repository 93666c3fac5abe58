"""A whole game, end to end, over native gRPC and over HTTP/JSON through Envoy."""

from __future__ import annotations

import httpx

from tests.api import GrpcApi, HttpApi
from tests.game import play_reference_game
from tests.stack import Stack


async def test_a_whole_game_over_native_grpc(stack: Stack) -> None:
    await play_reference_game(GrpcApi(stack.channels), stack.host_token("alice"))


async def test_a_whole_game_over_http_json_through_envoy(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    # The leaderboard watch inside arrives as Server-Sent Events.
    await play_reference_game(HttpApi(http), stack.host_token("alice"))
