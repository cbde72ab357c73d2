"""A tiny aiohttp WebSocket echo server: the transport-cost baseline.

``update_latency.py`` measures round trips through it, so a reader can tell
how much of Syncline's update latency is aiohttp + loopback + JSON alone.

Run: ``python bench/echo_server.py --port 8081``. Prints ``Ready.``; GET /version answers.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def version(request: web.Request) -> web.Response:
    return web.Response(text="echo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/version", version)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: print("Ready.", flush=True),
    )


if __name__ == "__main__":
    main()
