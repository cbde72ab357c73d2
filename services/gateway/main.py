"""Composition root of the gateway: the client-facing edge of a region.

    python services/gateway/main.py --zk-hosts HOSTS [--region R] [--port P] [--grpc-port G]

Every flag can also come from the environment (``SYNCLINE_<NAME>``, named in each
flag's help); flags win.
"""

from __future__ import annotations

import argparse
import os
import sys

from syncline.cluster import Gateway, GatewayConfig
from syncline.cluster._service import run_service


def _env(name: str) -> str | None:
    """The only place this service reads the environment."""
    return os.environ.get(f"SYNCLINE_{name}")


def load_config(argv: list[str] | None = None) -> GatewayConfig:
    parser = argparse.ArgumentParser(prog="syncline-gateway", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--zk-hosts", default=_env("ZK_HOSTS"), help="ZooKeeper hosts[/chroot] (SYNCLINE_ZK_HOSTS)"
    )
    parser.add_argument(
        "--region", default=_env("REGION") or "local", help="region served (SYNCLINE_REGION)"
    )
    parser.add_argument(
        "--host",
        default=_env("GATEWAY_HOST") or "127.0.0.1",
        help="interface for HTTP/WebSocket and gRPC (SYNCLINE_GATEWAY_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env("GATEWAY_PORT") or 0),
        help="HTTP/WebSocket port; 0 picks one (SYNCLINE_GATEWAY_PORT)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=int(_env("GATEWAY_GRPC_PORT") or -1),
        help="gRPC port for native clients; 0 picks one, -1 (default) serves none "
        "(SYNCLINE_GATEWAY_GRPC_PORT)",
    )
    args = parser.parse_args(argv)
    if not args.zk_hosts:
        parser.error("missing --zk-hosts (or SYNCLINE_ZK_HOSTS)")
    return GatewayConfig(
        zk_hosts=args.zk_hosts,
        region=args.region,
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
    )


def main(argv: list[str] | None = None) -> int:
    return run_service(Gateway(load_config(argv)))


if __name__ == "__main__":
    sys.exit(main())
