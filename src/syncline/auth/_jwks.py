"""JWKS documents: decoding, validation and key selection (pure, no I/O)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import jwt

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

JwkDict = Mapping[str, Any]

# Each configured algorithm accepts exactly one key type (and, for curves, the
# curves it is defined over), so a JWKS entry can never be used with an
# algorithm it was not published for.
_KEY_TYPE_BY_ALGORITHM: Mapping[str, str] = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_CURVES_BY_ALGORITHM: Mapping[str, frozenset[str]] = {
    "ES256": frozenset({"P-256"}),
    "EdDSA": frozenset({"Ed25519", "Ed448"}),
}


class JwksFormatError(Exception):
    """A JWKS document or data URI is malformed; the message says how."""


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a ``data:`` URI, base64 (``;base64``) or percent-encoded."""
    if not uri.startswith("data:"):
        raise JwksFormatError("not a data: URI")
    meta, sep, data = uri[len("data:") :].partition(",")
    if not sep:
        raise JwksFormatError("data: URI has no ',' before its data")
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(unquote_to_bytes(data), validate=True)
        except binascii.Error as exc:
            raise JwksFormatError("data: URI has invalid base64") from exc
    return unquote_to_bytes(data)


def parse_jwks_document(raw: bytes) -> tuple[JwkDict, ...]:
    """The keys of a JWKS (``{"keys": [...]}``) document, as raw JWK dicts."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise JwksFormatError("not valid JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFormatError("expected an object with a 'keys' list")
    keys = document["keys"]
    if not all(isinstance(key, dict) for key in keys):
        raise JwksFormatError("every entry of 'keys' must be an object")
    return tuple(keys)


def select_key(
    keys: Sequence[JwkDict], *, kid: str | None, algorithm: str
) -> AllowedPublicKeys | None:
    """The public key to verify an ``algorithm`` token with ``kid``, or None.

    Without a ``kid`` a key is chosen only if it is the JWKS's single key usable
    with ``algorithm``; guessing among several would make failures confusing.
    """
    usable = [key for key in keys if _is_usable(key, algorithm)]
    if kid is not None:
        usable = [key for key in usable if key.get("kid") == kid]
    if len(usable) != 1:
        return None
    try:
        public_key: AllowedPublicKeys = jwt.get_algorithm_by_name(algorithm).from_jwk(
            dict(usable[0])
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return public_key


def _is_usable(key: JwkDict, algorithm: str) -> bool:
    if key.get("kty") != _KEY_TYPE_BY_ALGORITHM.get(algorithm):
        return False
    curves = _CURVES_BY_ALGORITHM.get(algorithm)
    if curves is not None and key.get("crv") not in curves:
        return False
    # A JWK carrying "d" is a private key; one published by mistake must not
    # silently become a verification key.
    return (
        key.get("use", "sig") == "sig" and key.get("alg", algorithm) == algorithm and "d" not in key
    )
