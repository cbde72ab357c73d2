"""UserIdentity.to_convex: Convex's UserIdentity shape."""

from __future__ import annotations

from types import MappingProxyType

from syncline.auth import UserIdentity


def _identity(**claims: object) -> UserIdentity:
    all_claims = {"iss": "https://i.example", "sub": "u1", **claims}
    return UserIdentity(
        token_identifier="https://i.example|u1",
        subject="u1",
        issuer="https://i.example",
        claims=MappingProxyType(all_claims),
    )


def test_standard_claims_are_renamed_as_convex_does() -> None:
    standard = {
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "nickname": "ada",
        "preferred_username": "ada.l",
        "profile": "https://p.example/ada",
        "picture": "https://p.example/ada.png",
        "email": "ada@example.com",
        "email_verified": True,
        "gender": "female",
        "birthdate": "1815-12-10",
        "zoneinfo": "Europe/London",
        "locale": "en-GB",
        "phone_number": "+44 20 0000 0000",
        "phone_number_verified": False,
        "address": {"country": "UK"},
        "updated_at": 1700000000,
    }

    assert _identity(**standard).to_convex() == {
        "tokenIdentifier": "https://i.example|u1",
        "subject": "u1",
        "issuer": "https://i.example",
        "name": "Ada Lovelace",
        "givenName": "Ada",
        "familyName": "Lovelace",
        "nickname": "ada",
        "preferredUsername": "ada.l",
        "profileUrl": "https://p.example/ada",
        "pictureUrl": "https://p.example/ada.png",
        "email": "ada@example.com",
        "emailVerified": True,
        "gender": "female",
        "birthday": "1815-12-10",
        "timezone": "Europe/London",
        "language": "en-GB",
        "phoneNumber": "+44 20 0000 0000",
        "phoneNumberVerified": False,
        "address": {"country": "UK"},
        "updatedAt": 1700000000.0,
    }


def test_registered_claims_are_dropped_and_custom_claims_kept() -> None:
    convex = _identity(
        aud="app", exp=2, iat=1, nbf=1, jti="x", org_id="org_7", roles=["admin", 3]
    ).to_convex()

    assert set(convex) == {"tokenIdentifier", "subject", "issuer", "org_id", "roles"}
    assert convex["org_id"] == "org_7"
    assert convex["roles"] == ["admin", 3.0]


def test_integers_become_floats_at_any_depth_and_bools_stay_bools() -> None:
    convex = _identity(meta={"count": 2, "ok": True, "nested": [1, {"n": 5}]}).to_convex()

    assert convex["meta"] == {"count": 2.0, "ok": True, "nested": [1.0, {"n": 5.0}]}
    assert type(convex["meta"]["count"]) is float
    assert type(convex["meta"]["ok"]) is bool


def test_custom_claims_cannot_shadow_standard_or_identity_fields() -> None:
    convex = _identity(
        tokenIdentifier="forged|id", subject="forged", givenName="Custom", given_name="Std"
    ).to_convex()

    assert convex["tokenIdentifier"] == "https://i.example|u1"
    assert convex["subject"] == "u1"
    assert convex["givenName"] == "Std"


def test_identity_is_hashable_by_its_identifying_fields() -> None:
    assert hash(_identity(a=1)) == hash(_identity(a=2))
    assert _identity(a=1) != _identity(a=2)
