"""Fixtures of the native client's tests: an embedded server, clients, a ``syncline
dev`` process and a proxy, all stopped by the test that started them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncline.client import Client
from syncline.devservers import FaultProxy
from syncline.server import EmbeddedConfig, EmbeddedServer
from tests.e2e.python_client.support import (
    FAST_BACKOFF,
    ClientFactory,
    DevProcess,
    write_app,
)
from tests.fixtures.jwt_issuer import JwtIssuer


@pytest.fixture(scope="module")
def jwt_issuer() -> JwtIssuer:
    return JwtIssuer("RS256")


@pytest.fixture
def app_dir(tmp_path: Path, jwt_issuer: JwtIssuer) -> Path:
    return write_app(tmp_path / "app", jwt_issuer)


@pytest.fixture
async def server(app_dir: Path, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    embedded = EmbeddedServer(EmbeddedConfig(app_dir=app_dir, data_dir=tmp_path / "data", port=0))
    await embedded.start()
    yield embedded
    await embedded.close()


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Open clients with fast reconnects; all are closed at the end of the test."""
    opened: list[Client] = []

    async def make(url: str, **kwargs: Any) -> Client:
        kwargs.setdefault("reconnect_backoff_seconds", FAST_BACKOFF)
        client = Client(url, **kwargs)
        opened.append(client)
        await client.connect()
        return client

    yield make
    for client in reversed(opened):
        await client.close()


@pytest.fixture
async def dev_process(app_dir: Path, tmp_path: Path) -> AsyncIterator[DevProcess]:
    process = DevProcess(app_dir, tmp_path / "dev-data", tmp_path / "dev.log")
    await process.start()
    yield process
    process.stop()
    # Shown by pytest only when the test failed.
    print(process.log_path.read_text())


@pytest.fixture
async def proxy(server: EmbeddedServer) -> AsyncIterator[FaultProxy]:
    front = FaultProxy(server.port)
    await front.start()
    yield front
    await front.close()
