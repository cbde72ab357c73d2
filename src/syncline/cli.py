"""The ``syncline`` command: ``dev``, ``run``, ``deploy``, ``admin-key``, ``cluster``, ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from syncline._errors import SynclineError
from syncline._version import __version__

DEFAULT_URL = "http://127.0.0.1:3210"
log = logging.getLogger("syncline")


def _env(name: str, default: str | None = None) -> str | None:
    """The one place the CLI reads environment variables (SYNCLINE_*)."""
    return os.environ.get(f"SYNCLINE_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncline", description="Syncline: a reactive backend for Convex clients."
    )
    parser.add_argument("--version", action="version", version=f"syncline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser("dev", help="serve an app on this machine, reloading on change")
    dev.add_argument("app_dir", type=Path, help="the app directory (schema.py, modules)")
    dev.add_argument("--port", type=int, default=int(_env("PORT", "3210") or 3210))
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument(
        "--data", type=Path, default=None, help="data directory (default APP_DIR/.syncline)"
    )
    dev.add_argument("--no-watch", action="store_true", help="do not reload on file changes")

    run = commands.add_parser("run", help="call a function on a running deployment")
    run.add_argument("path", help='function path, e.g. "messages:send"')
    run.add_argument("args", nargs="?", default="{}", help="arguments as a JSON object")
    run.add_argument("--url", default=_env("URL", DEFAULT_URL))
    run.add_argument("--admin-key", default=_env("ADMIN_KEY"), help="allows internal functions")

    deploy = commands.add_parser("deploy", help="push a new version of an app to a cluster")
    deploy.add_argument("app_dir", type=Path, help="the app directory (schema.py, modules)")
    deploy.add_argument("--url", default=_env("URL", DEFAULT_URL), help="a gateway's URL")
    deploy.add_argument(
        "--admin-key", default=_env("ADMIN_KEY"), help="required (SYNCLINE_ADMIN_KEY)"
    )
    deploy.add_argument("--dry-run", action="store_true", help="only show what would change")

    cluster = commands.add_parser("cluster", help="run a whole local cluster on this machine")
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    data_help = "the cluster's data directory (default .syncline-cluster)"
    up = actions.add_parser("up", help="start PostgreSQL, ZooKeeper, Redis and Syncline")
    up.add_argument("--app", type=Path, required=True, help="the app directory to serve")
    up.add_argument(
        "--regions",
        help="comma-separated regions, the primary's first (e.g. us-east,eu-west): each "
        "other region gets a replica, a sync node and a gateway",
    )
    up.add_argument(
        "--inter-region-delay-ms",
        type=float,
        default=0.0,
        help="delay each way on every link between regions (default 0)",
    )
    down = actions.add_parser("down", help="stop every process of the cluster")
    status = actions.add_parser("status", help="show every process and how to connect")
    status.add_argument("--json", action="store_true", help="print JSON")
    faults = actions.add_parser(
        "faults", help="inject faults on the links between a region and the primary's"
    )
    faults.add_argument("--region", required=True, help="a non-primary region")
    faults.add_argument("--delay-ms", type=float, help="delay each way, in milliseconds")
    faults.add_argument("--hold", action="store_true", help="partition: nothing moves")
    faults.add_argument("--drop", choices=["none", "upstream", "downstream", "both"])
    faults.add_argument("--heal", action="store_true", help="no delay, nothing held or dropped")
    faults.add_argument("--reset", action="store_true", help="abort every connection")
    for action in (up, down, status, faults):
        action.add_argument("--data", type=Path, default=Path(".syncline-cluster"), help=data_help)

    check = commands.add_parser(
        "verify", help="check a deployment's guarantees with workloads and a history checker"
    )
    check.add_argument(
        "--url",
        action="append",
        help=f"a gateway's URL; repeat for several regions (default SYNCLINE_URL or {DEFAULT_URL})",
    )
    check.add_argument(
        "--admin-key", default=_env("ADMIN_KEY"), help="required (SYNCLINE_ADMIN_KEY)"
    )
    check.add_argument(
        "--workload",
        default="list-append,bank,subscriptions,scheduled",
        help="comma-separated: list-append, bank, subscriptions, scheduled (default all)",
    )
    check.add_argument("--seconds", type=float, default=10.0, help="per workload (default 10)")
    check.add_argument("--clients", type=int, default=6, help="concurrent clients (default 6)")
    check.add_argument("--seed", type=int, help="for the operations chosen (default: random)")
    check.add_argument(
        "--model",
        default="strong-session-serializable",
        choices=["serializable", "strong-session-serializable", "strict-serializable"],
        help="what the history must satisfy (default strong-session-serializable)",
    )
    check.add_argument(
        "--history", type=Path, help="write the list-append history here (elle-cli's JSON)"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--cluster",
        type=Path,
        help="a local cluster's data directory (`syncline cluster up`): its gateways and "
        "admin key are the defaults, and --faults are injected into it",
    )
    check.add_argument(
        "--faults",
        help="comma-separated faults to inject in turn while each workload runs, or 'all' "
        "(kill-ROLE, stop-ROLE for txn/sync/gateway/scheduler, expire-txn, expire-scheduler, "
        "skew-txn, skew-scheduler, restart-postgres, restart-redis, drop-clients, partition-REGION, "
        "pause-replica-REGION); all but drop-clients need --cluster",
    )
    check.add_argument(
        "--fault-seconds", type=float, default=3.0, help="how long each fault lasts (default 3)"
    )

    key = commands.add_parser("admin-key", help="print an admin key for a data directory")
    key.add_argument("--data", type=Path, required=True, help="the deployment's data directory")
    key.add_argument("--name", default="default", help="a name for the key (letters, digits, -_)")
    key.add_argument(
        "--revoke",
        metavar="NAME",
        help="revoke the keys named NAME instead (servers using this data directory "
        "refuse them at once)",
    )
    key.add_argument(
        "--scope",
        help="comma-separated: deploy, read (internal queries), run (any internal function); "
        "default: all",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.command == "dev":
        return _dev(args)
    if args.command == "run":
        return asyncio.run(_run(args))
    if args.command == "admin-key":
        return _admin_key(args)
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "deploy":
        return asyncio.run(_deploy(args))
    if args.command == "verify":
        return _verify(args)
    build_parser().print_help()
    return 2


def _verify(args: argparse.Namespace) -> int:
    import random

    from syncline.verify import WORKLOADS, Model, VerifyReport, WorkloadConfig, verify

    cluster = None
    if args.cluster is not None:
        from syncline.cluster._local_cluster import LocalCluster

        try:
            cluster = LocalCluster.open(args.cluster)
        except SynclineError as exc:
            print(f"syncline verify: {exc.message}", file=sys.stderr)
            return 2
        args.admin_key = args.admin_key or cluster.admin_key()
        args.url = args.url or list(cluster.gateway_urls.values())
    if not args.admin_key:
        print("syncline verify needs --admin-key (or SYNCLINE_ADMIN_KEY)", file=sys.stderr)
        return 2
    workloads = tuple(w.strip() for w in args.workload.split(",") if w.strip())
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        print(f"--workload: choose from {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    if args.seconds <= 0 or args.clients < 1:
        print("--seconds must be > 0 and --clients >= 1", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    config = WorkloadConfig(
        urls=tuple(args.url or [_env("URL", DEFAULT_URL) or DEFAULT_URL]),
        admin_key=args.admin_key,
        seconds=args.seconds,
        clients=args.clients,
        seed=seed,
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    # Clients reconnecting through injected faults is expected: the report says how long.
    logging.getLogger("syncline.client").setLevel(logging.WARNING)

    nemesis = None
    if args.faults:
        from syncline.cluster._nemesis import Nemesis, parse_faults

        try:
            faults = parse_faults(cluster, args.faults)
        except SynclineError as exc:
            print(f"--faults: {exc.message}", file=sys.stderr)
            return 2
        nemesis = Nemesis(
            cluster, faults, duration_seconds=args.fault_seconds, seed=seed, progress=progress
        )
    print(f"seed {seed} (run again with --seed {seed})", file=sys.stderr)

    async def run() -> VerifyReport:
        async with contextlib.AsyncExitStack() as stack:
            urls = config.urls
            if nemesis is not None:  # drop-clients puts proxies between clients and gateways
                urls = await stack.enter_async_context(nemesis.client_links(urls))
            report = await verify(
                dataclasses.replace(config, urls=urls),
                workloads=workloads,
                model=Model(args.model),
                history_path=args.history,
                faults=nemesis,
                progress=progress,
            )
            return dataclasses.replace(report, urls=config.urls)  # the gateways, not our proxies

    try:
        report = asyncio.run(run())
    except SynclineError as exc:
        print(f"syncline verify: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 0 if report.valid else 1


def _admin_key(args: argparse.Namespace) -> int:
    from syncline.auth import (
        REVOKED_KEYS_FILENAME,
        AdminKeys,
        RevocationList,
        load_or_create_instance_secret,
    )

    try:
        if args.revoke:
            if not args.data.is_dir():
                raise SynclineError(f"no data directory {args.data}")
            RevocationList(args.data / REVOKED_KEYS_FILENAME).revoke(args.revoke)
            print(f"revoked admin keys named {args.revoke}")
            return 0
        scopes = [x.strip() for x in args.scope.split(",")] if args.scope else None
        print(AdminKeys(load_or_create_instance_secret(args.data)).issue(args.name, scopes))
    except SynclineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from syncline.cluster._local_cluster import LocalCluster

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.action == "up":
            if not args.app.is_dir():
                raise SynclineError(f"app directory {args.app} does not exist")
            regions = [r.strip() for r in args.regions.split(",")] if args.regions else None
            cluster = LocalCluster.create(
                args.data,
                args.app,
                regions=regions,
                inter_region_delay_ms=args.inter_region_delay_ms,
            )
            asyncio.run(cluster.up(progress))
            if regions is None:
                print(f"gateway: {cluster.gateway_url}")
            for region, url in cluster.gateway_urls.items():
                if regions is not None:
                    print(f"gateway {region}: {url}")
            print(f"admin key: {cluster.admin_key()}")
            print(f"stop it with: syncline cluster down --data {args.data}")
        elif args.action == "down":
            asyncio.run(LocalCluster.open(args.data).down(progress))
        elif args.action == "faults":
            action = "heal" if args.heal else "reset" if args.reset else None
            asyncio.run(
                LocalCluster.open(args.data).set_faults(
                    args.region,
                    delay_ms=args.delay_ms,
                    hold=True if args.hold else None,
                    drop=args.drop,
                    action=action,
                )
            )
        else:
            report = asyncio.run(LocalCluster.open(args.data).status())
            print(json.dumps(report, indent=2) if args.json else _status_text(report))
    except SynclineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"cluster in {report['data_dir']} (app {report['app_dir']})"]
    width = max((len(process["name"]) for process in report["processes"]), default=0)
    for process in report["processes"]:
        pid = process["pid"] if process["pid"] is not None else "not running"
        leader = " (leader)" if process["leader"] else ""
        lines.append(
            f"  {process['name']:<{width}} {process['role']:<9} {process['region']:<14} "
            f"{process['address']:<16} pid {pid}{leader}"
        )
    for region, url in report["gateways"].items():
        lines.append(f"gateway ({region}): {url}")
    for region, replica in report.get("replication", {}).items():
        if "error" in replica:
            lines.append(f"replica ({region}): {replica['error']}")
            continue
        behind = replica["primary_ts"] - replica["applied_ts"]
        state = "streaming" if replica["streaming"] else "not streaming"
        lines.append(
            f"replica ({region}): {state}, {max(behind, 0) / 1e6:.1f} ms of commits behind"
        )
    lines.append(f"admin key: {report['admin_key']}")
    return "\n".join(lines)


def _dev(args: argparse.Namespace) -> int:
    from syncline.app import AppLoadError

    try:
        asyncio.run(_serve(args))
    except AppLoadError as exc:
        print(f"error: {exc.message}\n{exc.details}", file=sys.stderr)
        return 1
    except SynclineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from syncline.server import EmbeddedConfig, EmbeddedServer

    app_dir: Path = args.app_dir.resolve()
    data_dir: Path = (args.data or app_dir / ".syncline").resolve()
    server = EmbeddedServer(EmbeddedConfig(app_dir, data_dir, host=args.host, port=args.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    functions = sorted(server.deployments.current.app.functions)
    print(
        f"Syncline {__version__} serving {app_dir}\n"
        f"  URL:       {server.url}\n"
        f"  Admin key: {server.admin_key}\n"
        f"  Data:      {data_dir}\n"
        f"  Functions: {len(functions)} ({', '.join(functions[:8])}{', ...' if len(functions) > 8 else ''})\n"
        f"Ready. Press Ctrl+C to stop.",
        flush=True,
    )
    watcher = None
    if not args.no_watch:
        watcher = asyncio.create_task(_watch(server, app_dir, data_dir), name="app-watcher")
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        print("Stopping...", flush=True)
        await server.close()


async def _watch(server: Any, app_dir: Path, data_dir: Path) -> None:
    """Reload the app when its Python files change; keep the old code on errors."""
    import watchfiles

    from syncline.app import AppLoadError, load_app

    def relevant(change: watchfiles.Change, path: str) -> bool:
        p = Path(path)
        return p.suffix == ".py" and data_dir not in p.parents and "__pycache__" not in p.parts

    async for changes in watchfiles.awatch(app_dir, watch_filter=relevant, debounce=200):
        names = ", ".join(sorted({Path(p).name for _, p in changes}))
        try:
            deployment = await server.deploy(load_app(app_dir))
        except AppLoadError as exc:
            print(
                f"Reload failed ({names}); still serving the previous version:\n"
                f"{exc.message}\n{exc.details}",
                flush=True,
            )
            continue
        except SynclineError as exc:
            print(
                f"Reload refused ({names}); still serving the previous version:\n{exc.message}",
                flush=True,
            )
            continue
        print(
            f"Reloaded ({names}): version {deployment.version}, "
            f"{len(deployment.app.functions)} functions; subscriptions re-run.",
            flush=True,
        )


async def _run(args: argparse.Namespace) -> int:
    import aiohttp

    try:
        call_args = json.loads(args.args)
    except ValueError:
        print(f"error: ARGS must be a JSON object, got {args.args!r}", file=sys.stderr)
        return 2
    if not isinstance(call_args, dict):
        print("error: ARGS must be a JSON object", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Convex {args.admin_key}"} if args.admin_key else {}
    body = {"path": args.path, "args": call_args, "format": "json"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{args.url.rstrip('/')}/api/function", json=body, headers=headers
            ) as response,
        ):
            text = await response.text()
    except aiohttp.ClientError as exc:
        print(
            f"error: cannot reach {args.url} ({exc}); is `syncline dev` running?", file=sys.stderr
        )
        return 1
    try:
        payload = json.loads(text)
    except ValueError:
        print(f"error: HTTP {response.status}: {text[:500]}", file=sys.stderr)
        return 1
    if payload.get("status") == "success":
        for line in payload.get("logLines", []):
            print(line, file=sys.stderr)
        print(json.dumps(payload["value"], indent=2, ensure_ascii=False))
        return 0
    message = payload.get("errorMessage") or payload.get("message") or text
    print(f"error: {message}", file=sys.stderr)
    if payload.get("errorData") is not None:
        print(json.dumps(payload["errorData"], indent=2), file=sys.stderr)
    return 1


async def _deploy(args: argparse.Namespace) -> int:
    import aiohttp

    from syncline.app import AppBundle

    if not args.admin_key:
        print("error: --admin-key (or SYNCLINE_ADMIN_KEY) is required to deploy", file=sys.stderr)
        return 2
    try:
        bundle = AppBundle.from_directory(args.app_dir)
    except SynclineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    body = {"bundle": bundle.files, "dryRun": args.dry_run}
    headers = {"Authorization": f"Convex {args.admin_key}"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{args.url.rstrip('/')}/api/deploy", json=body, headers=headers) as response,
        ):
            text = await response.text()
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach {args.url} ({exc})", file=sys.stderr)
        return 1
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    if response.status != 200 or "appVersion" not in payload:
        message = payload.get("message") or payload.get("errorMessage") or text[:2000]
        print(f"error: the deploy was refused (HTTP {response.status}): {message}", file=sys.stderr)
        return 1
    print(_describe_changes(payload["changes"]))
    verb = "deployed" if payload["applied"] else "would deploy"
    print(f"{verb} version {payload['appVersion']} ({len(bundle.files)} files)")
    return 0


def _describe_changes(changes: dict[str, dict[str, list[str]]]) -> str:
    lines = []
    for kind in ("files", "functions", "tables", "indexes", "crons"):
        for change, names in changes.get(kind, {}).items():
            if names:
                lines.append(f"  {kind} {change}: {', '.join(names)}")
    return "\n".join(lines) if lines else "  no changes"


if __name__ == "__main__":
    sys.exit(main())
