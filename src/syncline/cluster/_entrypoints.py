"""The cluster services' command lines: flags and environment into a running node.

    python -m syncline.cluster txn     --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [...]
    python -m syncline.cluster sync    --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [...]
    python -m syncline.cluster gateway --zk-hosts HOSTS [--region R] [--port P] [...]
    python -m syncline.cluster scheduler --app APP_DIR --pg-dsn DSN --zk-hosts HOSTS [...]

``services/<name>/main.py`` are the same entry points as scripts. Every flag can
also come from the environment (``SYNCLINE_<NAME>``, named in each flag's help);
flags win. The admin secret comes only from the environment
(``SYNCLINE_ADMIN_SECRET``, hex), so it never shows in a process listing.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from syncline._errors import ConfigError
from syncline.cluster._gateway import Gateway, GatewayConfig
from syncline.cluster._regional_storage import RegionalStorage
from syncline.cluster._scheduler_node import SchedulerNode, SchedulerNodeConfig
from syncline.cluster._service import (
    node_settings,
    require_service_arguments,
    run_service,
    service_arguments,
    tls_arguments,
)
from syncline.cluster._sync_node import SyncConfig, SyncNode
from syncline.cluster._tls import tls_from_flags
from syncline.cluster._txn_node import TxnConfig, TxnNode
from syncline.presence import PresenceConfig
from syncline.ratelimit import BucketSpec, ClientLimits
from syncline.scheduler import SchedulerConfig
from syncline.storage import PostgresStorage, Storage
from syncline.txn import CommitterConfig

ROLES = ("txn", "sync", "gateway", "scheduler")


def _env(name: str) -> str | None:
    """The only place the services read the environment."""
    return os.environ.get(f"SYNCLINE_{name}")


def txn_config(argv: list[str] | None = None) -> tuple[TxnConfig, str]:
    parser = argparse.ArgumentParser(
        prog="syncline-txn", description="The txn service: the leader-elected committer."
    )
    service_arguments(parser, service="TXN", env=_env)
    parser.add_argument("--max-batch", type=int, default=int(_env("TXN_MAX_BATCH") or 512))
    args = parser.parse_args(argv)
    require_service_arguments(parser, args)
    config = TxnConfig(**node_settings(args), committer=CommitterConfig(max_batch=args.max_batch))
    return config, args.pg_dsn


def _admin_secret(parser: argparse.ArgumentParser) -> bytes | None:
    text = _env("ADMIN_SECRET")
    if not text:
        return None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        parser.error("SYNCLINE_ADMIN_SECRET must be at least 32 bytes as hex (64 digits)")
    return secret


def _redis_argument(parser: argparse.ArgumentParser, used_for: str) -> None:
    parser.add_argument(
        "--redis",
        default=_env("REDIS_URL"),
        metavar="URL",
        help=f"the region's Redis, for {used_for} (SYNCLINE_REDIS_URL)",
    )


def _pairs(
    parser: argparse.ArgumentParser, flag: str, values: list[str], form: str
) -> dict[str, str]:
    """``KEY=VALUE`` arguments of a repeatable flag, as a dict."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            parser.error(f"{flag} {value!r}: expected {form}")
        pairs[key] = target
    return pairs


def sync_config(argv: list[str] | None = None) -> tuple[SyncConfig, str, str | None, float]:
    parser = argparse.ArgumentParser(
        prog="syncline-sync", description="The sync service: sessions, subscriptions and functions."
    )
    service_arguments(parser, service="SYNC", env=_env)
    parser.add_argument(
        "--region", default=_env("REGION") or "local", help="region served (SYNCLINE_REGION)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=float(_env("SYNC_POLL_INTERVAL") or 1.0),
        help="seconds between fallback polls of the commit log (SYNCLINE_SYNC_POLL_INTERVAL)",
    )
    parser.add_argument(
        "--txn-route",
        action="append",
        default=[r for r in (_env("TXN_ROUTES") or "").split(",") if r],
        metavar="ANNOUNCED=REACHABLE",
        help="reach a txn node announced at ANNOUNCED through REACHABLE (a region's link "
        "to the primary region); repeatable (SYNCLINE_TXN_ROUTES, comma-separated)",
    )
    parser.add_argument(
        "--revoked-admin-keys-file",
        type=Path,
        default=_env("REVOKED_ADMIN_KEYS_FILE"),
        help="file naming revoked admin keys, one per line; read again when it changes "
        "(SYNCLINE_REVOKED_ADMIN_KEYS_FILE)",
    )
    parser.add_argument(
        "--primary-pg-dsn",
        default=_env("PRIMARY_PG_DSN"),
        help="the primary's PostgreSQL, when --pg-dsn is a region's replica: reads move "
        "there while the replica lags more than --max-replica-lag (SYNCLINE_PRIMARY_PG_DSN)",
    )
    parser.add_argument(
        "--max-replica-lag",
        type=float,
        default=float(_env("SYNC_MAX_REPLICA_LAG") or 5.0),
        help="seconds a replica may lag before reads move to the primary "
        "(SYNCLINE_SYNC_MAX_REPLICA_LAG)",
    )
    parser.add_argument(
        "--commit-timeout",
        type=float,
        default=float(_env("SYNC_COMMIT_TIMEOUT") or 30.0),
        help="seconds a mutation waits for a txn leader before failing as unavailable "
        "(SYNCLINE_SYNC_COMMIT_TIMEOUT)",
    )
    _redis_argument(parser, "presence rooms and per-user rate limits")
    parser.add_argument(
        "--peer-redis",
        action="append",
        default=[r for r in (_env("PEER_REDIS") or "").split(",") if r],
        metavar="REGION=URL",
        help="another region's Redis, so presence rooms span regions; repeatable "
        "(SYNCLINE_PEER_REDIS, comma-separated)",
    )
    parser.add_argument(
        "--user-rate",
        default=_env("USER_RATE") or "50/100",
        metavar="RATE[/BURST]|off",
        help="function calls a second per signed-in user, counted in --redis for every "
        "sync node together (SYNCLINE_USER_RATE)",
    )
    parser.add_argument(
        "--client-log-lines",
        action="store_true",
        default=_env("CLIENT_LOG_LINES") in ("1", "true"),
        help="send what functions log to every client as logLines, as a development "
        "server does; otherwise only admins and the log tail see it (SYNCLINE_CLIENT_LOG_LINES)",
    )
    parser.add_argument(
        "--presence-ttl",
        type=float,
        default=float(_env("PRESENCE_TTL") or 10.0),
        help="seconds a presence member outlives a session that vanished without a word "
        "(SYNCLINE_PRESENCE_TTL)",
    )
    args = parser.parse_args(argv)
    require_service_arguments(parser, args)
    peers = _pairs(parser, "--peer-redis", args.peer_redis, "REGION=redis://host:port/db")
    if any(not url.startswith(("redis://", "rediss://")) for url in peers.values()):
        parser.error("--peer-redis: expected REGION=redis://host:port/db")
    if args.presence_ttl <= 0:
        parser.error("--presence-ttl must be > 0")
    if peers and not args.redis:
        parser.error("--peer-redis needs --redis (this region's own Redis)")
    try:
        user_rate = BucketSpec.parse(args.user_rate)
    except ConfigError as exc:
        parser.error(str(exc))
    routes = _pairs(
        parser, "--txn-route", args.txn_route, "ANNOUNCED=REACHABLE (host:port=host:port)"
    )
    config = SyncConfig(
        **node_settings(args),
        region=args.region,
        poll_interval_seconds=args.poll_interval,
        admin_secret=_admin_secret(parser),
        txn_routes=routes,
        commit_timeout_seconds=args.commit_timeout,
        revoked_admin_keys_file=args.revoked_admin_keys_file,
        redis_url=args.redis,
        peer_redis_urls=peers,
        presence=PresenceConfig(member_ttl_seconds=args.presence_ttl),
        user_rate=user_rate,
        client_log_lines=args.client_log_lines,
    )
    if args.max_replica_lag <= 0:
        parser.error("--max-replica-lag must be > 0")
    return config, args.pg_dsn, args.primary_pg_dsn, args.max_replica_lag


def gateway_config(argv: list[str] | None = None) -> GatewayConfig:
    parser = argparse.ArgumentParser(
        prog="syncline-gateway", description="The gateway: the client-facing edge of a region."
    )
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
    _redis_argument(parser, "rate limits, counted there for every gateway together")
    tls_arguments(parser, _env)
    parser.add_argument(
        "--ip-rate",
        default=_env("IP_RATE") or "100/200",
        metavar="RATE[/BURST]|off",
        help="function calls a second per client address (SYNCLINE_IP_RATE)",
    )
    parser.add_argument(
        "--ip-connection-rate",
        default=_env("IP_CONNECTION_RATE") or "10/50",
        metavar="RATE[/BURST]|off",
        help="new WebSocket connections a second per client address (SYNCLINE_IP_CONNECTION_RATE)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[p for p in (_env("TRUSTED_PROXIES") or "").split(",") if p],
        metavar="CIDR",
        help="a load balancer whose X-Forwarded-For names the client; repeatable "
        "(SYNCLINE_TRUSTED_PROXIES, comma-separated)",
    )
    args = parser.parse_args(argv)
    if not args.zk_hosts:
        parser.error("missing --zk-hosts (or SYNCLINE_ZK_HOSTS)")
    try:
        proxies = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in args.trusted_proxy)
        limits = ClientLimits(
            requests_per_ip=BucketSpec.parse(args.ip_rate),
            connections_per_ip=BucketSpec.parse(args.ip_connection_rate),
            requests_per_user=None,
            trusted_proxies=proxies,
        )
        tls = tls_from_flags(args.tls_cert, args.tls_key, args.tls_ca)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    return GatewayConfig(
        zk_hosts=args.zk_hosts,
        region=args.region,
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        redis_url=args.redis,
        client_limits=limits,
        tls=tls,
    )


def scheduler_config(argv: list[str] | None = None) -> tuple[SchedulerNodeConfig, str]:
    parser = argparse.ArgumentParser(
        prog="syncline-scheduler",
        description="The scheduler service: runs scheduled functions and crons (one active).",
    )
    service_arguments(parser, service="SCHEDULER", env=_env)
    parser.add_argument(
        "--max-concurrent-jobs",
        type=int,
        default=int(_env("SCHEDULER_MAX_CONCURRENT_JOBS") or SchedulerConfig.max_concurrent_jobs),
        help="jobs run at once (SYNCLINE_SCHEDULER_MAX_CONCURRENT_JOBS)",
    )
    parser.add_argument(
        "--retention-days",
        type=float,
        default=float(_env("SCHEDULER_RETENTION_DAYS") or 7),
        help="days finished jobs are kept (SYNCLINE_SCHEDULER_RETENTION_DAYS)",
    )
    _redis_argument(parser, "what scheduled functions do to presence rooms and rate limits")
    args = parser.parse_args(argv)
    require_service_arguments(parser, args)
    if args.max_concurrent_jobs < 1:
        parser.error("--max-concurrent-jobs must be at least 1")
    if args.retention_days <= 0:
        parser.error("--retention-days must be > 0")
    config = SchedulerNodeConfig(
        **node_settings(args),
        redis_url=args.redis,
        scheduler=SchedulerConfig(
            max_concurrent_jobs=args.max_concurrent_jobs,
            retention_seconds=args.retention_days * 86400.0,
        ),
    )
    return config, args.pg_dsn


def txn_main(argv: list[str] | None = None) -> int:
    config, dsn = txn_config(argv)
    return run_service(TxnNode(config, PostgresStorage(dsn)))


def sync_main(argv: list[str] | None = None) -> int:
    config, dsn, primary_dsn, max_lag = sync_config(argv)
    replica = PostgresStorage(dsn)
    storage: Storage = replica
    if primary_dsn:
        storage = RegionalStorage(replica, PostgresStorage(primary_dsn), max_lag_seconds=max_lag)
    return run_service(SyncNode(config, storage))


def gateway_main(argv: list[str] | None = None) -> int:
    return run_service(Gateway(gateway_config(argv)))


def scheduler_main(argv: list[str] | None = None) -> int:
    config, dsn = scheduler_config(argv)
    return run_service(SchedulerNode(config, PostgresStorage(dsn)))


def main(argv: list[str] | None = None) -> int:
    """``python -m syncline.cluster ROLE [flags]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ROLES:
        print(f"usage: python -m syncline.cluster {{{','.join(ROLES)}}} [flags]", file=sys.stderr)
        return 2
    role, rest = args[0], args[1:]
    entry = {
        "txn": txn_main,
        "sync": sync_main,
        "gateway": gateway_main,
        "scheduler": scheduler_main,
    }[role]
    return entry(rest)
