"""The baseline: what a user would write instead of Syncline for "insert an event".

A minimal aiohttp server with ``POST /insert`` (body ``{"key": "..."}``) doing
one ``INSERT INTO events(key, n) VALUES (?, 1.0)`` per request into a SQLite
file with the settings Syncline uses (WAL, ``synchronous=FULL``), committed
per request, so every acknowledged insert is durable. The blocking sqlite3
call runs on a single-thread executor that owns the one connection, as a
competent user would do to keep the event loop free while SQLite fsyncs.
The table has an index on ``key``, as the Syncline app's ``by_key`` index.

Run: ``python bench/plain_endpoint.py --port 8080 --db /tmp/x/plain.sqlite3``.
Prints ``Ready.`` on stdout when serving; ``GET /version`` answers; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, n REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_key ON events(key);
"""


class EventStore:
    """One SQLite connection, used only from one dedicated writer thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _call(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: each INSERT is its own transaction, durable when it returns.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        self._conn = conn

    def _insert(self, key: str) -> int:
        assert self._conn is not None
        cursor = self._conn.execute("INSERT INTO events(key, n) VALUES (?, ?)", (key, 1.0))
        return int(cursor.lastrowid or 0)

    async def open(self) -> None:
        await self._call(self._open)

    async def insert(self, key: str) -> int:
        return await self._call(self._insert, key)

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)


def build_app(store: EventStore) -> web.Application:
    async def insert(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            key = body["key"]
            if not isinstance(key, str):
                raise TypeError("key must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        row_id = await store.insert(key)
        return web.json_response({"id": row_id}, dumps=json.dumps)

    async def version(request: web.Request) -> web.Response:
        return web.Response(text="plain")

    async def on_startup(app: web.Application) -> None:
        await store.open()

    async def on_cleanup(app: web.Application) -> None:
        await store.close()

    app = web.Application()
    app.router.add_post("/insert", insert)
    app.router.add_get("/version", version)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file")
    args = parser.parse_args()
    app = build_app(EventStore(args.db))
    # run_app stops cleanly on SIGTERM/SIGINT; the access log would only cost time.
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: print("Ready.", flush=True),
    )


if __name__ == "__main__":
    main()
