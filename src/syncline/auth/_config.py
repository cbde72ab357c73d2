"""Auth providers, parsed from an app's ``auth_config.py``.

The file mirrors Convex's ``auth.config.ts``: it defines ``providers``, a list of
dicts, each either an OIDC provider or a custom-JWT provider::

    providers = [
        {"domain": "https://issuer.example", "applicationID": "my-app"},
        {
            "type": "customJwt",
            "issuer": "https://auth.example",
            "jwks": "https://auth.example/.well-known/jwks.json",
            "algorithm": "RS256",
            "applicationID": "my-app",
        },
    ]
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, cast, get_args
from urllib.parse import urlsplit

from syncline._errors import ConfigError
from syncline.auth._jwks import JwksFormatError, decode_data_uri, parse_jwks_document

#: The file, inside an app directory, that declares the auth providers.
AUTH_CONFIG_FILENAME = "auth_config.py"

JwtAlgorithm: TypeAlias = Literal["RS256", "ES256", "EdDSA"]

_ALGORITHMS: tuple[str, ...] = get_args(JwtAlgorithm)
_OIDC_FIELDS = frozenset({"domain", "applicationID"})
_CUSTOM_JWT_FIELDS = frozenset({"type", "issuer", "jwks", "algorithm", "applicationID"})
# Plain http is allowed only where no one can sit in the middle: a developer's
# own machine.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An OpenID Connect issuer, whose keys are found through discovery."""

    domain: str
    """The issuer URL; tokens' ``iss`` must equal it (up to a trailing slash)."""
    application_id: str
    """Must appear in every token's ``aud``."""


@dataclass(frozen=True, slots=True)
class CustomJwtProvider:
    """An issuer of plain JWTs whose keys are published as a JWKS."""

    issuer: str
    """Tokens' ``iss`` must equal it (up to a trailing slash)."""
    jwks: str
    """An http(s) URL, an absolute file path, or a ``data:`` URI holding the JWKS."""
    algorithm: JwtAlgorithm
    """The only signature algorithm accepted; the token's header cannot change it."""
    application_id: str | None
    """If set, must appear in every token's ``aud``; if None, ``aud`` is not checked."""


AuthProvider: TypeAlias = OidcProvider | CustomJwtProvider


def is_allowed_url(url: str) -> bool:
    """True for https URLs, and for plain http to this machine (development)."""
    parts = urlsplit(url)
    if not parts.netloc:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS


def load_auth_config(app_dir: Path) -> list[AuthProvider]:
    """Execute ``app_dir/auth_config.py`` and parse its ``providers``.

    Returns an empty list when the file does not exist (auth is then disabled).
    Raises :class:`ConfigError` if the file fails to run, lacks ``providers``,
    or declares a malformed provider.
    """
    path = app_dir / AUTH_CONFIG_FILENAME
    if not path.is_file():
        return []
    # A unique name keeps two apps (or two reloads) from sharing module state.
    module_name = f"_syncline_auth_config_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered only while it runs: dataclasses and typing look a module up
    # in sys.modules during class creation.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: failed to run: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(module_name, None)
    if not hasattr(module, "providers"):
        raise ConfigError(f"{path}: must define 'providers', a list of auth providers")
    return parse_providers(module.providers, base_dir=app_dir)


def parse_providers(raw: object, *, base_dir: Path) -> list[AuthProvider]:
    """Validate the ``providers`` list of an ``auth_config.py``.

    Relative JWKS file paths are resolved against ``base_dir``. Raises
    :class:`ConfigError` naming the entry index and field of the first problem.
    """
    if not isinstance(raw, list | tuple):
        raise ConfigError(
            f"{AUTH_CONFIG_FILENAME}: 'providers' must be a list, not {type(raw).__name__}"
        )
    return [_parse_entry(index, entry, base_dir) for index, entry in enumerate(raw)]


def _parse_entry(index: int, entry: object, base_dir: Path) -> AuthProvider:
    where = f"{AUTH_CONFIG_FILENAME}: providers[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a dict, not {type(entry).__name__}")
    kind = entry.get("type")
    if kind is None:
        return _parse_oidc(where, entry)
    if kind == "customJwt":
        return _parse_custom_jwt(where, entry, base_dir)
    raise ConfigError(f"{where}.type: must be 'customJwt' or omitted (OIDC), not {kind!r}")


def _parse_oidc(where: str, entry: Mapping[object, object]) -> OidcProvider:
    _reject_unknown_fields(where, entry, _OIDC_FIELDS)
    domain = _required_str(where, entry, "domain")
    if not is_allowed_url(domain):
        raise ConfigError(
            f"{where}.domain: must be an https URL (http only for localhost), not {domain!r}"
        )
    return OidcProvider(domain=domain, application_id=_required_str(where, entry, "applicationID"))


def _parse_custom_jwt(
    where: str, entry: Mapping[object, object], base_dir: Path
) -> CustomJwtProvider:
    _reject_unknown_fields(where, entry, _CUSTOM_JWT_FIELDS)
    issuer = _required_str(where, entry, "issuer")
    algorithm = _required_str(where, entry, "algorithm")
    if algorithm not in _ALGORITHMS:
        raise ConfigError(
            f"{where}.algorithm: {algorithm!r} is not supported (use one of "
            f"{', '.join(_ALGORITHMS)})"
        )
    application_id = entry.get("applicationID")
    if application_id is not None and (not isinstance(application_id, str) or not application_id):
        raise ConfigError(f"{where}.applicationID: must be a non-empty string if given")
    jwks = _parse_jwks_location(where, _required_str(where, entry, "jwks"), base_dir)
    return CustomJwtProvider(
        issuer=issuer,
        jwks=jwks,
        algorithm=cast(JwtAlgorithm, algorithm),
        application_id=application_id,
    )


def _parse_jwks_location(where: str, jwks: str, base_dir: Path) -> str:
    if jwks.startswith("data:"):
        try:
            parse_jwks_document(decode_data_uri(jwks))
        except JwksFormatError as exc:
            raise ConfigError(f"{where}.jwks: invalid data URI: {exc}") from exc
        return jwks
    if jwks.startswith(("http://", "https://")):
        if not is_allowed_url(jwks):
            raise ConfigError(
                f"{where}.jwks: must be an https URL (http only for localhost), not {jwks!r}"
            )
        return jwks
    path = (base_dir / jwks).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}.jwks: no such file {str(path)!r}")
    return str(path)


def _reject_unknown_fields(
    where: str, entry: Mapping[object, object], allowed: frozenset[str]
) -> None:
    for key in entry:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})"
            )


def _required_str(where: str, entry: Mapping[object, object], field: str) -> str:
    value = entry.get(field)
    if value is None:
        raise ConfigError(f"{where}.{field}: missing")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{field}: must be a non-empty string")
    return value
