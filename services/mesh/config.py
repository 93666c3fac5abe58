"""Typed settings shared by every QuizMesh process, read from QUIZMESH_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.mesh.dev_state import DEV_STATE_DIR, is_dev_key_file


class CommonSettings(BaseSettings):
    """What every service needs: where its dependencies are and how it listens."""

    model_config = SettingsConfigDict(env_prefix="QUIZMESH_", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    # Prometheus /metrics (0: any free port).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # One server: redis:// or rediss:// (TLS). A Redis Cluster: redis+cluster:// or
    # rediss+cluster:// with some of its nodes (seeds) separated by commas, e.g.
    # rediss+cluster://user:password@10.0.0.3:6379,10.0.0.4:6379 (see RedisNodes).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # One URL, or several separated by commas (the servers of a NATS cluster).
    nats_url: str = "nats://127.0.0.1:4222"
    # Copies JetStream keeps of each stream: 3 on a cluster of 3 or more, so that an
    # accepted answer survives the loss of a NATS server (1 on a single server).
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    # Quizzes of up to small_quiz_players players get a board every
    # small_quiz_board_interval_ms, larger ones at QUIZMESH_SNAPSHOT_INTERVAL_MS
    # (leaderboard) and QUIZMESH_BOARD_INTERVAL_SECONDS (stream): services/live/pace.py.
    small_quiz_players: int = Field(default=2000, ge=0)
    small_quiz_board_interval_ms: int = Field(default=150, ge=0, le=10_000)
    database_url: str = f"sqlite+aiosqlite:///{DEV_STATE_DIR}/quizmesh.db"
    # Namespaces, so that tests and several deployments share servers safely.
    key_prefix: str = "qm:"
    nats_prefix: str = "quizmesh"
    # Public keys that verify tokens (a JWKS document), and the key that signs them.
    jwks_file: Path = DEV_STATE_DIR / "keys" / "jwks.json"
    signing_key_file: Path = DEV_STATE_DIR / "keys" / "signing-key.pem"
    token_issuer: str = "quizmesh"
    token_audience: str = "quizmesh"
    shutdown_grace_seconds: float = 10.0
    # Before rebuilding a lost live state: covers answers still on their way to
    # JetStream (the score service's publish timeout plus a margin).
    recovery_settle_seconds: float = 3.0
    log_level: str = "INFO"
    # Open server streams (watches) on one process, services/mesh/stream_quota.py.
    # With a token: per token subject. A player needs two (WatchQuiz and
    # WatchLeaderboard); the rest covers a reload or a network change whose old
    # streams are not yet noticed gone, and a second tab. A hall behind one NAT is
    # then no limit: each player has a subject of their own.
    max_streams_per_subject: int = Field(default=8, ge=1)
    # Without a token (spectators, big screens): per client address, sized for a
    # venue's audience watching from one address; a script opening thousands gets
    # this many (~25 KB each) and then RESOURCE_EXHAUSTED.
    max_streams_per_client: int = Field(default=1000, ge=1)

    # Worker processes sharing the gRPC port (SO_REUSEPORT; the kernel spreads
    # connections, not calls), to use more than one core per replica. Worker i
    # serves /metrics on metrics_port + i (services/mesh/workers.py).
    processes: int = Field(default=1, ge=1, le=64)

    @field_validator("redis_url")
    @classmethod
    def _known_redis_url(cls, url: str) -> str:
        RedisNodes.parse(url)  # raises why not
        return url

    @model_validator(mode="after")
    def _refuse_dev_keys_in_production(self) -> CommonSettings:
        """The one place development keys are refused: in production, neither a key
        in the dev folder nor a dev key copied elsewhere (its file carries a mark)."""
        if self.environment != "production":
            return self
        for name in ("jwks_file", "signing_key_file"):
            path: Path = getattr(self, name)
            if DEV_STATE_DIR.resolve() in path.resolve().parents:
                raise ValueError(
                    f"production needs QUIZMESH_{name.upper()} outside the dev key "
                    f"folder {DEV_STATE_DIR}/"
                )
            if path.exists() and is_dev_key_file(path):
                raise ValueError(
                    f"{path} holds a development key (made by `make run` / quizctl); "
                    "production needs keys of its own: see 'Rotate the token keys' in "
                    "docs/operations.md"
                )
        return self


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


@dataclass(frozen=True)
class RedisNodes:
    """What QUIZMESH_REDIS_URL names. `url` is a redis:// or rediss:// URL of one
    server: the server itself, or a cluster's first seed node, with the credentials
    and options (?ssl_ca_certs=...) every node of the cluster takes. `seeds` are the
    cluster's seed nodes (host, port); empty for a single server."""

    url: str
    seeds: tuple[tuple[str, int], ...] = ()

    @property
    def cluster(self) -> bool:
        return bool(self.seeds)

    @classmethod
    def parse(cls, url: str) -> RedisNodes:
        scheme, _, rest = url.partition("://")
        if scheme in ("redis", "rediss", "unix"):
            return cls(url)
        if scheme not in CLUSTER_SCHEMES or not rest:
            raise ValueError(
                "QUIZMESH_REDIS_URL must be redis://HOST:PORT/DB or rediss://... for one "
                "server, or redis+cluster://HOST:PORT,HOST:PORT or rediss+cluster://... for "
                f"a Redis Cluster's seed nodes; got {url!r}"
            )
        # The nodes end at the first "/" (the database) or "?" (the options).
        end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        netloc, tail = rest[:end], rest[end:]
        # The last "@" ends the credentials (one in a password is written %40).
        credentials, at, hosts = netloc.rpartition("@")
        seeds = []
        for node in hosts.split(","):
            try:
                parts = urlsplit(f"//{node.strip()}")
                host, port = parts.hostname, parts.port or 6379
            except ValueError as e:
                raise ValueError(f"QUIZMESH_REDIS_URL: bad cluster node {node!r}: {e}") from None
            if not host:
                raise ValueError(
                    f"QUIZMESH_REDIS_URL: a cluster URL needs HOST:PORT seed nodes, got {url!r}"
                )
            seeds.append((host, port))
        path = urlsplit(f"//x{tail}").path.strip("/")
        if path not in ("", "0"):
            raise ValueError(
                f"QUIZMESH_REDIS_URL: a Redis Cluster has database 0 only, got /{path}"
            )
        host, port = seeds[0]
        node_host = f"[{host}]" if ":" in host else host
        first = f"{CLUSTER_SCHEMES[scheme]}://{credentials}{at}{node_host}:{port}{tail}"
        return cls(first, tuple(seeds))
