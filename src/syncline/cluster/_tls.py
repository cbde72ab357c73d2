"""Mutual TLS between services, and which service may call which method.

Every service presents a certificate signed by the deployment's CA, whose
subject common name is its role (``txn``, ``sync``, ``gateway``, ``scheduler``)
and whose subject alternative names include ``SERVER_NAME``. A service accepts
a call only from a certificate of that CA, and only from a role that method
serves: a compromised gateway can open sessions on sync nodes but cannot commit
to the txn leader directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from syncline._errors import ConfigError

SERVER_NAME = "syncline"
"""The name every service certificate carries, and clients check."""

ROLES = ("txn", "sync", "gateway", "scheduler")

ALLOWED_CALLERS: dict[str, frozenset[str]] = {
    "/syncline.v1.Txn/CommitBatch": frozenset({"sync", "scheduler"}),
    "/syncline.v1.Txn/FindCommit": frozenset({"sync", "scheduler"}),
    "/syncline.v1.Txn/Deploy": frozenset({"sync"}),
    "/syncline.v1.Sync/Session": frozenset({"gateway"}),
    "/syncline.v1.Sync/Sessions": frozenset({"gateway"}),
    "/syncline.v1.Sync/Call": frozenset({"gateway"}),
    "/syncline.v1.Sync/Deploy": frozenset({"gateway"}),
    "/syncline.v1.Health/Check": frozenset(ROLES),
}
"""Which roles may call each method; a method not listed is refused to everyone."""


@dataclass(frozen=True)
class ServiceTls:
    """This service's certificate and key, and the CA every service's is signed by
    (PEM files, read when a server or channel is made; never logged)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file", "ca_file"):
            path = getattr(self, name)
            if not Path(path).is_file():
                raise ConfigError(f"TLS {name.removesuffix('_file')} file {path} does not exist")

    def _read(self) -> tuple[bytes, bytes, bytes]:
        return (
            Path(self.cert_file).read_bytes(),
            Path(self.key_file).read_bytes(),
            Path(self.ca_file).read_bytes(),
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key, ca = self._read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        cert, key, ca = self._read()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


def tls_from_flags(cert: str | None, key: str | None, ca: str | None) -> ServiceTls | None:
    """The three flags together, or none of them."""
    given = [value for value in (cert, key, ca) if value]
    if not given:
        return None
    if len(given) != 3:
        raise ConfigError("mTLS needs all of --tls-cert, --tls-key and --tls-ca")
    assert cert and key and ca
    return ServiceTls(Path(cert), Path(key), Path(ca))


def secure_port(server: grpc.aio.Server, address: str, tls: ServiceTls | None) -> int:
    """Listen on ``address``, with mTLS when ``tls`` is given."""
    if tls is None:
        port: int = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.server_credentials())
    return port


def service_channel(
    target: str, tls: ServiceTls | None, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel to another service, with mTLS when ``tls`` is given."""
    options = list(options or [])
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    options.append(("grpc.ssl_target_name_override", SERVER_NAME))
    return grpc.aio.secure_channel(target, tls.channel_credentials(), options=options)


def caller_role(context: grpc.aio.ServicerContext) -> str | None:
    """The role named by the calling service's certificate, if it presented one."""
    names = context.auth_context().get("x509_common_name") or []
    role = names[0].decode() if names else None
    return role if role in ROLES else None


class MethodAuthorization(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses each call whose caller's role may not call that method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        allowed = ALLOWED_CALLERS.get(details.method, frozenset())
        return _guarded(handler, details.method, allowed)


def _guarded(
    handler: grpc.RpcMethodHandler, method: str, allowed: frozenset[str]
) -> grpc.RpcMethodHandler:
    async def check(context: grpc.aio.ServicerContext) -> None:
        role = caller_role(context)
        if role not in allowed:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{role or 'an unidentified caller'} may not call {method}",
            )

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_stream is not None:
        inner_ss = handler.stream_stream
        if inspect.isasyncgenfunction(inner_ss):

            async def streamed(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(context)
                async for response in inner_ss(requests, context):
                    yield response

            wrapped: Any = streamed
        else:  # writes through context.write

            async def written(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(context)
                return await inner_ss(requests, context)

            wrapped = written
        return grpc.stream_stream_rpc_method_handler(
            wrapped, handler.request_deserializer, handler.response_serializer
        )
    return handler  # this project's services have no other shapes


def server(tls: ServiceTls | None, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Server:
    """A gRPC server; with mTLS it checks each caller's role per method."""
    interceptors = [MethodAuthorization()] if tls is not None else []
    return grpc.aio.server(options=options, interceptors=interceptors)
