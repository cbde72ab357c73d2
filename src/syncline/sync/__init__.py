"""The Convex sync protocol: sessions, shared subscriptions, the update loop."""

from syncline.sync._identity import Authenticator
from syncline.sync._protocol import decode_ts, encode_ts, parse_client_message
from syncline.sync._session import SyncSession
from syncline.sync._subscriptions import (
    QueryOutcome,
    SharedQuery,
    SubscriptionManager,
    error_for_client,
)

__all__ = [
    "Authenticator",
    "QueryOutcome",
    "SharedQuery",
    "SubscriptionManager",
    "SyncSession",
    "decode_ts",
    "encode_ts",
    "error_for_client",
    "parse_client_message",
]
