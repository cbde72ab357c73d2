"""Serving Syncline: the HTTP/WebSocket API, its backends, and the embedded server."""

from syncline.server._backend import (
    Backend,
    CallResult,
    DeployCall,
    FunctionCall,
    LocalBackend,
    error_result,
    parse_kind,
)
from syncline.server._embedded import DEFAULT_PORT, EmbeddedConfig, EmbeddedServer
from syncline.server._http import HttpApi

__all__ = [
    "DEFAULT_PORT",
    "Backend",
    "CallResult",
    "DeployCall",
    "EmbeddedConfig",
    "EmbeddedServer",
    "FunctionCall",
    "HttpApi",
    "LocalBackend",
    "error_result",
    "parse_kind",
]
