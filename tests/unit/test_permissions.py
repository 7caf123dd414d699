"""Permission rules and the identity store: levels, grants, tokens hashed, expired and revoked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from jupyter_serving.errors import InvalidParameterValue, PermissionDenied, ResourceAlreadyExists
from jupyter_serving.identity.permissions import (
    CAN_MANAGE,
    CAN_QUERY,
    CAN_VIEW,
    EndpointPermissions,
    allows,
    highest,
    parse_acl,
)
from jupyter_serving.identity.principals import OWNER_KEY, IdentityStore, Principal, hash_token
from jupyter_serving.identity.secrets import SecretStore, secret_ref, secret_refs

ADMIN = Principal("admin", OWNER_KEY, admin=True)


@pytest.mark.parametrize(
    ("held", "needed", "ok"),
    [
        (None, CAN_VIEW, False),
        (CAN_VIEW, CAN_VIEW, True),
        (CAN_VIEW, CAN_QUERY, False),
        (CAN_QUERY, CAN_VIEW, True),
        (CAN_QUERY, CAN_MANAGE, False),
        (CAN_MANAGE, CAN_QUERY, True),
        ("CAN_EVERYTHING", CAN_VIEW, False),
    ],
)
def test_levels_are_ordered(held: str | None, needed: str, ok: bool) -> None:
    assert allows(held, needed) is ok


def test_highest_of_grants() -> None:
    assert highest([CAN_VIEW, CAN_MANAGE, CAN_QUERY]) == CAN_MANAGE
    assert highest([]) is None


@pytest.fixture
def store(tmp_path: Path) -> IdentityStore:
    return IdentityStore(tmp_path / "state" / "identity.sqlite")


def test_store_file_is_owner_only_and_tokens_are_hashed(store: IdentityStore, tmp_path: Path) -> None:
    sp = store.create_principal("app1")
    token, info = store.create_token(sp.application_id, "c", 60)
    path = tmp_path / "state" / "identity.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = b"".join(p.read_bytes() for p in path.parent.glob("identity.sqlite*"))
    assert token.encode() not in raw and hash_token(token).encode() in raw
    assert store.authenticate(token) == Principal("app1", sp.application_id, False, sp.id)
    assert store.authenticate(token + "x") is None
    assert store.authenticate("not-ours") is None
    assert info.expiry_time - info.creation_time == 60_000


def test_expired_revoked_and_deleted(store: IdentityStore) -> None:
    sp = store.create_principal("app1")
    expired, info = store.create_token(sp.application_id)
    store._db.execute("UPDATE tokens SET expiry_time = 1 WHERE token_id = ?", (info.token_id,))
    assert store.authenticate(expired) is None
    revoked, info = store.create_token(sp.application_id)
    store.revoke(info.token_id)
    assert store.authenticate(revoked) is None
    kept, _ = store.create_token(sp.application_id)
    store.delete_principal("app1")
    assert store.authenticate(kept) is None


def test_owner_tokens_authenticate_as_admin(store: IdentityStore) -> None:
    token, _ = store.create_token(OWNER_KEY)
    principal = store.authenticate(token)
    assert principal is not None and principal.admin


@pytest.mark.parametrize("bad", [None, "", "a\nb", "x" * 300, 7])
def test_display_names_are_checked(store: IdentityStore, bad: object) -> None:
    with pytest.raises(InvalidParameterValue):
        store.create_principal(bad)


def test_display_names_are_unique(store: IdentityStore) -> None:
    store.create_principal("app1")
    with pytest.raises(ResourceAlreadyExists):
        store.create_principal("app1")


@pytest.mark.parametrize("lifetime", [0, -1, True, "60", 10**12])
def test_lifetimes_are_checked(store: IdentityStore, lifetime: object) -> None:
    with pytest.raises(InvalidParameterValue):
        store.create_token(OWNER_KEY, None, lifetime)


def test_grants_creator_group_and_admin(store: IdentityStore) -> None:
    rules = EndpointPermissions(store, "admin")
    app = store.create_principal("app1").principal()
    other = store.create_principal("app2").principal()
    assert rules.level(ADMIN, "e1") == CAN_MANAGE
    assert rules.level(app, "e1") is None
    rules.grant_creator(app, "e1")
    assert rules.level(app, "e1") == CAN_MANAGE
    with pytest.raises(PermissionDenied, match="CAN_QUERY"):
        rules.require(other, "e1", "ep", CAN_QUERY)
    rules.update(
        "e1", {"access_control_list": [{"group_name": "users", "permission_level": CAN_VIEW}]}, replace=False
    )
    assert rules.level(other, "e1") == CAN_VIEW
    assert rules.level(app, "e1") == CAN_MANAGE  # the higher grant wins
    described = rules.update(
        "e1",
        {"access_control_list": [{"service_principal_name": "app2", "permission_level": CAN_QUERY}]},
        replace=True,
    )
    assert rules.level(app, "e1") is None and rules.level(other, "e1") == CAN_QUERY
    assert described["object_id"] == "/serving-endpoints/e1"
    assert described["access_control_list"][0]["user_name"] == "admin"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"access_control_list": {}},
        {"access_control_list": [1]},
        {"access_control_list": [{"service_principal_name": "a", "permission_level": "CAN_RUN"}]},
    ],
)
def test_bad_acl_bodies(body: object) -> None:
    with pytest.raises(InvalidParameterValue):
        parse_acl(body, lambda entry: "k")


def test_admin_permission_cannot_be_changed(store: IdentityStore) -> None:
    rules = EndpointPermissions(store, "admin")
    with pytest.raises(InvalidParameterValue, match="admin"):
        rules.update(
            "e1",
            {"access_control_list": [{"user_name": "admin", "permission_level": CAN_VIEW}]},
            replace=True,
        )


def test_secret_references(tmp_path: Path) -> None:
    assert secret_ref("{{secrets/s/k}}") == ("s", "k")
    assert secret_ref("{{secrets/s/k}}\n") is None and secret_ref("x{{secrets/s/k}}") is None
    config = {"served_entities": [{"environment_vars": {"A": "{{secrets/s/k}}", "B": "plain"}}, 3]}
    assert secret_refs(config) == [("s", "k")]
    store = SecretStore(tmp_path / "state")
    store.put("s", "k", "v")
    assert stat.S_IMODE((tmp_path / "state" / "secrets.json").stat().st_mode) == 0o600
    assert store.resolve({"A": "{{secrets/s/k}}", "B": "plain"}) == {"A": "v", "B": "plain"}
    with pytest.raises(KeyError):
        store.resolve({"A": "{{secrets/s/missing}}"})
    with pytest.raises(InvalidParameterValue):
        store.require([("s", "missing")])
    with pytest.raises(InvalidParameterValue):
        store.put("s/../x", "k", "v")
