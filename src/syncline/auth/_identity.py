"""The identity a verified token proves, in Convex's ``UserIdentity`` shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Claims that describe the token rather than the user; Convex leaves them out.
_REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti"})

# OIDC standard claims (snake_case) and the camelCase names Convex exposes them by.
_CONVEX_NAME_BY_CLAIM: Mapping[str, str] = {
    "name": "name",
    "given_name": "givenName",
    "family_name": "familyName",
    "nickname": "nickname",
    "preferred_username": "preferredUsername",
    "profile": "profileUrl",
    "picture": "pictureUrl",
    "email": "email",
    "email_verified": "emailVerified",
    "gender": "gender",
    "birthdate": "birthday",
    "zoneinfo": "timezone",
    "locale": "language",
    "phone_number": "phoneNumber",
    "phone_number_verified": "phoneNumberVerified",
    "address": "address",
    "updated_at": "updatedAt",
}


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """A user proven by a verified token."""

    token_identifier: str
    """``"{iss}|{sub}"``: unique across issuers, the stable key for a user."""
    subject: str
    """The token's ``sub``: the user's id at the issuer."""
    issuer: str
    """The token's ``iss``."""
    claims: Mapping[str, Any] = field(hash=False)
    """Every claim of the token, as decoded from its JSON payload."""

    def to_convex(self) -> dict[str, Any]:
        """The identity as Convex's ``ctx.auth.getUserIdentity()`` returns it.

        Standard OIDC claims are renamed to Convex's camelCase names, other
        custom claims keep their names, and registered claims (``exp``, ...)
        are dropped. Integers become floats: Convex numbers are float64.
        """
        identity: dict[str, Any] = {}
        # Custom claims first, so a custom claim cannot shadow a standard one
        # or the three fields every identity has.
        for claim, value in self.claims.items():
            if claim not in _REGISTERED_CLAIMS and claim not in _CONVEX_NAME_BY_CLAIM:
                identity[claim] = _to_convex_value(value)
        for claim, convex_name in _CONVEX_NAME_BY_CLAIM.items():
            if claim in self.claims:
                identity[convex_name] = _to_convex_value(self.claims[claim])
        identity["tokenIdentifier"] = self.token_identifier
        identity["subject"] = self.subject
        identity["issuer"] = self.issuer
        return identity


def _to_convex_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            # Beyond float64's range; a string keeps the digits instead of failing.
            return str(value)
    if isinstance(value, Mapping):
        return {str(key): _to_convex_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_convex_value(item) for item in value]
    return str(value)
