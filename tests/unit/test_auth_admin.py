"""Admin keys derived from the instance secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest

from syncline._errors import ConfigError
from syncline.auth import AdminKeys, RevocationList, load_or_create_instance_secret

SECRET = bytes(range(32))


def test_instance_secret_is_created_private_and_then_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    first = load_or_create_instance_secret(data_dir)
    second = load_or_create_instance_secret(data_dir)

    path = data_dir / "instance_secret"
    assert len(first) == 32
    assert first == second == path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["instance_secret"]


def test_instance_secrets_differ_between_instances(tmp_path: Path) -> None:
    assert load_or_create_instance_secret(tmp_path / "a") != load_or_create_instance_secret(
        tmp_path / "b"
    )


def test_truncated_instance_secret_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "instance_secret").write_bytes(b"short")

    with pytest.raises(ConfigError, match="exactly 32 bytes, found 5"):
        load_or_create_instance_secret(tmp_path)


def test_issued_key_has_the_documented_format() -> None:
    key = AdminKeys(SECRET).issue("ci-deploy")

    expected_mac = hmac.new(SECRET, b"ci-deploy", hashlib.sha256).hexdigest()
    assert key == f"syncline-admin|ci-deploy|{expected_mac}"
    assert AdminKeys(SECRET).issue().startswith("syncline-admin|default|")


def test_issued_keys_verify_and_are_deterministic() -> None:
    keys = AdminKeys(SECRET)

    assert keys.verify(keys.issue())
    assert keys.verify(keys.issue("ops_1"))
    assert keys.issue("ops_1") == AdminKeys(SECRET).issue("ops_1")


def test_key_from_another_secret_does_not_verify() -> None:
    other = AdminKeys(b"\x01" * 32).issue("default")

    assert not AdminKeys(SECRET).verify(other)


def test_renaming_a_key_invalidates_it() -> None:
    mac = AdminKeys(SECRET).issue("alice").rsplit("|", 1)[1]

    assert not AdminKeys(SECRET).verify(f"syncline-admin|bob|{mac}")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "syncline-admin",
        "syncline-admin|default",
        "syncline-admin||" + "0" * 64,
        "other-prefix|default|" + "0" * 64,
        "syncline-admin|default|" + "0" * 64,
        "syncline-admin|default|" + "0" * 63,
        "syncline-admin|déf|" + "0" * 64,
        "syncline-admin|a|b|" + "0" * 64,
        None,
        123,
        b"syncline-admin|default|",
    ],
)
def test_malformed_or_wrong_keys_are_rejected_without_raising(key: object) -> None:
    assert AdminKeys(SECRET).verify(key) is False  # type: ignore[arg-type]


def test_tampered_and_case_changed_keys_are_rejected() -> None:
    keys = AdminKeys(SECRET)
    key = keys.issue()
    last = key[-1]
    tampered = key[:-1] + ("0" if last != "0" else "1")

    assert not keys.verify(tampered)
    assert not keys.verify(key.upper())
    assert not keys.verify(key + "\n")


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "pipe|name", "naïve", "a\n"])
def test_invalid_names_cannot_be_issued(name: str) -> None:
    with pytest.raises(ConfigError, match="admin key name"):
        AdminKeys(SECRET).issue(name)


def test_name_of_64_allowed_characters_is_accepted() -> None:
    name = "A-z_0" * 12 + "abcd"

    key = AdminKeys(SECRET).issue(name)

    assert re.fullmatch(r"syncline-admin\|[A-Za-z0-9_-]{64}\|[0-9a-f]{64}", key)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        AdminKeys(b"too short")


def test_a_scoped_key_allows_only_its_scopes_and_cannot_be_widened() -> None:
    keys = AdminKeys(SECRET)
    deploy_only = keys.issue("ci", ["deploy"])
    assert deploy_only.startswith("syncline-admin|ci|deploy|")
    assert keys.scopes(deploy_only) == {"deploy"}
    assert keys.scopes(keys.issue("ops", ["run", "read"])) == {"read", "run"}
    assert keys.scopes(keys.issue("root")) == {"deploy", "read", "run"}
    # Editing the scopes breaks the signature; so does an unsorted or unknown list.
    assert keys.scopes(deploy_only.replace("|deploy|", "|deploy,run|")) is None
    assert keys.scopes(deploy_only.replace("|deploy|", "|all|")) is None
    assert keys.scopes(deploy_only.replace("|ci|deploy|", "|ci|")) is None
    with pytest.raises(ConfigError, match="non-empty subset of deploy, read, run"):
        keys.issue("x", ["admin"])
    with pytest.raises(ConfigError, match="got none"):
        keys.issue("x", [])


def test_a_key_named_in_the_revocation_file_stops_verifying_at_once(tmp_path: Path) -> None:
    revoked = RevocationList(tmp_path / "revoked_admin_keys")
    keys = AdminKeys(SECRET, revoked)
    ci, ops = keys.issue("ci", ["deploy"]), keys.issue("ops")
    assert keys.verify(ci) and keys.verify(ops)
    revoked.revoke("ci")
    revoked.revoke("ci")  # once is enough
    assert not keys.verify(ci) and keys.verify(ops)
    assert (tmp_path / "revoked_admin_keys").read_text() == "ci\n"
    # Edited by hand (or a mounted ConfigMap replaced): read again.
    (tmp_path / "revoked_admin_keys").write_text("# ops left\nops  # laptop lost\n")
    assert keys.verify(ci) and not keys.verify(ops)
    with pytest.raises(ConfigError, match="not a valid key name"):
        revoked.revoke("a b")
