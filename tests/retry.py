"""What a well-behaved client does with UNAVAILABLE: wait a little, try again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from tests.api import ApiError

T = TypeVar("T")


async def until_available(call: Callable[[], Awaitable[T]], seconds: float = 20.0) -> T:
    for _ in range(int(seconds / 0.2)):
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        except ApiError as e:
            if e.code != grpc.StatusCode.UNAVAILABLE:
                raise
        await asyncio.sleep(0.2)
    raise AssertionError(f"still UNAVAILABLE after {seconds} s")
