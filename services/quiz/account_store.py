"""The quiz service's SQL for host accounts: hosts and their refresh tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.database.tables import host_sessions, hosts


class EmailTaken(Exception):
    """Another account has this email."""


@dataclass(frozen=True, slots=True)
class HostRecord:
    host_id: str
    email: str
    display_name: str
    password_hash: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class NewSession:
    """A refresh token's row: its hash, the session (family) it belongs to."""

    token_hash: str
    family: str
    host_id: str
    created_ms: int
    expires_ms: int


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_host(self, host: HostRecord, first: NewSession) -> None:
        """The account and its first session, together or not at all."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(hosts).values(
                        id=host.host_id,
                        email=host.email,
                        display_name=host.display_name,
                        password_hash=host.password_hash,
                        created_ms=host.created_ms,
                    )
                )
                await conn.execute(insert(host_sessions).values(**_row(first)))
        except IntegrityError as e:
            raise EmailTaken(host.email) from e

    async def host_by_email(self, email: str) -> HostRecord | None:
        return await self._host(hosts.c.email == email)

    async def host(self, host_id: str) -> HostRecord | None:
        return await self._host(hosts.c.id == host_id)

    async def _host(self, where: ColumnElement[bool]) -> HostRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(hosts).where(where))).first()
        if row is None:
            return None
        return HostRecord(row.id, row.email, row.display_name, row.password_hash, row.created_ms)

    async def set_password_hash(self, host_id: str, password_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(hosts).where(hosts.c.id == host_id).values(password_hash=password_hash)
            )

    async def add_session(self, session: NewSession) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(host_sessions).values(**_row(session)))

    async def rotate(
        self, token_hash: str, next_hash: str, now_ms: int, expires_ms: int
    ) -> str | None:
        """Uses a refresh token: marks it used and adds the next one of its session;
        returns the host. None when it is unknown, expired or ended; a token used
        before ends its whole session (someone else has it, or had it)."""
        async with self.engine.begin() as conn:
            used = await conn.execute(
                update(host_sessions)
                .where(
                    host_sessions.c.token_hash == token_hash,
                    host_sessions.c.used_ms.is_(None),
                    host_sessions.c.revoked_ms.is_(None),
                    host_sessions.c.expires_ms > now_ms,
                )
                .values(used_ms=now_ms)
            )
            row = (
                await conn.execute(
                    select(host_sessions.c.family, host_sessions.c.host_id).where(
                        host_sessions.c.token_hash == token_hash
                    )
                )
            ).first()
            if row is None:
                return None
            if used.rowcount != 1:
                await _revoke(conn, row.family, now_ms)
                return None
            await conn.execute(
                insert(host_sessions).values(
                    **_row(NewSession(next_hash, row.family, row.host_id, now_ms, expires_ms))
                )
            )
            return str(row.host_id)

    async def end(self, token_hash: str, now_ms: int) -> bool:
        """Ends the session of a refresh token (any of its tokens); False when no
        session has this token."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(host_sessions.c.family).where(host_sessions.c.token_hash == token_hash)
                )
            ).first()
            if row is None:
                return False
            await _revoke(conn, row.family, now_ms)
            return True


async def _revoke(conn: AsyncConnection, family: str, now_ms: int) -> None:
    await conn.execute(
        update(host_sessions)
        .where(host_sessions.c.family == family, host_sessions.c.revoked_ms.is_(None))
        .values(revoked_ms=now_ms)
    )


def _row(session: NewSession) -> dict[str, object]:
    return {
        "token_hash": session.token_hash,
        "family": session.family,
        "host_id": session.host_id,
        "created_ms": session.created_ms,
        "expires_ms": session.expires_ms,
    }
