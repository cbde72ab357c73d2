"""Fetching and caching JWKS documents (the I/O half of key lookup).

A :class:`KeyStore` holds one JWKS location's keys. It refetches when its copy
is older than :data:`JWKS_MAX_AGE_SECONDS` (so revoked keys stop verifying) and
when a token names a key it lacks (so rotation works), but never more often
than its ``min_refresh_seconds`` (so tokens with made-up key ids cannot make us
flood an identity provider). If a refetch fails, the keys already held stay in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from syncline.auth._config import is_allowed_url
from syncline.auth._jwks import JwkDict, JwksFormatError, parse_jwks_document

logger = logging.getLogger(__name__)

#: Keys older than this are refetched before use.
JWKS_MAX_AGE_SECONDS = 3600.0
#: Larger JWKS or discovery documents are refused; real ones are a few KiB.
MAX_DOCUMENT_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_DISCOVERY_PATH = "/.well-known/openid-configuration"


class JwksUnavailableError(Exception):
    """Keys could not be loaded; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KeySet:
    """One fetched copy of a JWKS."""

    keys: tuple[JwkDict, ...]
    """The raw JWK entries."""
    fetched_at: float
    """Clock time of the fetch, in seconds."""


class HttpFetcher:
    """GETs small JSON documents over one lazily created aiohttp session."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str) -> bytes:
        """The body of a 200 response to GET ``url``, at most MAX_DOCUMENT_BYTES."""
        if self._session is None:
            # Created here, not in __init__: a session binds to the running loop.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds)
            )
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise JwksUnavailableError(f"GET {url} returned HTTP {response.status}")
                return await _read_limited(response)
        except TimeoutError as exc:
            raise JwksUnavailableError(
                f"GET {url} timed out after {self._timeout_seconds:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise JwksUnavailableError(f"GET {url} failed to connect or read") from exc

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise JwksUnavailableError(f"response larger than {MAX_DOCUMENT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_oidc_jwks(http: HttpFetcher, domain: str) -> bytes:
    """The JWKS of an OIDC issuer, located through its discovery document."""
    body = await http.get(domain.removesuffix("/") + _DISCOVERY_PATH)
    try:
        discovery = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JwksUnavailableError("OIDC discovery document is not valid JSON") from exc
    jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
    if not isinstance(jwks_uri, str) or not is_allowed_url(jwks_uri):
        raise JwksUnavailableError("OIDC discovery document has no usable https 'jwks_uri'")
    return await http.get(jwks_uri)


async def read_jwks_file(path: str) -> bytes:
    """The contents of a JWKS file, read off the event loop."""
    try:
        return await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise JwksUnavailableError(f"cannot read JWKS file {path!r}") from exc


class KeyStore:
    """The cached keys of one JWKS location."""

    def __init__(
        self,
        load: Callable[[], Awaitable[bytes]],
        *,
        clock: Callable[[], float],
        min_refresh_seconds: float,
        max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
    ) -> None:
        self._load = load
        self._clock = clock
        self._min_refresh_seconds = min_refresh_seconds
        self._max_age_seconds = max_age_seconds
        self._current: KeySet | None = None
        self._last_attempt: float | None = None
        self._last_failure: str | None = None
        # Serialises fetches so a burst of verifications triggers one request.
        self._lock = asyncio.Lock()

    async def get(self) -> KeySet:
        """The cached keys, fetched first if there are none or they are too old."""
        current = self._current
        if current is not None and self._clock() - current.fetched_at < self._max_age_seconds:
            return current
        return await self._reload(current)

    async def refresh(self, seen: KeySet) -> KeySet:
        """Refetch because ``seen`` lacked a needed key (rate-limited)."""
        return await self._reload(seen)

    async def _reload(self, seen: KeySet | None) -> KeySet:
        async with self._lock:
            if self._current is not None and self._current is not seen:
                return self._current  # another caller reloaded while we waited
            now = self._clock()
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self._min_refresh_seconds
            ):
                return self._held_keys()
            self._last_attempt = now
            try:
                keys = parse_jwks_document(await self._load())
            except JwksFormatError as exc:
                return self._after_failure(f"invalid JWKS document: {exc}")
            except JwksUnavailableError as exc:
                return self._after_failure(exc.reason)
            self._last_failure = None
            self._current = KeySet(keys=keys, fetched_at=now)
            return self._current

    def _after_failure(self, reason: str) -> KeySet:
        self._last_failure = reason
        if self._current is not None:
            logger.warning("JWKS refresh failed, keeping the previous keys: %s", reason)
        return self._held_keys()

    def _held_keys(self) -> KeySet:
        if self._current is None:
            raise JwksUnavailableError(self._last_failure or "JWKS not loaded")
        return self._current
