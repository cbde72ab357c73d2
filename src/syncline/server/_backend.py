"""What the client-facing API serves from: function calls and sync sessions.

The HTTP/WebSocket layer (``_http.py``) parses requests and moves frames; a
:class:`Backend` does the work. :class:`LocalBackend` runs functions in this
process (the embedded server, and each sync node behind the gateway); the
gateway's backend forwards to sync nodes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from syncline._errors import (
    HTTP_STATUS_BY_CODE,
    AppError,
    AuthenticationError,
    ProtocolError,
    SynclineError,
)
from syncline.functions import FunctionKind
from syncline.runtime import FunctionRunner, Identity
from syncline.sync import Authenticator, SubscriptionManager, SyncSession, error_for_client
from syncline.values import from_json, to_json

Send = Callable[[str], Awaitable[None]]
Close = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class FunctionCall:
    """One HTTP API call, parsed but not yet checked against the app."""

    path: str
    kind: FunctionKind | None
    """None: whatever kind the function is (``/api/function``, ``/api/run``)."""
    args: Any
    """Convex JSON (not yet decoded into values)."""
    authorization: str | None
    """The request's ``Authorization`` header."""


@dataclass(frozen=True)
class CallResult:
    """The HTTP answer to a call: status and JSON body, as Convex shapes them."""

    status: int
    body: str


class Backend(Protocol):
    async def call(self, call: FunctionCall) -> CallResult: ...

    async def serve_session(
        self, frames: AsyncIterator[str | bytes], send: Send, close: Close
    ) -> None:
        """Serve one sync-protocol connection until the client or the session ends it."""
        ...

    async def latest_ts(self) -> int: ...

    async def deploy(self, request: DeployCall) -> CallResult:
        """A new version of the app (``POST /api/deploy``), from an admin."""
        ...


@dataclass(frozen=True)
class DeployCall:
    """``POST /api/deploy``: the app's sources, checked where they are applied."""

    bundle_json: str
    dry_run: bool
    authorization: str | None


class LocalBackend:
    """Runs functions and sessions in this process."""

    def __init__(
        self,
        *,
        runner: FunctionRunner,
        manager: SubscriptionManager,
        authenticator: Callable[[], Authenticator],
    ) -> None:
        self._runner = runner
        self._manager = manager
        self._authenticator = authenticator

    async def call(self, call: FunctionCall) -> CallResult:
        try:
            identity = await self._authenticator().from_authorization_header(call.authorization)
            await self._runner.admit(identity)
            value, log_lines = await self._execute(call, from_json(call.args), identity)
        except SynclineError as exc:
            return error_result(exc)
        body = {"status": "success", "value": to_json(value), "logLines": log_lines}
        return CallResult(200, dumps(body))

    async def _execute(
        self, call: FunctionCall, args: Any, identity: Identity
    ) -> tuple[Any, list[str]]:
        kind = call.kind or self._runner.kind_of(call.path, identity)
        if kind is FunctionKind.QUERY:
            query = await self._runner.run_query(call.path, args, identity)
            return query.value, query.log_lines
        if kind is FunctionKind.MUTATION:
            mutation = await self._runner.run_mutation(call.path, args, identity)
            return mutation.value, mutation.log_lines
        action = await self._runner.run_action(call.path, args, identity)
        return action.value, action.log_lines

    async def serve_session(
        self, frames: AsyncIterator[str | bytes], send: Send, close: Close
    ) -> None:
        session = SyncSession(
            manager=self._manager,
            runner=self._runner,
            authenticator=self._authenticator(),
            send=send,
            close=close,
        )
        await session.run(frames)

    async def latest_ts(self) -> int:
        return self._manager.ts

    async def deploy(self, request: DeployCall) -> CallResult:
        return error_result(
            ProtocolError(
                "this server runs one app directory and reloads it when its files change; "
                "`syncline deploy` is for clusters (deploy to a gateway's URL)"
            )
        )


def error_result(exc: SynclineError) -> CallResult:
    """A failed call as Convex answers it: 560 for function failures, else code and message."""
    status = HTTP_STATUS_BY_CODE.get(exc.code, 500)
    if status == 560 or exc.code == "InternalError":
        message, error_data = error_for_client(exc)
        body: dict[str, Any] = {"status": "error", "errorMessage": message, "logLines": []}
        if isinstance(exc, AppError):
            body["errorData"] = error_data
        return CallResult(560 if status in (500, 560) else status, dumps(body))
    if isinstance(exc, AuthenticationError):
        status = 401
    return CallResult(status, dumps({"code": exc.code, "message": exc.message}))


def parse_kind(text: str) -> FunctionKind | None:
    """The kind named on the wire ("" for any); ProtocolError names a bad one."""
    if not text:
        return None
    try:
        return FunctionKind(text)
    except ValueError:
        raise ProtocolError(f"unknown function kind {text!r}") from None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
