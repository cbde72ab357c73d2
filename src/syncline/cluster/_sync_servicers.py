"""The sync node's gRPC edge: the Sync and Health services, answered by a SyncNode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from opentelemetry.trace import SpanKind

from syncline._errors import UnavailableError
from syncline.telemetry import context_from, tracer
from syncline.v1 import syncline_pb2 as pb
from syncline.v1 import syncline_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from syncline.cluster._sync_node import SyncNode


def add_sync_servicers(server: grpc.aio.Server, node: SyncNode) -> None:
    pb_grpc.add_SyncServicer_to_server(_SyncServicer(node), server)
    pb_grpc.add_HealthServicer_to_server(_HealthServicer(node), server)


class _SyncServicer(pb_grpc.SyncServicer):  # type: ignore[misc]
    def __init__(self, node: SyncNode) -> None:
        self._node = node

    async def Session(
        self, request_iterator: AsyncIterator[pb.ClientFrame], context: grpc.aio.ServicerContext
    ) -> None:
        await self._node.serve_session(request_iterator, context)

    async def Sessions(
        self, request_iterator: AsyncIterator[pb.SessionFrames], context: grpc.aio.ServicerContext
    ) -> None:
        await self._node.serve_sessions(request_iterator, context)

    async def Call(
        self, request: pb.CallRequest, context: grpc.aio.ServicerContext
    ) -> pb.CallResponse:
        metadata = dict(context.invocation_metadata() or ())
        try:
            with tracer.start_as_current_span(
                "sync call",
                context=context_from(metadata.get("traceparent")),
                kind=SpanKind.SERVER,
                attributes={"syncline.function.path": request.path[:256]},
            ):
                return await self._node.call(request)
        except UnavailableError as exc:
            message = exc.message
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        raise AssertionError("unreachable")

    async def Deploy(
        self, request: pb.DeployRequest, context: grpc.aio.ServicerContext
    ) -> pb.CallResponse:
        try:
            return await self._node.deploy(request)
        except UnavailableError as exc:
            message = exc.message
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        raise AssertionError("unreachable")


class _HealthServicer(pb_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, node: SyncNode) -> None:
        self._node = node

    async def Check(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        return self._node.health()
