"""The client-facing HTTP and WebSocket API, wire-compatible with Convex.

- ``GET /api/sync``, ``GET /api/<client version>/sync``: the sync protocol.
- ``POST /api/query|mutation|action|function``: Convex's HTTP API; the body is
  ``{"path", "args", "format"}`` with ``args`` an object (``format: "json"``,
  the documented form) or ``[object]`` (the npm client's
  ``"convex_encoded_json"``).
- ``POST /api/run/<dir>/<module>/<name>``: Convex's run endpoint.
- ``POST /api/query_ts``; ``GET /version``.
- ``POST /api/deploy``: ``{"bundle": {path: source}, "dryRun": bool}`` from an admin
  (clusters only).
- ``GET /dashboard``: the admin dashboard, a static page that signs in with an admin
  key and works through the sync protocol and the system functions (``_system/...``).
Function failures answer 560 with ``{"status": "error", ...}`` as Convex does;
malformed requests answer 400 with ``{"code", "message"}``. A client address past
its limits (:class:`ClientLimits`) gets 429, or a failed response to a sync-protocol
mutation or action, which then never reaches a function.
"""

from __future__ import annotations

import json
import logging
import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from syncline._errors import (
    ProtocolError,
    RateLimitedError,
    RequestTooLargeError,
    SynclineError,
)
from syncline._version import __version__
from syncline.functions import FunctionKind, run_path_to_function_path
from syncline.ratelimit import (
    BucketSpec,
    ClientLimits,
    MemoryRateLimiter,
    RateLimiter,
    check,
    client_address,
)
from syncline.server._backend import Backend, CallResult, DeployCall, FunctionCall, error_result
from syncline.sync import encode_ts
from syncline.sync._protocol import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
DASHBOARD_DIR = Path(__file__).parent / "dashboard"
DASHBOARD_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
DASHBOARD_HEADERS = {
    # The page holds an admin key: it runs only its own code, talks only to this
    # server, and is never framed by another site.
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
HTTP_TOO_MANY_REQUESTS = 429


class HttpApi:
    """Builds the aiohttp application over a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        *,
        limits: ClientLimits | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._backend = backend
        self._limits = limits or ClientLimits.off()
        self._limiter = limiter or MemoryRateLimiter()
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/version", self._version)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/sync", self._sync)
        app.router.add_get("/api/{client_version}/sync", self._sync)
        app.router.add_post("/api/query", self._kind_handler(FunctionKind.QUERY))
        app.router.add_post("/api/mutation", self._kind_handler(FunctionKind.MUTATION))
        app.router.add_post("/api/action", self._kind_handler(FunctionKind.ACTION))
        app.router.add_post("/api/function", self._any_function)
        app.router.add_post("/api/run/{function_path:.+}", self._run)
        app.router.add_post("/api/query_ts", self._query_ts)
        app.router.add_post("/api/deploy", self._deploy)
        app.router.add_get("/dashboard", self._dashboard)
        app.router.add_get("/dashboard/{name:[A-Za-z0-9_.-]*}", self._dashboard)
        return app

    @property
    def connection_count(self) -> int:
        """Open sync-protocol connections."""
        return len(self._sockets)

    async def close_sockets(self) -> None:
        """Close every sync connection (clients reconnect to the next server)."""
        for ws in list(self._sockets):
            await ws.close(code=1012, message=b"server restarting")

    # -- plain endpoints -------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.Response(text=__version__)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(
            text=f"Syncline {__version__} is running. Clients connect to "
            f"{request.url.with_path('/')} (WebSocket /api/sync, HTTP /api/query etc.).\n"
        )

    async def _dashboard(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        path = DASHBOARD_DIR / name
        content_type = DASHBOARD_TYPES.get(path.suffix)
        if name.startswith(".") or content_type is None or not path.is_file():
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
        response = web.FileResponse(path, headers=DASHBOARD_HEADERS)
        response.content_type = content_type
        return response

    async def _query_ts(self, request: web.Request) -> web.Response:
        return web.json_response({"ts": encode_ts(await self._backend.latest_ts())})

    # -- limits ----------------------------------------------------------------

    def _address(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers, self._limits.trusted_proxies)

    async def _admit(self, address: str, spec: BucketSpec | None, what: str) -> None:
        await check(self._limiter, f"{what}:{address}", spec, f"client {address}")

    # -- function calls --------------------------------------------------------

    def _kind_handler(self, kind: FunctionKind) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return await self._call(request, lambda body: (body.get("path"), kind))

        return handler

    async def _any_function(self, request: web.Request) -> web.Response:
        return await self._call(request, lambda body: (body.get("path"), None))

    async def _run(self, request: web.Request) -> web.Response:
        raw = request.match_info["function_path"]
        return await self._call(request, lambda body: (run_path_to_function_path(raw), None))

    async def _call(
        self,
        request: web.Request,
        target: Callable[[dict[str, Any]], tuple[object, FunctionKind | None]],
    ) -> web.Response:
        try:
            await self._admit(self._address(request), self._limits.requests_per_ip, "ip")
            body = await _json_body(request)
            path, kind = target(body)
            if not isinstance(path, str):
                raise ProtocolError("request body needs a string 'path' (e.g. \"messages:list\")")
            fmt = body.get("format", "json")
            if fmt not in ("json", "convex_encoded_json"):
                raise ProtocolError(
                    f"unsupported format {fmt!r}; use 'json' or 'convex_encoded_json'"
                )
            call = FunctionCall(
                path, kind, _args(body.get("args", {})), request.headers.get("Authorization")
            )
        except RateLimitedError as exc:
            return _refused(exc)
        except SynclineError as exc:
            return _response(error_result(exc))
        return _response(await self._backend.call(call))

    async def _deploy(self, request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            bundle, dry_run = body.get("bundle"), body.get("dryRun", False)
            if not isinstance(bundle, dict) or not isinstance(dry_run, bool):
                raise ProtocolError(
                    'request body must be {"bundle": {path: source}, "dryRun": bool}'
                )
            deploy = DeployCall(json.dumps(bundle), dry_run, request.headers.get("Authorization"))
        except SynclineError as exc:
            return _response(error_result(exc))
        return _response(await self._backend.deploy(deploy))

    # -- the sync protocol -----------------------------------------------------

    async def _sync(self, request: web.Request) -> web.StreamResponse:
        address = self._address(request)
        try:
            await self._admit(address, self._limits.connections_per_ip, "ip-connect")
        except RateLimitedError as exc:
            return _refused(exc)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, compress=False)
        await ws.prepare(request)
        self._sockets.add(ws)

        async def send(frame: str) -> None:
            if not ws.closed:
                try:
                    await ws.send_str(frame)
                except ConnectionError:
                    log.debug("client went away while sending")

        async def close(reason: str) -> None:
            await ws.close(code=1000, message=reason.encode()[:120])

        async def frames() -> AsyncIterator[str | bytes]:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    refusal = await self._admit_request(address, message.data)
                    if refusal is not None:
                        await send(refusal)
                        continue
                    yield message.data
                elif message.type is WSMsgType.ERROR:
                    # e.g. a frame over the size limit: aiohttp closes with 1009.
                    log.info("sync connection error: %s", ws.exception())
                    return

        await self._backend.serve_session(frames(), send, close)
        if not ws.closed:
            await ws.close()
        return ws

    async def _admit_request(self, address: str, frame: str | bytes) -> str | None:
        """A failed response if ``frame`` is a mutation or action past the address's
        limit (it is then not passed on); None to pass it on."""
        spec = self._limits.requests_per_ip
        if spec is None:
            return None
        try:
            message = json.loads(frame)
        except (ValueError, UnicodeDecodeError):
            return None  # the session reports the malformed frame
        if not isinstance(message, dict) or message.get("type") not in ("Mutation", "Action"):
            return None
        try:
            await self._admit(address, spec, "ip")
        except RateLimitedError as exc:
            return json.dumps(
                {
                    "type": f"{message['type']}Response",
                    "requestId": message.get("requestId"),
                    "success": False,
                    "result": f"{exc.code}: {exc.message}",
                    "logLines": [],
                }
            )
        return None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestTooLargeError(f"request body exceeds {MAX_BODY_BYTES} bytes") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    return body


def _args(args: object) -> object:
    if isinstance(args, list):
        if len(args) != 1:
            raise ProtocolError("'args' must be an object or a one-element array [object]")
        return args[0]
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be an object")
    return args


def _response(result: CallResult, retry_after_seconds: float = 1.0) -> web.Response:
    response = web.Response(text=result.body, status=result.status, content_type="application/json")
    if result.status == HTTP_TOO_MANY_REQUESTS:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))
    return response


def _refused(exc: RateLimitedError) -> web.Response:
    return _response(error_result(exc), exc.retry_after_seconds)
