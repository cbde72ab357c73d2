"""Regional replicas: PostgreSQL logical replication of Syncline's tables, as code.

The primary publishes the tables a region reads (documents, index entries, the
commit log and the catalog); each regional replica has the same schema (the
storage migrations) and subscribes. The commit-log trigger is enabled ALWAYS
(migration 2), so rows applied on a replica notify that region's sync nodes as
commits do on the primary. What only the primary uses stays there: the leader
epoch, request keys (the txn leader checks them), and the migration record.

Every function here is idempotent, so ``add_replica`` is also how a region
recovers its subscription, and setting up a region twice changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from syncline._errors import ConfigError, UnavailableError
from syncline.storage._postgres import PostgresStorage

PUBLICATION = "syncline"
REPLICATED_TABLES = ("meta", "tables", "indexes", "documents", "index_entries", "commit_log")
_REGION = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


def subscription_name(region: str) -> str:
    """The subscription (and the primary's replication slot) of ``region``."""
    if not isinstance(region, str) or not _REGION.match(region):
        raise ConfigError(
            f"region {region!r} must be lowercase letters, digits, '-' or '_' (at most 41), "
            "starting with a letter"
        )
    return "syncline_" + region.replace("-", "_")


@dataclass(frozen=True)
class ReplicaStatus:
    """How far one region's replica is behind the primary."""

    region: str
    applied_ts: int
    """The newest commit the replica has applied (0: none yet)."""
    primary_ts: int
    """The newest commit on the primary when asked."""
    copied: bool
    """Whether the initial copy of every table is done (the replica then follows)."""
    streaming: bool
    """Whether the replica's subscription is connected and receiving."""
    replay_lag_ms: float | None
    """The primary's measure of the replica's apply lag (None while idle)."""

    @property
    def behind(self) -> bool:
        return self.applied_ts < self.primary_ts


async def _autocommit(dsn: str) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise UnavailableError(f"cannot reach PostgreSQL: {exc}".strip()) from exc


async def _has_subscription(conn: psycopg.AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,))
    return await cur.fetchone() is not None


async def ensure_publication(primary_dsn: str) -> None:
    """Create the primary's publication of Syncline's replicated tables (migrating
    the primary first), or add any table it lacks."""
    storage = PostgresStorage(primary_dsn, pool_min=1, pool_max=1)
    await storage.open()
    await storage.close()
    conn = await _autocommit(primary_dsn)
    async with conn:
        cur = await conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (PUBLICATION,)
        )
        published = {row[0] for row in await cur.fetchall()}
        exists = await (
            await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (PUBLICATION,))
        ).fetchone()
        tables = sql.SQL(", ").join(sql.Identifier(t) for t in REPLICATED_TABLES)
        if exists is None:
            await conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(PUBLICATION), tables
                )
            )
            return
        missing = [t for t in REPLICATED_TABLES if t not in published]
        if missing:
            await conn.execute(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(PUBLICATION),
                    sql.SQL(", ").join(sql.Identifier(t) for t in missing),
                )
            )


async def add_replica(
    primary_dsn: str, replica_dsn: str, region: str, *, primary_conninfo: str | None = None
) -> None:
    """Make ``replica_dsn`` follow the primary as ``region``'s replica.

    The replica gets Syncline's schema, then a subscription that copies what the
    primary holds and then follows its changes. ``primary_conninfo`` is how the
    replica reaches the primary (default: ``primary_dsn``; differs when a proxy or
    another network is in between).
    """
    name = subscription_name(region)
    await ensure_publication(primary_dsn)
    storage = PostgresStorage(replica_dsn, pool_min=1, pool_max=1)
    await storage.open()
    await storage.close()
    conn = await _autocommit(replica_dsn)
    async with conn:
        if await _has_subscription(conn, name):
            await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))
            return
        for table in REPLICATED_TABLES:
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
            row = await (await conn.execute(query)).fetchone()
            if row is not None and row[0]:
                raise ConfigError(
                    f"the replica for region {region} already holds rows in {table} and has "
                    "no subscription: a replica must start empty (use a fresh database)"
                )
        # Migrations put rows only in tables that are not published, so the copy
        # of the primary's rows starts from empty tables.
        await conn.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
                sql.Identifier(name),
                sql.Literal(primary_conninfo or primary_dsn),
                sql.Identifier(PUBLICATION),
            )
        )


async def remove_replica(primary_dsn: str, region: str, *, replica_dsn: str | None = None) -> None:
    """Stop replicating to ``region`` and free the primary's replication slot.

    With the replica reachable its subscription is dropped (which drops the slot);
    a replica that is gone for good leaves a slot behind that holds WAL on the
    primary, so the slot is dropped there.
    """
    name = subscription_name(region)
    if replica_dsn is not None:
        conn = await _autocommit(replica_dsn)
        async with conn:
            if await _has_subscription(conn, name):
                await conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))
    conn = await _autocommit(primary_dsn)
    async with conn:
        slot = await (
            await conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)
            )
        ).fetchone()
        if slot is not None:
            if slot[0] is not None:
                await conn.execute("SELECT pg_terminate_backend(%s)", (slot[0],))
            await conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


async def pause_replica(replica_dsn: str, region: str) -> None:
    """Stop ``region``'s replica applying the primary's changes (its subscription is
    disabled; the primary's slot keeps what it has not sent). ``add_replica``
    resumes it. The region then reads an ever older snapshot, as when the apply
    worker falls far behind."""
    name = subscription_name(region)
    conn = await _autocommit(replica_dsn)
    async with conn:
        if not await _has_subscription(conn, name):
            raise ConfigError(f"region {region} has no replica subscription to pause")
        await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))


async def promote_replica(replica_dsn: str, region: str) -> None:
    """Detach ``region``'s replica from a primary that is lost, so it can become the
    primary: its subscription is dropped without touching the old primary (whose
    slot, if that primary ever returns, must be dropped there). Commits the old
    primary had not yet sent are lost; see docs/regions.md before running this."""
    name = subscription_name(region)
    conn = await _autocommit(replica_dsn)
    async with conn:
        if not await _has_subscription(conn, name):
            return
        subscription = sql.Identifier(name)
        await conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(subscription))
        await conn.execute(
            sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(subscription)
        )
        await conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(subscription))


async def replica_status(primary_dsn: str, replica_dsn: str, region: str) -> ReplicaStatus:
    """The replica's applied commit, the primary's newest, and the primary's lag view."""
    name = subscription_name(region)
    conn = await _autocommit(primary_dsn)
    async with conn:
        primary = await (
            await conn.execute(
                "SELECT (SELECT COALESCE(MAX(ts), 0) FROM commit_log), "
                "(SELECT state FROM pg_stat_replication WHERE application_name = %(name)s), "
                "(SELECT EXTRACT(EPOCH FROM replay_lag) * 1000 FROM pg_stat_replication "
                "WHERE application_name = %(name)s)",
                {"name": name},
            )
        ).fetchone()
    conn = await _autocommit(replica_dsn)
    async with conn:
        replica = await (
            await conn.execute(
                "SELECT (SELECT COALESCE(MAX(ts), 0) FROM commit_log), count(*), "
                "count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')) "
                "FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                "WHERE s.subname = %s",
                (name,),
            )
        ).fetchone()
    assert primary is not None and replica is not None
    primary_ts, state, lag_ms = primary
    applied, subscribed, copying = replica
    return ReplicaStatus(
        region=region,
        applied_ts=int(applied),
        primary_ts=int(primary_ts),
        copied=int(subscribed) > 0 and int(copying) == 0,
        streaming=state == "streaming",
        replay_lag_ms=float(lag_ms) if lag_ms is not None else None,
    )
