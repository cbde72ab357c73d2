"""Convex-compatible authentication: auth providers, token verification, admin keys."""

from syncline.auth._admin import (
    REVOKED_KEYS_FILENAME,
    AdminKeys,
    RevocationList,
    load_or_create_instance_secret,
)
from syncline.auth._config import (
    AuthProvider,
    CustomJwtProvider,
    OidcProvider,
    load_auth_config,
    parse_providers,
)
from syncline.auth._identity import UserIdentity
from syncline.auth._verifier import TokenVerifier

__all__ = [
    "REVOKED_KEYS_FILENAME",
    "AdminKeys",
    "AuthProvider",
    "CustomJwtProvider",
    "OidcProvider",
    "RevocationList",
    "TokenVerifier",
    "UserIdentity",
    "load_auth_config",
    "load_or_create_instance_secret",
    "parse_providers",
]
