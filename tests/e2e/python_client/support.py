"""What the native client's tests share: the app they run, helpers, a restartable
``syncline dev`` process and a TCP proxy that loses replies and cuts connections."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from syncline.client import (
    Client,
    Subscription,
)
from tests.fixtures.infra import assert_eventually as eventually
from tests.fixtures.jwt_issuer import JwtIssuer

ISSUER = "https://issuer.python-client.test"
AUDIENCE = "python-client-tests"
FAST_BACKOFF = (0.02, 0.5)

APP_FILES = {
    # Tables are declared so that they exist before the first insert: concurrent
    # first inserts into an undeclared table do not conflict (see the report).
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema(
            {
                "counters": define_table({"name": v.string(), "value": v.int64()}).index(
                    "by_name", ["name"]
                ),
                "blobs": define_table({"value": v.any()}),
            }
        )
    """,
    "counter.py": """
        from syncline import mutation, query, v


        async def _find(ctx, name):
            return await (
                ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
            )


        @query(args={"name": v.string()})
        async def get(ctx, name):
            doc = await _find(ctx, name)
            return 0 if doc is None else doc["value"]


        @mutation(args={"name": v.string(), "by": v.optional(v.int64())})
        async def increment(ctx, name, by=1):
            doc = await _find(ctx, name)
            if doc is None:
                await ctx.db.insert("counters", {"name": name, "value": by})
                return by
            await ctx.db.patch(doc["_id"], {"value": doc["value"] + by})
            return doc["value"] + by
    """,
    "values.py": """
        from syncline import action, mutation, query, v


        @query
        async def echo(ctx, value=None):
            return value


        @mutation(args={"value": v.any()})
        async def store(ctx, value):
            doc_id = await ctx.db.insert("blobs", {"value": value})
            return (await ctx.db.get(doc_id))["value"]


        @action
        async def echo_action(ctx, value=None):
            return await ctx.run_query("values:echo", {"value": value})
    """,
    "errors.py": """
        import asyncio

        from syncline import AppError, action, internal_query, mutation, query, v


        @mutation(args={"code": v.string()})
        async def fail(ctx, code):
            await ctx.db.insert("counters", {"name": "never", "value": 1})
            raise AppError({"code": code, "big": 2**40, "raw": b"\\x01"})


        @action
        async def fail_action(ctx):
            raise AppError("plain message")


        @query(args={"name": v.string()})
        async def odd_fails(ctx, name):
            doc = await (
                ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).first()
            )
            value = 0 if doc is None else doc["value"]
            if value % 2:
                raise AppError({"odd": value})
            return value


        @action(args={"seconds": v.float64()})
        async def slow(ctx, seconds):
            await asyncio.sleep(seconds)
            return "done"


        @internal_query
        async def secret(ctx):
            return "internal only"
    """,
    "ops.py": """
        import logging

        from syncline import action, internal, mutation, query, v

        log = logging.getLogger(__name__)


        @mutation(args={"text": v.string()})
        async def noisy(ctx, text):
            print(text)
            log.warning("careful: %s", text)


        @mutation
        async def explode(ctx):
            return 1 / 0


        @mutation(args={"name": v.string(), "seconds": v.float64()})
        async def later(ctx, name, seconds):
            return await ctx.scheduler.run_after(seconds, internal.counter.increment, {"name": name})


        @query(args={"room": v.string()})
        async def peek_room(ctx, room):
            return await ctx.presence.messages(room)


        @mutation(args={"text": v.string()})
        async def noisy_later(ctx, text):
            await ctx.scheduler.run_after(0, internal.ops.noisy, {"text": text})


        @mutation
        async def schedule_system(ctx):
            return await ctx.scheduler.run_after(0, "_system/verify:effect", {"run": "x", "token": "t"})


        @action
        async def call_system(ctx):
            return await ctx.run_query("_system/deployment:describe")
    """,
    "whoami.py": """
        from syncline import query


        @query
        async def me(ctx):
            identity = await ctx.auth.get_user_identity()
            return None if identity is None else identity["tokenIdentifier"]
    """,
}


def write_app(directory: Path, issuer: JwtIssuer) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in APP_FILES.items():
        (directory / name).write_text(textwrap.dedent(source))
    (directory / "auth_config.py").write_text(
        "providers = [{"
        f'"type": "customJwt", "issuer": "{ISSUER}", "jwks": "{issuer.jwks_data_uri()}", '
        f'"algorithm": "RS256", "applicationID": "{AUDIENCE}"'
        "}]\n"
    )
    return directory


# -- helpers ---------------------------------------------------------------------------


async def next_value(subscription: Subscription, timeout_seconds: float = 5.0) -> Any:
    return await asyncio.wait_for(anext(subscription), timeout_seconds)


async def until(
    subscription: Subscription, predicate: Callable[[Any], bool], timeout_seconds: float = 5.0
) -> Any:
    """Values from ``subscription`` until one satisfies ``predicate``; returns it."""
    async with asyncio.timeout(timeout_seconds):
        async for value in subscription:
            if predicate(value):
                return value
    raise AssertionError("the subscription ended")


def ready_value(subscription: Subscription) -> Any:
    """The subscription's next value, which must be there already, without waiting."""
    step: Any = anext(subscription)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise AssertionError("the subscription had no new value ready; it would have waited")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


ClientFactory = Callable[..., Awaitable[Client]]


class DevProcess:
    """``syncline dev`` in a subprocess, on a fixed port, killed and restarted at will."""

    def __init__(self, app_dir: Path, data_dir: Path, log_path: Path) -> None:
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_seconds: float = 20.0) -> None:
        assert self._process is None
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syncline.cli",
                    "dev",
                    str(self.app_dir),
                    "--port",
                    str(self.port),
                    "--data",
                    str(self.data_dir),
                    "--no-watch",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise AssertionError(f"syncline dev exited:\n{self.log_path.read_text()}")
                try:
                    async with http.get(f"{self.url}/version") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(answers, timeout_seconds=timeout_seconds, what="GET /version")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no closing frames; the kernel resets the connections."""
        process, self._process = self._process, None
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
