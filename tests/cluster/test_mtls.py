"""mTLS between services: a mutation crosses gateway -> sync -> txn over mutual TLS,
and each service refuses callers without a certificate of the deployment's CA, or
whose role may not call the method."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from syncline.cluster import Gateway, GatewayConfig, SyncConfig, SyncNode
from syncline.cluster._tls import ServiceTls, service_channel
from syncline.storage import PostgresStorage
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc
from tests.cluster.conftest import BANK, SESSION_TIMEOUT_SECONDS, ServiceProcess
from tests.fixtures.certs import CertificateAuthority
from tests.fixtures.infra import assert_eventually

pytestmark = pytest.mark.cluster


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


def _flags(tls: ServiceTls) -> list[str]:
    files = {"cert": tls.cert_file, "key": tls.key_file, "ca": tls.ca_file}
    return [arg for name, path in files.items() for arg in (f"--tls-{name}", str(path))]


async def _health(address: str, tls: ServiceTls | None) -> pb.HealthResponse:
    async with service_channel(address, tls) as channel:
        return await pb_grpc.HealthStub(channel).Check(pb.HealthRequest(), timeout=2.0)


@pytest.fixture
async def txn(
    ca: CertificateAuthority, pg_dsn: str, zk_hosts: str, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    args = ["--app", str(BANK), "--pg-dsn", pg_dsn, "--zk-hosts", zk_hosts]
    args += ["--session-timeout", str(SESSION_TIMEOUT_SECONDS), *_flags(ca.issue("txn"))]
    process = ServiceProcess("txn", args, tmp_path / "txn.log")
    process.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (await _health(process.address, ca.issue("sync"))).role == "leader":
                    break
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline, process.log()[-3000:]
            await asyncio.sleep(0.1)
        yield process
    finally:
        process.stop()


async def test_a_mutation_crosses_every_hop_over_mtls(
    ca: CertificateAuthority, txn: ServiceProcess, pg_dsn: str, zk_hosts: str
) -> None:
    node = SyncNode(
        SyncConfig(
            app_dir=BANK,
            zk_hosts=zk_hosts,
            session_timeout_seconds=SESSION_TIMEOUT_SECONDS,
            tls=ca.issue("sync"),
        ),
        PostgresStorage(pg_dsn, pool_min=1, pool_max=4),
    )
    gateway = Gateway(GatewayConfig(zk_hosts=zk_hosts, tls=ca.issue("gateway")))
    async with node, gateway:
        await assert_eventually(lambda: gateway.ready, what="the gateway to see the sync node")
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{gateway.url}/api/mutation",
                json={"path": "bank:increment", "args": {"name": "tls"}, "format": "json"},
            )
            assert response.status == 200, await response.text()
        # The sync node serves only mTLS: a caller without a certificate cannot connect.
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:
            await _health(node.address, None)
        assert plaintext.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_callers_are_checked_by_ca_and_role(
    ca: CertificateAuthority, txn: ServiceProcess, tmp_path: Path
) -> None:
    lookup = pb.FindCommitRequest(idempotency_key="nobody")
    async with service_channel(txn.address, ca.issue("scheduler")) as channel:
        found = await pb_grpc.TxnStub(channel).FindCommit(lookup, timeout=5)
        assert not found.HasField("committed")
    # A gateway may check the txn node's health, but never commit or look up commits.
    gateway = ca.issue("gateway")
    assert (await _health(txn.address, gateway)).role == "leader"
    async with service_channel(txn.address, gateway) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await pb_grpc.TxnStub(channel).FindCommit(lookup, timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "gateway may not call /syncline.v1.Txn/FindCommit" in str(denied.value.details())
    # A certificate from another CA, even naming a trusted role, is refused.
    impostor = CertificateAuthority(tmp_path / "other-ca").issue("sync", trusted_ca=ca.ca_file)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _health(txn.address, impostor)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    # So is a caller with no certificate at all.
    with pytest.raises(grpc.aio.AioRpcError):
        await _health(txn.address, None)
