"""Unity Catalog grant rules (identity/grants.py) on a real identity store in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_serving.errors import InvalidParameterValue, PermissionDenied
from jupyter_serving.identity.grants import (
    ACCOUNT_USERS,
    RECREATE_HINT,
    Securable,
    UnityCatalogGrants,
    is_uc_name,
    securable,
    serving_requirements,
)
from jupyter_serving.identity.principals import OWNER_KEY, IdentityStore, Principal

MODEL = Securable("function", "main.default.iris")


@pytest.fixture
def grants(tmp_path: Path) -> Iterator[UnityCatalogGrants]:
    store = IdentityStore(tmp_path / "identity.sqlite")
    yield UnityCatalogGrants(store, "admin")
    store.close()


def change(
    grants: UnityCatalogGrants, kind: str, name: str, who: str, add: list[str], remove: tuple[str, ...] = ()
) -> None:
    grants.update(
        securable(kind, name), {"changes": [{"principal": who, "add": add, "remove": list(remove)}]}
    )


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("volume", "main.default.v", "not supported"),
        ("function", "main.default", "full name"),
        ("catalog", "main.default", "full name"),
        ("schema", "main..x", "full name"),
        ("table", "main.default.a b", "full name"),
    ],
)
def test_securable_names_are_checked(kind: str, name: str, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        securable(kind, name)


def test_securable_types_are_case_insensitive_and_ancestors_run_upward() -> None:
    assert securable("FUNCTION", "main.default.iris") == MODEL
    assert MODEL.ancestors == [MODEL, Securable("schema", "main.default"), Securable("catalog", "main")]


def test_only_three_level_names_need_grants() -> None:
    assert not is_uc_name("iris-lr") and not is_uc_name("a.b") and is_uc_name("main.default.iris")
    needs = serving_requirements(["iris-lr", "main.default.iris", "main.default.iris"], ["main.fs.t"])
    assert [(p, str(s)) for p, s in needs] == [
        ("USE_CATALOG", "catalog 'main'"),
        ("USE_SCHEMA", "schema 'main.default'"),
        ("EXECUTE", "function 'main.default.iris'"),
        ("USE_SCHEMA", "schema 'main.fs'"),
        ("SELECT", "table 'main.fs.t'"),
    ]


def test_grants_are_inherited_downward_and_all_privileges_holds_each(grants: UnityCatalogGrants) -> None:
    sp = grants.store.create_principal("bot").principal()
    assert not grants.holds(sp, "EXECUTE", MODEL)
    change(grants, "catalog", "main", "bot", ["ALL_PRIVILEGES"])
    assert all(grants.holds(sp, p, MODEL) for p in ("USE_CATALOG", "USE_SCHEMA", "EXECUTE"))
    assert not grants.holds(sp, "EXECUTE", Securable("function", "other.default.iris"))
    change(grants, "catalog", "main", "bot", [], ("ALL_PRIVILEGES",))
    change(grants, "schema", "main.default", "bot", ["EXECUTE"])
    assert grants.holds(sp, "EXECUTE", MODEL) and not grants.holds(sp, "USE_CATALOG", MODEL)


def test_account_users_is_every_service_principal_and_the_owner_holds_everything(
    grants: UnityCatalogGrants,
) -> None:
    sp = grants.store.create_principal("bot").principal()
    change(grants, "function", "main.default.iris", ACCOUNT_USERS, ["EXECUTE"])
    assert grants.holds(sp, "EXECUTE", MODEL)
    assert grants.holds(Principal("admin", OWNER_KEY, admin=True), "SELECT", Securable("table", "x.y.z"))


def test_require_names_the_first_missing_privilege_and_securable(grants: UnityCatalogGrants) -> None:
    sp = grants.store.create_principal("bot").principal()
    change(grants, "catalog", "main", "bot", ["USE_CATALOG"])
    needs = serving_requirements(["main.default.iris"], [])
    with pytest.raises(
        PermissionDenied, match=r"'bot' does not have USE_SCHEMA on schema 'main\.default'\.$"
    ):
        grants.require(sp, needs)
    with pytest.raises(PermissionDenied) as refused:
        grants.require(sp, needs, as_creator="ep")
    assert "creator of endpoint 'ep'" in refused.value.message and RECREATE_HINT in refused.value.message


def test_a_deleted_creator_is_refused_and_loses_its_grants(grants: UnityCatalogGrants) -> None:
    sp = grants.store.create_principal("bot")
    change(grants, "catalog", "main", "bot", ["USE_CATALOG"])
    assert grants.creator("ep", "bot", sp.application_id) == sp.principal()
    assert grants.creator("ep", "admin", OWNER_KEY) == Principal("admin", OWNER_KEY, admin=True)
    assert grants.creator("ep", "someone", None) is None  # recorded before creators were keyed
    grants.store.delete_principal("bot")
    with pytest.raises(PermissionDenied, match="no longer a member"):
        grants.creator("ep", "bot", sp.application_id)
    assert grants.store.grants("catalog", "main") == []


def test_get_and_effective_shapes(grants: UnityCatalogGrants) -> None:
    app = grants.store.create_principal("bot").application_id
    change(grants, "catalog", "main", "bot", ["USE_CATALOG", "use schema"])
    change(grants, "function", "main.default.iris", "bot", ["EXECUTE"])
    assert grants.assignments(Securable("catalog", "main")) == {
        "privilege_assignments": [{"principal": app, "privileges": ["USE_CATALOG", "USE_SCHEMA"]}]
    }
    assert grants.effective(MODEL, "bot") == {
        "privilege_assignments": [
            {
                "principal": app,
                "privileges": [
                    {"privilege": "EXECUTE"},
                    {
                        "privilege": "USE_CATALOG",
                        "inherited_from_type": "CATALOG",
                        "inherited_from_name": "main",
                    },
                    {
                        "privilege": "USE_SCHEMA",
                        "inherited_from_type": "CATALOG",
                        "inherited_from_name": "main",
                    },
                ],
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"changes": {}}, "changes must be a list"),
        ({"changes": [{"principal": "bot", "add": "EXECUTE"}]}, "list of privilege names"),
        ({"changes": [{"principal": "bot", "add": ["SELECT"]}]}, "not applicable"),
        ({"changes": [{"principal": "nobody", "add": ["EXECUTE"]}]}, "Could not find principal"),
        ({"changes": [{"principal": "admin", "add": ["EXECUTE"]}]}, "server owner"),
        ({"changes": [{"add": ["EXECUTE"]}]}, "principal is required"),
    ],
)
def test_bad_changes_are_400_and_change_nothing(
    grants: UnityCatalogGrants, body: object, message: str
) -> None:
    grants.store.create_principal("bot")
    with pytest.raises(InvalidParameterValue, match=message):
        grants.update(MODEL, body)
    assert grants.store.grants("function", "main.default.iris") == []
