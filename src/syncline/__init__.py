"""Syncline: a reactive backend in Python that speaks Convex's client protocols.

Write functions over a schema'd document store::

    from syncline import mutation, query, v

    @query(args={"roomId": v.id("rooms")})
    async def list(ctx, roomId):
        return await ctx.db.query("messages").with_index(
            "by_room", lambda q: q.eq("roomId", roomId)).collect()

and run them with ``syncline dev APP_DIR``.
"""

from typing import Any

from syncline._errors import (
    AppError,
    AuthenticationError,
    ConfigError,
    DocumentNotFoundError,
    FunctionNotFoundError,
    InvalidIdError,
    InvalidValueError,
    OccConflictError,
    ProtocolError,
    SchemaError,
    SchemaViolationError,
    SynclineError,
    ValidationError,
)
from syncline._version import __version__
from syncline.database import UNSET
from syncline.functions import (
    action,
    api,
    internal,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)
from syncline.jobs import cron_jobs
from syncline.schema import define_schema, define_table
from syncline.values import v

__all__ = [
    "UNSET",
    "AppError",
    "AuthenticationError",
    "Client",
    "ConfigError",
    "DocumentNotFoundError",
    "FunctionNotFoundError",
    "InvalidIdError",
    "InvalidValueError",
    "OccConflictError",
    "ProtocolError",
    "SchemaError",
    "SchemaViolationError",
    "SynclineError",
    "ValidationError",
    "__version__",
    "action",
    "api",
    "cron_jobs",
    "define_schema",
    "define_table",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "query",
    "v",
]


def __getattr__(name: str) -> Any:
    # The client pulls in aiohttp's client side; import it only when asked for.
    if name == "Client":
        from syncline.client import Client

        return Client
    raise AttributeError(f"module 'syncline' has no attribute {name!r}")
