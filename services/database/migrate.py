"""`quizmesh-migrate`: brings the database schema to the latest revision."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from services.database.engine import create_engine
from services.mesh.config import CommonSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrades the database at `url` (also used by tests and the dev stack)."""
    config = alembic_config(url)
    engine = create_engine(url)

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="database URL (default: QUIZMESH_DATABASE_URL)")
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args()
    url = args.url or CommonSettings().database_url
    asyncio.run(upgrade(url, args.revision))
    print(f"database at revision {args.revision}")


if __name__ == "__main__":
    main()
