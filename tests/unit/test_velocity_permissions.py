"""The Velocity permission catalogue on the role table: one role each, granted exactly, inherited down."""
from __future__ import annotations

from middlewared import roles as roles_
from middlewared.credentials import ScopedGrant, with_roles
from middlewared.plugins.auth.scope import ScopeIndex
from middlewared.plugins.velocity import permissions as P


def test_each_permission_is_one_declared_scopable_role() -> None:
    assert len(P.CATALOGUE) == 22 and len(P.ROLE_NAMES) == 22
    for permission in P.CATALOGUE:
        assert permission.role in roles_.ROLES and permission.role in roles_.SCOPABLE


def test_a_granted_permission_amounts_to_itself_only() -> None:
    for permission in P.CATALOGUE:
        assert [p.name for p in P.amounts_to(roles_.expand([permission.role]))] == [permission.name]


def test_full_admin_holds_everything_and_json_rpc_roles_count() -> None:
    assert len(P.amounts_to(roles_.expand([roles_.FULL_ADMIN]))) == 22
    held = {p.name for p in P.amounts_to(roles_.expand(["VM_WRITE"]))}
    assert held == {"velocity.vm.create", "velocity.vm.remove", "velocity.vm.view", "velocity.vm.interact",
                    "velocity.vm.state"}


def test_inheritance_down_the_tree_only() -> None:
    index = ScopeIndex()
    index.parents = {1: None, 2: 1, 3: 2, 4: None}
    grant = ScopedGrant(roles_.expand(["VELOCITY_VM_VIEW"]), "VM_GROUP", 2)
    credentials = with_roles("TEST", "u", [], user_id=5, grants=(grant,))
    assert [g for g in (0, 1, 2, 3, 4) if P.has(index, credentials, "velocity.vm.view", g)] == [2, 3]
    assert P.anywhere(index, credentials, "velocity.vm.view")
    assert not P.anywhere(index, credentials, "velocity.vm.state")
    everywhere = with_roles("TEST", "u", ["VELOCITY_VM_STATE"], user_id=6)
    assert all(P.has(index, everywhere, "velocity.vm.state", g) for g in (0, 1, 2, 3, 4))
