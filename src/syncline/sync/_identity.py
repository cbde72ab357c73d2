"""Turning credentials (a user JWT, an admin key) into an Identity."""

from __future__ import annotations

from syncline._errors import AuthenticationError
from syncline.auth import AdminKeys, TokenVerifier
from syncline.auth._admin import SCOPES
from syncline.runtime import ANONYMOUS, Identity


class Authenticator:
    """Verifies the credentials of sync sessions and HTTP requests."""

    def __init__(self, verifier: TokenVerifier, admin_keys: AdminKeys) -> None:
        self._verifier = verifier
        self._admin_keys = admin_keys

    def use(self, verifier: TokenVerifier) -> TokenVerifier:
        """Check tokens with ``verifier`` from now on (a deploy changed the auth
        config); returns the previous one, for the caller to close."""
        previous, self._verifier = self._verifier, verifier
        return previous

    async def identify(self, token_type: str, value: str | None) -> Identity:
        """``token_type`` is the sync protocol's: "User", "Admin" or "None"."""
        if token_type == "None" or value is None:
            return ANONYMOUS
        if token_type == "Admin":
            scopes = self._admin_keys.scopes(value)
            if scopes is None:
                raise AuthenticationError("the admin key is not valid for this deployment")
            return Identity(admin=True, admin_scopes=None if scopes == SCOPES else scopes)
        return Identity(user=await self._verifier.verify(value))

    async def from_authorization_header(self, header: str | None) -> Identity:
        """``Bearer <jwt>`` or ``Convex <admin key>``; no header is anonymous."""
        if not header:
            return ANONYMOUS
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential:
            return await self.identify("User", credential)
        if scheme.lower() == "convex" and credential:
            return await self.identify("Admin", credential)
        raise AuthenticationError(
            "Authorization header must be 'Bearer <token>' or 'Convex <admin key>'"
        )
