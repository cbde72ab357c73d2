"""The gateway: the client-facing edge of a cluster region.

It serves the same HTTP API and WebSocket sync protocol as the embedded server
(the official ``convex`` clients work unchanged), plus the same ``Sync``
service over gRPC for native clients. It runs no functions: each sync session
is relayed to a sync node of its region, picked by rendezvous hashing of the
session id over the live members in ZooKeeper, and moved to another node when
its node dies (:mod:`syncline.cluster._relay`). Each HTTP API call is forwarded
to a member as ``Sync.Call``.

``/healthz`` answers while the process runs; ``/readyz`` once a sync node of
the region is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from kazoo.exceptions import KazooException
from kazoo.protocol.states import KazooState
from opentelemetry.trace import SpanKind, Status, StatusCode

from syncline._errors import ConfigError, SynclineError, UnavailableError
from syncline.cluster import _tls as tls
from syncline.cluster._members import SyncMembers, publish_ephemeral
from syncline.cluster._mux import NodeLink
from syncline.cluster._relay import RelayedSession, SessionStream
from syncline.cluster._service import metrics_endpoint
from syncline.cluster._tls import ServiceTls
from syncline.cluster._wire import call_from_proto, call_to_proto
from syncline.cluster._zk import ZkSession
from syncline.functions import FunctionKind
from syncline.ratelimit import ClientLimits, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from syncline.server import CallResult, DeployCall, FunctionCall, HttpApi, error_result
from syncline.server._backend import Close, Send
from syncline.sync._protocol import MAX_FRAME_BYTES
from syncline.telemetry import current_traceparent, observe_gauge, rate_limit_refusals, tracer
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

REGISTRATION_SECONDS = 5.0
"""How often a gateway refreshes its registration (its session count)."""
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES + 1024),
    ("grpc.max_send_message_length", MAX_FRAME_BYTES + 1024),
    # Notice a sync node that stopped answering (SIGSTOP, a dead host) within seconds.
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    zk_hosts: str
    """ZooKeeper connection string, optionally with a chroot: ``host:port/chroot``."""
    region: str = "local"
    """The region whose sync nodes this gateway routes to."""
    host: str = "127.0.0.1"
    """Interface for the HTTP/WebSocket server and the gRPC server."""
    port: int = 0
    """HTTP/WebSocket port (0-65535); 0 picks a free one."""
    grpc_port: int | None = None
    """gRPC port for native clients; None: no gRPC server, 0: a free one."""
    zk_path: str = "/syncline/sync"
    """Where sync nodes register (the sync service's ``zk_path``)."""
    failover_timeout_seconds: float = 30.0
    """How long (> 0) a session or call waits for a live sync node before failing."""
    call_timeout_seconds: float = 120.0
    """Deadline (> 0) of one forwarded HTTP API call."""
    redis_url: str | None = None
    """The region's Redis, where every gateway's per-address buckets live (None:
    each gateway keeps its own)."""
    client_limits: ClientLimits = field(default_factory=ClientLimits)
    """Limits per client address (per-user limits apply on the sync nodes)."""
    tls: ServiceTls | None = None
    """mTLS to the sync nodes (None: plaintext, for a trusted network only)."""

    def __post_init__(self) -> None:
        if not self.region or "/" in self.region:
            raise ConfigError(f"region must be non-empty and contain no '/', got {self.region!r}")
        for name in ("port", "grpc_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ConfigError(f"{name} must be 0-65535, got {value}")
        for name in ("failover_timeout_seconds", "call_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")


class Gateway:
    """One gateway process: HTTP/WebSocket and gRPC edges over the region's sync nodes."""

    kind = "gateway"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.identifier = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.port = config.port
        self.grpc_port = config.grpc_port
        self.sessions: set[RelayedSession] = set()
        self._zk = ZkSession(config.zk_hosts)
        self.members = SyncMembers(self._zk, config.zk_path, config.region)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._links: dict[str, NodeLink] = {}
        """The shared Sessions stream to each sync node."""
        self._http: HttpApi | None = None
        self._limiter: RateLimiter = (
            RedisRateLimiter(config.redis_url) if config.redis_url else MemoryRateLimiter()
        )
        self._site_runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._registration: asyncio.Task[None] | None = None
        self._registration_wake = asyncio.Event()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def address(self) -> str:
        """``host:port`` of the HTTP/WebSocket server."""
        return f"{self.config.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return not self._closed and bool(self.members.members)

    async def start(self) -> None:
        await self._zk.start()
        await self.members.start()
        for bucket in ("ip", "ip-connect"):  # series from the start, for dashboards
            rate_limit_refusals.add(0, {"syncline.ratelimit.bucket": bucket})
        observe_gauge(
            "syncline.gateway.sessions",
            "{session}",
            "Client sessions this gateway relays to sync nodes",
            lambda: [(float(len(self.sessions)), {"syncline.region": self.config.region})],
        )
        self._http = HttpApi(
            _GatewayBackend(self), limits=self.config.client_limits, limiter=self._limiter
        )
        app = self._http.application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", metrics_endpoint)
        self._site_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._site_runner.addresses[0][1])
        if self.config.grpc_port is not None:
            self._grpc = grpc.aio.server(options=[("grpc.so_reuseport", 0), *_CHANNEL_OPTIONS])
            pb_grpc.add_SyncServicer_to_server(_GatewaySyncServicer(self), self._grpc)
            pb_grpc.add_HealthServicer_to_server(_HealthServicer(self), self._grpc)
            self.grpc_port = self._grpc.add_insecure_port(
                f"{self.config.host}:{self.config.grpc_port}"
            )
            await self._grpc.start()
        self._zk.on_state(
            lambda state: self._registration_wake.set() if state == KazooState.CONNECTED else None
        )
        self._registration = asyncio.create_task(self._keep_registered(), name="gateway-registry")
        log.info(
            "gateway %s serving %s (region %s, gRPC port %s)",
            self.identifier,
            self.url,
            self.config.region,
            self.grpc_port,
        )

    async def close(self) -> None:
        """Close every client connection (clients reconnect elsewhere) and stop."""
        if self._closed:
            return
        self._closed = True
        if self._registration is not None:
            self._registration.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._registration
        if self._http is not None:
            await self._http.close_sockets()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self._site_runner is not None:
            await self._site_runner.cleanup()
        for link in self._links.values():
            await link.close()
        self._links.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        await self._limiter.close()
        await self._zk.close()

    async def _keep_registered(self) -> None:
        """Keep this gateway's ephemeral node (for the health view) and its session
        count current; a new ZooKeeper session re-creates it."""
        path = f"{self.config.zk_path.rstrip('/')}/gateways/{self.config.region}/{self.identifier}"
        while True:
            await self._zk.connected.wait()
            data = json.dumps(
                {
                    "address": self.address,
                    "region": self.config.region,
                    "sessions": len(self.sessions),
                }
            ).encode()
            try:
                await asyncio.to_thread(publish_ephemeral, self._zk.client, path, data)
            except KazooException as exc:
                log.warning("updating the gateway's registration failed (%r); retrying", exc)
            self._registration_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registration_wake.wait(), REGISTRATION_SECONDS)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sync nodes ------------------------------------------------------------------------

    def _channel(self, address: str) -> grpc.aio.Channel:
        """One channel per sync node, kept open (gRPC reconnects it as needed)."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.service_channel(
                address, self.config.tls, options=_CHANNEL_OPTIONS
            )
        return channel

    def stub(self, address: str) -> pb_grpc.SyncStub:
        return pb_grpc.SyncStub(self._channel(address))

    def open_stream(self, address: str) -> SessionStream:
        """A new session on the node's shared stream (opened again if it was lost)."""
        link = self._links.get(address)
        if link is None or link.lost is not None:
            link = self._links[address] = NodeLink(address, self.stub(address))
        return link.open()

    async def relay(self, frames: AsyncIterator[str | bytes], send: Send, close: Close) -> None:
        session = RelayedSession(
            members=self.members,
            open_stream=self.open_stream,
            send=send,
            close=close,
            failover_timeout_seconds=self.config.failover_timeout_seconds,
        )
        self.sessions.add(session)
        try:
            await session.run(frames)
        finally:
            self.sessions.discard(session)

    async def forward_call(self, call: FunctionCall) -> CallResult:
        """Forward one HTTP API call; a query is retried on another node if one fails."""
        with tracer.start_as_current_span(
            "gateway call",
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "http", "syncline.function.path": call.path[:256]},
        ) as span:
            result = await self._forward_call(call)
            if result.status >= 400:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {result.status}"))
            return result

    async def _forward_call(self, call: FunctionCall) -> CallResult:
        message = call_to_proto(call)
        metadata = (("traceparent", current_traceparent()),)
        tried: set[str] = set()
        while True:
            try:
                member = await self.members.wait_pick(
                    uuid.uuid4().hex, avoid=tried, within=self.config.failover_timeout_seconds
                )
            except UnavailableError as exc:
                return error_result(exc)
            try:
                response = await self.stub(member.address).Call(
                    message, timeout=self.config.call_timeout_seconds, metadata=metadata
                )
            except grpc.aio.AioRpcError as exc:
                tried.add(member.address)
                if call.kind is FunctionKind.QUERY and exc.code() in _RETRYABLE:
                    continue  # a query changes nothing: run it elsewhere
                log.warning("call %s on %s failed: %s", call.path, member.address, exc.code())
                return error_result(
                    UnavailableError(
                        "the sync node running this call failed; whether a mutation or "
                        "action took effect is unknown"
                    )
                )
            return CallResult(response.http_status, response.body_json)

    async def deploy(self, request: DeployCall) -> CallResult:
        """Forward a deploy to a sync node, which checks the admin key and deploys
        through the txn leader."""
        try:
            member = await self.members.wait_pick(
                uuid.uuid4().hex, avoid=(), within=self.config.failover_timeout_seconds
            )
            message = pb.DeployRequest(
                bundle_json=request.bundle_json,
                dry_run=request.dry_run,
                authorization=request.authorization,
            )
            response = await self.stub(member.address).Deploy(
                message, timeout=self.config.call_timeout_seconds * 5
            )
        except UnavailableError as exc:
            return error_result(exc)
        except grpc.aio.AioRpcError as exc:
            log.warning("deploy through %s failed: %s", member.address, exc.code())
            return error_result(
                UnavailableError("the sync node handling the deploy failed; deploy again")
            )
        return CallResult(response.http_status, response.body_json)

    async def latest_ts(self) -> int:
        for member in random.sample(self.members.members, len(self.members.members)):
            health_stub = pb_grpc.HealthStub(self._channel(member.address))
            try:
                health = await health_stub.Check(pb.HealthRequest(), timeout=5.0)
            except grpc.aio.AioRpcError:
                continue
            return int(health.last_ts)
        raise UnavailableError(f"no sync node of region {self.config.region!r} answered")

    # -- health --------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        return {
            "region": self.config.region,
            "sessions": len(self.sessions),
            "sync_nodes": sorted(m.address for m in self.members.members),
        }

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self._status()})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self.ready
        return web.json_response(
            {"status": "ready" if ready else "not ready", **self._status()},
            status=200 if ready else 503,
        )


_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


class _GatewayBackend:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def call(self, call: FunctionCall) -> CallResult:
        return await self._gateway.forward_call(call)

    async def serve_session(
        self, frames: AsyncIterator[str | bytes], send: Send, close: Close
    ) -> None:
        await self._gateway.relay(frames, send, close)

    async def latest_ts(self) -> int:
        return await self._gateway.latest_ts()

    async def deploy(self, request: DeployCall) -> CallResult:
        return await self._gateway.deploy(request)


class _GatewaySyncServicer(pb_grpc.SyncServicer):  # type: ignore[misc]
    """The ``Sync`` service for native clients: the same relay as WebSocket sessions."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def Session(
        self, request_iterator: AsyncIterator[pb.ClientFrame], context: grpc.aio.ServicerContext
    ) -> None:
        async def frames() -> AsyncIterator[str | bytes]:
            async for message in request_iterator:
                yield message.json

        async def send(frame: str) -> None:
            try:
                await context.write(pb.ServerFrame(json=frame))
            except grpc.aio.BaseError as exc:
                log.debug("native client stream finished while sending: %r", exc)

        async def close(reason: str) -> None:
            log.debug("native client session closing: %s", reason)

        await self._gateway.relay(frames(), send, close)

    async def Call(
        self, request: pb.CallRequest, context: grpc.aio.ServicerContext
    ) -> pb.CallResponse:
        try:
            call = call_from_proto(request)
        except SynclineError as exc:
            result = error_result(exc)
        else:
            result = await self._gateway.forward_call(call)
        return pb.CallResponse(http_status=result.status, body_json=result.body)


class _HealthServicer(pb_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def Check(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        ready = self._gateway.ready
        return pb.HealthResponse(
            status=pb.HealthResponse.SERVING if ready else pb.HealthResponse.NOT_SERVING,
            role=self._gateway.kind,
        )
