"""TokenVerifier against real keys, real signatures and a real JWKS/OIDC server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import pickle
import socket
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest

from syncline._errors import AuthenticationError
from syncline.auth import (
    AuthProvider,
    CustomJwtProvider,
    OidcProvider,
    TokenVerifier,
    parse_providers,
)
from tests.fixtures.jwt_issuer import DISCOVERY_PATH, JWKS_PATH, JwksServer, JwtIssuer

APP_ID = "my-app"
T0 = 1_700_000_000.0


class FakeClock:
    """A settable clock, so expiry and refresh intervals need no sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(document: dict[str, Any]) -> str:
    return _b64url(json.dumps(document).encode())


def _claims(issuer: str, **extra: Any) -> dict[str, Any]:
    return {"iss": issuer, "sub": "user-1", "aud": APP_ID, "iat": T0, "exp": T0 + 3600, **extra}


@pytest.fixture(scope="module")
def rsa_issuer() -> JwtIssuer:
    return JwtIssuer("RS256")


@pytest.fixture
async def server(rsa_issuer: JwtIssuer) -> AsyncIterator[JwksServer]:
    async with JwksServer(rsa_issuer) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_verifier(
    clock: FakeClock,
) -> AsyncIterator[Callable[[Sequence[AuthProvider]], TokenVerifier]]:
    verifiers: list[TokenVerifier] = []

    def make(providers: Sequence[AuthProvider]) -> TokenVerifier:
        verifier = TokenVerifier(providers, clock=clock, http_timeout_seconds=2.0)
        verifiers.append(verifier)
        return verifier

    yield make
    for verifier in verifiers:
        await verifier.close()


@pytest.fixture
def url_verifier(
    server: JwksServer, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> TokenVerifier:
    provider = CustomJwtProvider(
        issuer=server.url, jwks=server.jwks_url, algorithm="RS256", application_id=APP_ID
    )
    return make_verifier([provider])


def _token(issuer: JwtIssuer, server: JwksServer, sub: str = "user-1", **kwargs: Any) -> str:
    kwargs.setdefault("audience", APP_ID)
    kwargs.setdefault("now", T0)
    return issuer.token(sub, issuer=server.url, **kwargs)


# --- accepted tokens ---------------------------------------------------------------


async def test_rs256_token_verifies_with_jwks_from_url(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    token = _token(rsa_issuer, server, email="ada@example.com", given_name="Ada")

    identity = await url_verifier.verify(token)

    assert identity.subject == "user-1"
    assert identity.issuer == server.url
    assert identity.token_identifier == f"{server.url}|user-1"
    assert identity.claims["email"] == "ada@example.com"
    convex = identity.to_convex()
    assert convex["givenName"] == "Ada"
    assert convex["tokenIdentifier"] == f"{server.url}|user-1"
    assert "exp" not in convex
    assert pickle.loads(pickle.dumps(identity)) == identity
    assert server.requests[JWKS_PATH] == 1


async def test_jwks_is_cached_across_verifications(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    for _ in range(3):
        await url_verifier.verify(_token(rsa_issuer, server))

    assert server.requests[JWKS_PATH] == 1


async def test_es256_token_verifies_with_jwks_from_file(
    tmp_path: Path, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> None:
    issuer = JwtIssuer("ES256", kid="ec-1")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text(json.dumps(issuer.jwks()))
    providers = parse_providers(
        [
            {
                "type": "customJwt",
                "issuer": "https://auth.example",
                "jwks": "keys/jwks.json",
                "algorithm": "ES256",
            }
        ],
        base_dir=tmp_path,
    )
    verifier = make_verifier(providers)

    identity = await verifier.verify(
        issuer.token("ec-user", issuer="https://auth.example", audience="anything", now=T0)
    )

    assert identity.token_identifier == "https://auth.example|ec-user"


async def test_eddsa_token_verifies_with_jwks_from_base64_data_uri(
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    issuer = JwtIssuer("EdDSA")
    provider = CustomJwtProvider(
        issuer="https://auth.example",
        jwks=issuer.jwks_data_uri(),
        algorithm="EdDSA",
        application_id=APP_ID,
    )

    identity = await make_verifier([provider]).verify(
        issuer.token("ed-user", issuer="https://auth.example", audience=APP_ID, now=T0)
    )

    assert identity.subject == "ed-user"


async def test_rs256_token_verifies_with_jwks_from_percent_encoded_data_uri(
    rsa_issuer: JwtIssuer, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> None:
    data_uri = "data:application/json," + urllib.parse.quote(json.dumps(rsa_issuer.jwks()))
    provider = CustomJwtProvider(
        issuer="https://auth.example", jwks=data_uri, algorithm="RS256", application_id=None
    )

    identity = await make_verifier([provider]).verify(
        rsa_issuer.token("u", issuer="https://auth.example", audience=None, now=T0)
    )

    assert identity.subject == "u"


async def test_oidc_provider_finds_keys_through_discovery(
    rsa_issuer: JwtIssuer,
    server: JwksServer,
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    verifier = make_verifier([OidcProvider(domain=server.url, application_id=APP_ID)])

    first = await verifier.verify(_token(rsa_issuer, server, email="a@b.c"))
    await verifier.verify(_token(rsa_issuer, server))

    assert first.to_convex()["email"] == "a@b.c"
    assert server.requests[DISCOVERY_PATH] == 1
    assert server.requests[JWKS_PATH] == 1


async def test_issuer_comparison_tolerates_only_a_trailing_slash(
    rsa_issuer: JwtIssuer,
    server: JwksServer,
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    verifier = make_verifier([OidcProvider(domain=server.url + "/", application_id=APP_ID)])

    identity = await verifier.verify(_token(rsa_issuer, server))
    with pytest.raises(AuthenticationError, match="No auth provider found"):
        await verifier.verify(
            rsa_issuer.token("u", issuer=server.url + "/tenant", audience=APP_ID, now=T0)
        )

    assert identity.issuer == server.url


async def test_token_without_kid_uses_the_single_key_of_the_jwks(
    rsa_issuer: JwtIssuer, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> None:
    issuer = JwtIssuer("ES256", kid=None)
    provider = CustomJwtProvider(
        issuer="https://a.example",
        jwks=issuer.jwks_data_uri(),
        algorithm="ES256",
        application_id=None,
    )

    identity = await make_verifier([provider]).verify(
        issuer.token("u", issuer="https://a.example", audience=None, now=T0)
    )

    assert identity.subject == "u"


async def test_token_without_kid_is_rejected_when_the_jwks_has_several_keys(
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    issuer = JwtIssuer("ES256", kid=None)
    issuer.rotate("second")
    issuer.kid = None
    provider = CustomJwtProvider(
        issuer="https://a.example",
        jwks=issuer.jwks_data_uri(),
        algorithm="ES256",
        application_id=None,
    )

    with pytest.raises(AuthenticationError, match=r"has no 'kid'.*exactly one ES256 key"):
        await make_verifier([provider]).verify(
            issuer.token("u", issuer="https://a.example", audience=None, now=T0)
        )


async def test_providers_sharing_an_issuer_accept_either_application_id(
    rsa_issuer: JwtIssuer,
    server: JwksServer,
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    verifier = make_verifier(
        [
            OidcProvider(domain=server.url, application_id="web"),
            OidcProvider(domain=server.url, application_id="mobile"),
        ]
    )

    web = await verifier.verify(_token(rsa_issuer, server, audience="web"))
    mobile = await verifier.verify(_token(rsa_issuer, server, audience=["x", "mobile"]))

    assert (web.subject, mobile.subject) == ("user-1", "user-1")
    assert server.requests[JWKS_PATH] == 1
    with pytest.raises(AuthenticationError, match="audience does not match"):
        await verifier.verify(_token(rsa_issuer, server, audience="desktop"))


# --- time claims ---------------------------------------------------------------------


async def test_expired_token_is_rejected_beyond_the_leeway(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = _token(rsa_issuer, server, expires_in_seconds=600)

    clock.now = T0 + 600 + 59
    within_leeway = await url_verifier.verify(token)
    clock.now = T0 + 600 + 61
    with pytest.raises(AuthenticationError, match=r"^Token expired$"):
        await url_verifier.verify(token)

    assert within_leeway.subject == "user-1"


async def test_token_without_exp_is_rejected(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    token = jwt.encode(
        {"iss": server.url, "sub": "u", "aud": APP_ID},
        rsa_issuer.private_key,
        algorithm="RS256",
        headers={"kid": rsa_issuer.kid},
    )

    with pytest.raises(AuthenticationError, match="no valid 'exp'"):
        await url_verifier.verify(token)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_token_from_the_future_is_rejected(
    claim: str,
    rsa_issuer: JwtIssuer,
    server: JwksServer,
    url_verifier: TokenVerifier,
    clock: FakeClock,
) -> None:
    future: dict[str, Any] = {claim: T0 + 300}
    token = _token(rsa_issuer, server, **future)

    with pytest.raises(AuthenticationError, match="not yet valid"):
        await url_verifier.verify(token)
    clock.now = T0 + 300 - 30
    identity = await url_verifier.verify(token)

    assert identity.claims[claim] == T0 + 300


# --- issuer, audience, subject ---------------------------------------------------------


async def test_unknown_issuer_is_rejected_naming_it(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    token = rsa_issuer.token("u", issuer="https://evil.example", audience=APP_ID, now=T0)

    with pytest.raises(AuthenticationError) as caught:
        await url_verifier.verify(token)

    assert caught.value.message == (
        "No auth provider found matching the token's issuer 'https://evil.example' "
        "(check auth_config.py)"
    )
    assert server.requests[JWKS_PATH] == 0


@pytest.mark.parametrize("audience", ["other-app", ["a", "b"], None, "my-app-2"])
async def test_wrong_audience_is_rejected(
    audience: Any, rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    with pytest.raises(AuthenticationError, match=r"^Token audience does not match applicationID$"):
        await url_verifier.verify(_token(rsa_issuer, server, audience=audience))


async def test_custom_jwt_without_application_id_ignores_audience(
    rsa_issuer: JwtIssuer,
    server: JwksServer,
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier],
) -> None:
    provider = CustomJwtProvider(
        issuer=server.url, jwks=server.jwks_url, algorithm="RS256", application_id=None
    )

    identity = await make_verifier([provider]).verify(_token(rsa_issuer, server, audience="zz"))

    assert identity.claims["aud"] == "zz"


async def test_token_without_sub_is_rejected(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    token = _token(rsa_issuer, server, sub="")

    with pytest.raises(AuthenticationError, match="no 'sub' claim"):
        await url_verifier.verify(token)


# --- algorithm confusion and forgery -----------------------------------------------------


async def test_alg_none_is_rejected(server: JwksServer, url_verifier: TokenVerifier) -> None:
    token = f"{_segment({'alg': 'none', 'kid': 'key-1'})}.{_segment(_claims(server.url))}."

    with pytest.raises(AuthenticationError) as caught:
        await url_verifier.verify(token)

    assert caught.value.message == "Token algorithm 'none' is not the configured 'RS256'"


async def test_hs256_signed_with_the_public_key_pem_is_rejected(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    # The classic confusion attack: a verifier that trusts the header's alg
    # would HMAC-verify this with the (public) key material and accept it.
    signing_input = f"{_segment({'alg': 'HS256', 'kid': 'key-1', 'typ': 'JWT'})}." + _segment(
        _claims(server.url)
    )
    mac = hmac.new(rsa_issuer.public_key_pem(), signing_input.encode(), hashlib.sha256)
    token = f"{signing_input}.{_b64url(mac.digest())}"

    with pytest.raises(AuthenticationError) as caught:
        await url_verifier.verify(token)

    assert caught.value.message == "Token algorithm 'HS256' is not the configured 'RS256'"


async def test_rs512_header_is_rejected_when_rs256_is_configured(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    token = jwt.encode(
        _claims(server.url),
        rsa_issuer.private_key,
        algorithm="RS512",
        headers={"kid": rsa_issuer.kid},
    )

    with pytest.raises(AuthenticationError) as caught:
        await url_verifier.verify(token)

    assert caught.value.message == "Token algorithm 'RS512' is not the configured 'RS256'"


async def test_tampered_signature_is_rejected(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    header, payload, signature = _token(rsa_issuer, server).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    tampered = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"

    with pytest.raises(AuthenticationError, match=r"^Token signature is invalid$"):
        await url_verifier.verify(tampered)


async def test_tampered_payload_is_rejected(
    rsa_issuer: JwtIssuer, server: JwksServer, url_verifier: TokenVerifier
) -> None:
    header, _, signature = _token(rsa_issuer, server).split(".")
    forged_payload = _segment(_claims(server.url, sub="admin"))

    with pytest.raises(AuthenticationError, match=r"^Token signature is invalid$"):
        await url_verifier.verify(f"{header}.{forged_payload}.{signature}")


async def test_token_signed_by_another_key_with_a_known_kid_is_rejected(
    server: JwksServer, url_verifier: TokenVerifier
) -> None:
    impostor = JwtIssuer("RS256", kid="key-1")

    with pytest.raises(AuthenticationError, match=r"^Token signature is invalid$"):
        await url_verifier.verify(_token(impostor, server))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",
        "....",
        f"{_b64url(b'not json')}.{_segment({'sub': 'x'})}.",
        f"{_segment({'alg': 'RS256'})}.{_b64url(b'[1, 2]')}.",
        f"{_segment({'alg': 'RS256'})}.{_b64url(b'{broken')}.",
    ],
)
async def test_malformed_tokens_are_rejected(token: str, url_verifier: TokenVerifier) -> None:
    with pytest.raises(AuthenticationError, match=r"^Malformed token$"):
        await url_verifier.verify(token)


async def test_oversized_token_is_rejected_before_parsing(url_verifier: TokenVerifier) -> None:
    token = "a" * 70_000 + ".b.c"

    with pytest.raises(AuthenticationError, match="longer than 65536 characters"):
        await url_verifier.verify(token)


# --- key rotation and fetch failures ------------------------------------------------------


async def test_unknown_kid_refetches_once_and_rotation_works(
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier], clock: FakeClock
) -> None:
    issuer = JwtIssuer("RS256", kid="key-1")
    async with JwksServer(issuer) as server:
        verifier = make_verifier([CustomJwtProvider(server.url, server.jwks_url, "RS256", APP_ID)])
        await verifier.verify(_token(issuer, server))

        # Within jwks_min_refresh_seconds of the first fetch, no refetch.
        issuer.rotate("key-2")
        with pytest.raises(AuthenticationError, match="kid 'key-2'"):
            await verifier.verify(_token(issuer, server))
        assert server.requests[JWKS_PATH] == 1

        clock.now += 11
        rotated = await verifier.verify(_token(issuer, server))
        assert server.requests[JWKS_PATH] == 2

        # A burst of tokens naming an unpublished key costs no further requests.
        forged = [_token(issuer, server, headers={"kid": f"bogus-{i}"}) for i in range(5)]
        results = await asyncio.gather(
            *(verifier.verify(token) for token in forged), return_exceptions=True
        )
        assert server.requests[JWKS_PATH] == 2
        assert all(isinstance(result, AuthenticationError) for result in results)
        assert str(results[0]) == (
            f"No RS256 key with kid 'bogus-0' in the JWKS for issuer '{server.url}'"
        )

        clock.now += 11
        issuer.rotate("key-3")
        assert (await verifier.verify(_token(issuer, server))).subject == "user-1"
        assert server.requests[JWKS_PATH] == 3
    assert rotated.subject == "user-1"


async def test_concurrent_tokens_with_a_new_kid_share_one_refetch(
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier], clock: FakeClock
) -> None:
    issuer = JwtIssuer("ES256", kid="key-1")
    async with JwksServer(issuer) as server:
        verifier = make_verifier([CustomJwtProvider(server.url, server.jwks_url, "ES256", APP_ID)])
        await verifier.verify(_token(issuer, server))
        issuer.rotate("key-2")
        clock.now += 11

        identities = await asyncio.gather(
            *(verifier.verify(_token(issuer, server, sub=f"u{i}")) for i in range(8))
        )

        assert sorted(identity.subject for identity in identities) == [f"u{i}" for i in range(8)]
        assert server.requests[JWKS_PATH] == 2


async def test_keys_older_than_an_hour_are_refetched_so_revocation_takes_effect(
    make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier], clock: FakeClock
) -> None:
    issuer = JwtIssuer("RS256", kid="key-1")
    async with JwksServer(issuer) as server:
        verifier = make_verifier([CustomJwtProvider(server.url, server.jwks_url, "RS256", APP_ID)])
        old_token = _token(issuer, server, expires_in_seconds=7200)
        await verifier.verify(old_token)

        issuer.rotate("key-2", keep_old=False)
        clock.now = T0 + 3601

        with pytest.raises(AuthenticationError, match="kid 'key-1'"):
            await verifier.verify(old_token)
        assert server.requests[JWKS_PATH] == 2


async def test_jwks_http_error_is_reported_without_internals(
    server: JwksServer, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> None:
    provider = CustomJwtProvider(
        issuer=server.url,
        jwks=server.url + "/missing.json",
        algorithm="RS256",
        application_id=APP_ID,
    )

    with pytest.raises(AuthenticationError) as caught:
        await make_verifier([provider]).verify(_token(JwtIssuer(), server))

    assert caught.value.message == (
        f"Could not fetch JWKS for issuer '{server.url}': "
        f"GET {server.url}/missing.json returned HTTP 404"
    )
    assert caught.value.__cause__ is not None


async def test_unreachable_jwks_is_reported_as_fetch_failure(
    rsa_issuer: JwtIssuer, make_verifier: Callable[[Sequence[AuthProvider]], TokenVerifier]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    issuer_url = f"http://127.0.0.1:{closed_port}"
    verifier = make_verifier([OidcProvider(domain=issuer_url, application_id=APP_ID)])
    token = rsa_issuer.token("u", issuer=issuer_url, audience=APP_ID, now=T0)

    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(token)

    assert caught.value.message.startswith(f"Could not fetch JWKS for issuer '{issuer_url}': ")
    assert "failed to connect" in caught.value.message


async def test_closed_verifier_refuses_and_close_is_idempotent(
    rsa_issuer: JwtIssuer, server: JwksServer
) -> None:
    provider = CustomJwtProvider(server.url, server.jwks_url, "RS256", APP_ID)
    async with TokenVerifier([provider]) as verifier:
        identity = await verifier.verify(rsa_issuer.token("u", issuer=server.url, audience=APP_ID))
    await verifier.close()

    with pytest.raises(RuntimeError, match="closed"):
        await verifier.verify(rsa_issuer.token("u", issuer=server.url, audience=APP_ID))
    assert identity.subject == "u"
