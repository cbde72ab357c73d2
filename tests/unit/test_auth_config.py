"""parse_providers and load_auth_config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from syncline._errors import ConfigError
from syncline.auth import CustomJwtProvider, OidcProvider, load_auth_config, parse_providers

_JWKS_DATA_URI = "data:application/json," + '{"keys":[]}'


def test_oidc_entry_becomes_an_oidc_provider(tmp_path: Path) -> None:
    providers = parse_providers(
        [{"domain": "https://issuer.example", "applicationID": "my-app"}], base_dir=tmp_path
    )

    assert providers == [OidcProvider(domain="https://issuer.example", application_id="my-app")]


@pytest.mark.parametrize(
    "domain", ["http://127.0.0.1:3210", "http://localhost:8080/", "https://x.example/tenant/v2"]
)
def test_https_and_local_http_domains_are_accepted(domain: str, tmp_path: Path) -> None:
    [provider] = parse_providers([{"domain": domain, "applicationID": "a"}], base_dir=tmp_path)

    assert provider == OidcProvider(domain=domain, application_id="a")


def test_custom_jwt_entries_with_url_file_and_data_uri(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    raw = [
        {
            "type": "customJwt",
            "issuer": "https://auth.example",
            "jwks": "https://auth.example/.well-known/jwks.json",
            "algorithm": "RS256",
            "applicationID": "app",
        },
        {"type": "customJwt", "issuer": "iss-2", "jwks": "jwks.json", "algorithm": "ES256"},
        {"type": "customJwt", "issuer": "iss-3", "jwks": _JWKS_DATA_URI, "algorithm": "EdDSA"},
    ]

    assert parse_providers(raw, base_dir=tmp_path) == [
        CustomJwtProvider(
            issuer="https://auth.example",
            jwks="https://auth.example/.well-known/jwks.json",
            algorithm="RS256",
            application_id="app",
        ),
        CustomJwtProvider(
            issuer="iss-2",
            jwks=str((tmp_path / "jwks.json").resolve()),
            algorithm="ES256",
            application_id=None,
        ),
        CustomJwtProvider(
            issuer="iss-3", jwks=_JWKS_DATA_URI, algorithm="EdDSA", application_id=None
        ),
    ]


def _custom(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "customJwt",
        "issuer": "https://a.example",
        "jwks": "https://a.example/jwks.json",
        "algorithm": "RS256",
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"domain": "https://a"}, "'providers' must be a list, not dict"),
        (["https://a"], "providers[0]: must be a dict, not str"),
        (
            [{"domain": "https://a", "applicationID": "x", "extra": 1}],
            "providers[0]: unknown field 'extra'",
        ),
        ([{"applicationID": "x"}], "providers[0].domain: missing"),
        ([{"domain": "https://a"}], "providers[0].applicationID: missing"),
        ([{"domain": 5, "applicationID": "x"}], "providers[0].domain: must be a non-empty string"),
        (
            [{"domain": "http://issuer.example", "applicationID": "x"}],
            "providers[0].domain: must be an https URL",
        ),
        ([{"domain": "issuer.example", "applicationID": "x"}], "providers[0].domain"),
        ([{"type": "oidc", "domain": "https://a"}], "providers[0].type: must be 'customJwt'"),
        ([_custom(), _custom(algorithm="HS256")], "providers[1].algorithm: 'HS256' is not"),
        ([_custom(algorithm=None)], "providers[0].algorithm: missing"),
        ([_custom(issuer=None)], "providers[0].issuer: missing"),
        ([_custom(jwks=None)], "providers[0].jwks: missing"),
        ([_custom(domain="https://a")], "providers[0]: unknown field 'domain'"),
        ([_custom(applicationID="")], "providers[0].applicationID: must be a non-empty string"),
        ([_custom(jwks="http://a.example/jwks.json")], "providers[0].jwks: must be an https URL"),
        ([_custom(jwks="missing/jwks.json")], "providers[0].jwks: no such file"),
        ([_custom(jwks="data:application/json;base64,!!")], "providers[0].jwks: invalid data URI"),
        ([_custom(jwks="data:application/json,[1]")], "providers[0].jwks: invalid data URI"),
    ],
)
def test_malformed_entries_name_index_and_field(raw: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_providers(raw, base_dir=tmp_path)

    assert message in caught.value.message


def test_missing_auth_config_means_no_providers(tmp_path: Path) -> None:
    assert load_auth_config(tmp_path) == []


def test_auth_config_is_executed_and_relative_jwks_resolved_against_app_dir(
    tmp_path: Path,
) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": []}))
    (tmp_path / "auth_config.py").write_text(
        "import os\n"
        "DOMAIN = 'https://issuer.example'\n"
        "providers = [\n"
        "    {'domain': DOMAIN, 'applicationID': os.path.basename('/x/my-app')},\n"
        "    {'type': 'customJwt', 'issuer': 'i', 'jwks': 'jwks.json', 'algorithm': 'RS256'},\n"
        "]\n"
    )
    modules_before = set(sys.modules)

    providers = load_auth_config(tmp_path)

    assert providers == [
        OidcProvider(domain="https://issuer.example", application_id="my-app"),
        CustomJwtProvider(
            issuer="i",
            jwks=str((tmp_path / "jwks.json").resolve()),
            algorithm="RS256",
            application_id=None,
        ),
    ]
    assert set(sys.modules) - modules_before == set()


def test_auth_config_can_define_dataclasses(tmp_path: Path) -> None:
    (tmp_path / "auth_config.py").write_text(
        "from dataclasses import dataclass\n"
        "@dataclass\n"
        "class Issuer:\n"
        "    url: 'str'\n"
        "providers = [{'domain': Issuer('https://a.example').url, 'applicationID': 'x'}]\n"
    )

    assert load_auth_config(tmp_path) == [
        OidcProvider(domain="https://a.example", application_id="x")
    ]


def test_auth_config_without_providers_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "auth_config.py").write_text("PROVIDERS = []\n")

    with pytest.raises(ConfigError, match="must define 'providers'"):
        load_auth_config(tmp_path)


def test_auth_config_that_raises_is_reported(tmp_path: Path) -> None:
    (tmp_path / "auth_config.py").write_text("providers = [1 / 0]\n")

    with pytest.raises(ConfigError, match="failed to run: ZeroDivisionError") as caught:
        load_auth_config(tmp_path)

    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_auth_config_with_bad_entry_names_it(tmp_path: Path) -> None:
    (tmp_path / "auth_config.py").write_text("providers = [{'domain': 'https://a'}]\n")

    with pytest.raises(ConfigError, match=r"providers\[0\]\.applicationID: missing"):
        load_auth_config(tmp_path)
