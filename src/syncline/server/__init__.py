"""Serving Syncline: the HTTP/WebSocket API and the embedded server."""

from syncline.server._embedded import DEFAULT_PORT, EmbeddedConfig, EmbeddedServer
from syncline.server._http import HttpApi

__all__ = ["DEFAULT_PORT", "EmbeddedConfig", "EmbeddedServer", "HttpApi"]
