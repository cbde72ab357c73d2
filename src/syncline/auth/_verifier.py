"""Verifying JWTs against an app's auth providers."""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeGuard

import jwt

from syncline._errors import AuthenticationError
from syncline.auth._config import AuthProvider, OidcProvider
from syncline.auth._identity import UserIdentity
from syncline.auth._jwks import JwksFormatError, decode_data_uri, select_key
from syncline.auth._key_store import (
    HttpFetcher,
    JwksUnavailableError,
    KeyStore,
    fetch_oidc_jwks,
    read_jwks_file,
)

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

#: Longer strings are refused before any parsing; real tokens are a few KiB.
MAX_TOKEN_CHARS = 64 * 1024
# OIDC ID tokens are RS256 unless negotiated otherwise, and Convex accepts only that.
_OIDC_ALGORITHM = "RS256"
_JWS = jwt.PyJWS()


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class TokenVerifier:
    """Verifies bearer JWTs and returns the identity they prove.

    The signature algorithm comes from the provider's configuration, never from
    the token, so "none", HMAC-with-the-public-key and other algorithm-confusion
    tricks are refused. Keys are cached per JWKS location and refetched when a
    token names an unknown ``kid`` (at most once per ``jwks_min_refresh_seconds``).
    """

    def __init__(
        self,
        providers: Sequence[AuthProvider],
        *,
        leeway_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        jwks_min_refresh_seconds: float = 10.0,
        http_timeout_seconds: float = 5.0,
    ) -> None:
        """Args:
        providers: the app's providers, as parsed from ``auth_config.py``.
        leeway_seconds: clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (>= 0).
        clock: current Unix time in seconds; injected so tests control time.
        jwks_min_refresh_seconds: minimum interval between refetches of one JWKS.
        http_timeout_seconds: total timeout of each JWKS or discovery request.
        """
        self._providers = tuple(providers)
        self._leeway_seconds = leeway_seconds
        self._clock = clock
        self._http = HttpFetcher(timeout_seconds=http_timeout_seconds)
        self._stores: dict[str, KeyStore] = {}
        for provider in self._providers:
            if _store_key(provider) not in self._stores:
                self._stores[_store_key(provider)] = KeyStore(
                    self._loader(provider),
                    clock=clock,
                    min_refresh_seconds=jwks_min_refresh_seconds,
                )
        self._state = _State.OPEN

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the HTTP session; idempotent."""
        self._state = _State.CLOSED
        await self._http.close()

    async def verify(self, token: str) -> UserIdentity:
        """The identity proven by ``token``, or :class:`AuthenticationError`.

        Several providers may share an issuer (e.g. one per application ID);
        the token is accepted if any of them accepts it.
        """
        if self._state is _State.CLOSED:
            raise RuntimeError("TokenVerifier is closed")
        header, claims = _parse_unverified(token)
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise AuthenticationError("Token has no 'iss' claim")
        candidates = [p for p in self._providers if _same_issuer(_issuer_of(p), issuer)]
        if not candidates:
            raise AuthenticationError(
                f"No auth provider found matching the token's issuer {_quote(issuer)} "
                "(check auth_config.py)"
            )
        errors: list[AuthenticationError] = []
        for provider in candidates:
            try:
                return await self._verify_with(provider, token, header)
            except AuthenticationError as exc:
                errors.append(exc)
        raise errors[0]

    async def _verify_with(
        self, provider: AuthProvider, token: str, header: Mapping[str, Any]
    ) -> UserIdentity:
        algorithm = _algorithm_of(provider)
        if header.get("alg") != algorithm:
            raise AuthenticationError(
                f"Token algorithm {_quote(header.get('alg'))} is not the configured {algorithm!r}"
            )
        key = await self._find_key(provider, header.get("kid"), algorithm)
        try:
            verified = _JWS.decode_complete(token, key=key, algorithms=[algorithm])
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("Token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError("Malformed token") from exc
        claims = _json_object(verified["payload"])
        return check_claims(
            claims, provider, now=self._clock(), leeway_seconds=self._leeway_seconds
        )

    async def _find_key(
        self, provider: AuthProvider, kid: str | None, algorithm: str
    ) -> AllowedPublicKeys:
        issuer = _issuer_of(provider)
        store = self._stores[_store_key(provider)]
        try:
            key_set = await store.get()
            key = select_key(key_set.keys, kid=kid, algorithm=algorithm)
            if key is None:
                # The issuer may have rotated its keys since we fetched them.
                key_set = await store.refresh(key_set)
                key = select_key(key_set.keys, kid=kid, algorithm=algorithm)
        except JwksUnavailableError as exc:
            raise AuthenticationError(
                f"Could not fetch JWKS for issuer {issuer!r}: {exc.reason}"
            ) from exc
        if key is not None:
            return key
        if kid is None:
            raise AuthenticationError(
                f"Token has no 'kid' and the JWKS for issuer {issuer!r} does not have "
                f"exactly one {algorithm} key"
            )
        raise AuthenticationError(
            f"No {algorithm} key with kid {_quote(kid)} in the JWKS for issuer {issuer!r}"
        )

    def _loader(self, provider: AuthProvider) -> Callable[[], Awaitable[bytes]]:
        if isinstance(provider, OidcProvider):
            return partial(fetch_oidc_jwks, self._http, provider.domain)
        location = provider.jwks
        if location.startswith("data:"):
            return partial(_decode_jwks_data_uri, location)
        if location.startswith(("http://", "https://")):
            return partial(self._http.get, location)
        return partial(read_jwks_file, location)


def check_claims(
    claims: Mapping[str, Any],
    provider: AuthProvider,
    *,
    now: float,
    leeway_seconds: float,
) -> UserIdentity:
    """Check the time, audience and subject claims of a signature-verified token."""
    exp = claims.get("exp")
    if not _is_number(exp):
        raise AuthenticationError("Token has no valid 'exp' claim")
    if now >= exp + leeway_seconds:
        raise AuthenticationError("Token expired")
    for claim in ("nbf", "iat"):
        if claim not in claims:
            continue
        value = claims[claim]
        if not _is_number(value):
            raise AuthenticationError(f"Token has an invalid {claim!r} claim")
        if value > now + leeway_seconds:
            raise AuthenticationError(f"Token is not yet valid ({claim!r} is in the future)")
    application_id = _application_id_of(provider)
    if application_id is not None and not _audience_contains(claims.get("aud"), application_id):
        raise AuthenticationError("Token audience does not match applicationID")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("Token has no 'sub' claim")
    issuer = claims["iss"]
    return UserIdentity(
        token_identifier=f"{issuer}|{subject}",
        subject=subject,
        issuer=issuer,
        # A plain dict copy rather than a read-only proxy: proxies cannot be
        # pickled or deep-copied, and identities may cross process boundaries.
        claims=dict(claims),
    )


def _parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise AuthenticationError("Malformed token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationError(f"Token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        # Only to route the token to a provider; nothing here is trusted until
        # the signature has been checked with the provider's key.
        parts = _JWS.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthenticationError("Malformed token") from exc
    return parts["header"], _json_object(parts["payload"])


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise AuthenticationError("Malformed token") from exc
    if not isinstance(claims, dict):
        raise AuthenticationError("Malformed token")
    return claims


async def _decode_jwks_data_uri(uri: str) -> bytes:
    try:
        return decode_data_uri(uri)
    except JwksFormatError as exc:
        raise JwksUnavailableError(f"invalid data URI: {exc}") from exc


def _issuer_of(provider: AuthProvider) -> str:
    return provider.domain if isinstance(provider, OidcProvider) else provider.issuer


def _algorithm_of(provider: AuthProvider) -> str:
    return _OIDC_ALGORITHM if isinstance(provider, OidcProvider) else provider.algorithm


def _application_id_of(provider: AuthProvider) -> str | None:
    return provider.application_id


def _store_key(provider: AuthProvider) -> str:
    if isinstance(provider, OidcProvider):
        return "oidc:" + provider.domain.removesuffix("/")
    return "jwks:" + provider.jwks


def _same_issuer(configured: str, claimed: str) -> bool:
    # Issuers are compared exactly; only the trailing slash varies between
    # IdPs' documentation and their tokens.
    return configured.removesuffix("/") == claimed.removesuffix("/")


def _audience_contains(aud: object, application_id: str) -> bool:
    if isinstance(aud, str):
        return aud == application_id
    return isinstance(aud, list) and application_id in aud


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _quote(value: object) -> str:
    # Token contents are attacker-controlled: echo them back, but not at length.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
