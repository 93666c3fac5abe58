"""SQL literals rendered by us for multi-row statements on MySQL/MariaDB.

Through an executemany, aiomysql escapes every value in Python, which was most of
the cost of a bulk insert (players, answers). Statements rendered here quote ids
that are plain letters and digits (all the services issue) as they are and send
anything else through the driver's own escaping for the connection; numbers are
written with `:d`, which refuses anything but an int or bool.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

Quote = Callable[[str], str]


async def mysql_quoting(conn: AsyncConnection) -> Quote | None:
    """A string-literal function (quotes included) for `conn` on MySQL, else None."""
    if conn.dialect.name != "mysql":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    escape: Callable[[str], str] | None = getattr(driver, "escape", None)
    if escape is None:
        return None

    def quote(value: str) -> str:
        return f"'{value}'" if value.isascii() and value.isalnum() else escape(value)

    return quote


async def execute_rendered(conn: AsyncConnection, sql: str) -> None:
    """Runs a statement rendered with `mysql_quoting`; no parameters, so the driver
    does not read a '%' in the text as a placeholder."""
    await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
