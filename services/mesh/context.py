"""The servicer context our handlers and interceptors take (any request, any reply)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# Not subscriptable at run time: named for the type checker only.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
