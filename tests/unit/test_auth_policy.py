"""Scoped grants: inheritance down the VM group tree, per-call checks, row and event visibility, redaction."""
from __future__ import annotations

import errno
from typing import Any

import pytest

from middlewared import credentials as creds
from middlewared import roles as roles_
from middlewared.config import Config
from middlewared.credentials import Credentials, ScopedGrant
from middlewared.errors import CallError
from middlewared.middleware import Middleware, redact
from middlewared.plugins import PLUGINS
from middlewared.plugins.auth.scope import GrantRow, ScopePolicy


@pytest.fixture
def middleware() -> Middleware:
    mw = Middleware(Config(), PLUGINS)
    policy = ScopePolicy(mw)
    # Groups: 1 (top) > 2 (child) ; 3 apart. VMs: 10 in 1, 20 in 2, 30 in 3, 40 in none.
    policy.index.parents = {1: None, 2: 1, 3: None}
    policy.index.vm_group_of = {10: 1, 20: 2, 30: 3}
    policy.index.owner_vm = {("vm.device", 100): 20, ("vm.device", 300): 30}
    policy.index.grants = [GrantRow(7, None, "VM_WRITE", "VM_GROUP", 1), GrantRow(None, 5, "VM_READ", "VM", 40)]
    mw.policy = policy
    return mw


def tenant(mw: Middleware) -> Credentials:
    assert isinstance(mw.policy, ScopePolicy)
    return creds.with_roles("LOGIN_PASSWORD", "t", [], user_id=7, grants=mw.policy.index.grants_for(7, [5]))


def test_grants_inherit_down_the_tree(middleware: Middleware) -> None:
    assert isinstance(middleware.policy, ScopePolicy)
    index, who = middleware.policy.index, tenant(middleware)
    assert index.roles_on_vm(who, 10) == index.roles_on_vm(who, 20) == frozenset({"VM_WRITE", "VM_CONSOLE", "VM_READ"})
    assert index.roles_on_vm(who, 30) == frozenset()
    assert index.roles_on_vm(who, 40) == frozenset({"VM_READ"})  # through the account group 5


async def call_allowed(mw: Middleware, who: Credentials, name: str, *params: Any) -> bool:
    method = mw.methods[name]  # a misspelled name fails here, not as a refusal
    try:
        await mw.authorize(method, who, params)
    except CallError as e:
        assert e.errno == errno.EACCES, e  # refused for lack of rights, not for another error
        return False
    return True


async def test_calls_on_vms(middleware: Middleware) -> None:
    who = tenant(middleware)
    assert await call_allowed(middleware, who, "vm.start", 20)
    assert not await call_allowed(middleware, who, "vm.start", 30)
    assert not await call_allowed(middleware, who, "vm.start", 40)  # read only there
    assert await call_allowed(middleware, who, "vm.status", 40)
    assert not await call_allowed(middleware, who, "vm.start", "20")  # not an id: refused, not guessed
    assert not await call_allowed(middleware, who, "vm.start")
    assert await call_allowed(middleware, who, "vm.query")  # rows are filtered
    assert not await call_allowed(middleware, who, "vm.create", {"name": "x"})
    assert await call_allowed(middleware, who, "core.get_jobs")
    assert not await call_allowed(middleware, who, "user.query")


def test_rows_and_events(middleware: Middleware) -> None:
    who = tenant(middleware)
    rows = [{"id": vm} for vm in (10, 20, 30, 40, 50)]
    assert [r["id"] for r in middleware.visible_rows("vm.query", ("VM_READ",), rows, who)] == [10, 20, 40]
    assert middleware.visible_rows("vm.query", ("VM_READ",), rows, creds.root()) == rows
    assert middleware.can_subscribe("vm.query", who) and not middleware.can_subscribe("user.query", who)
    assert middleware.event_view("vm.query", {"msg": "changed", "id": 20, "fields": {}}, who) is not None
    assert middleware.event_view("vm.query", {"msg": "removed", "id": 30}, who) is None
    assert middleware.event_view("core.get_jobs", {"msg": "added", "id": 1}, who) is not None


def test_device_payloads(middleware: Middleware) -> None:
    if "vm.device.query" not in middleware.events:
        pytest.skip("no vm.device plugin")
    assert isinstance(middleware.policy, ScopePolicy)
    who = creds.with_roles("LOGIN_PASSWORD", "d", [], user_id=8,
                           grants=(ScopedGrant(roles_.expand(["VM_DEVICE_READ"]), "VM", 20),))
    assert middleware.event_view("vm.device.query", {"msg": "removed", "id": 100}, who) is not None
    assert middleware.event_view("vm.device.query", {"msg": "removed", "id": 300}, who) is None
    assert middleware.event_view("vm.device.query", {"msg": "added", "id": 101, "fields": {"vm": 20}}, who) is not None


def test_secrets_are_masked_for_readers(middleware: Middleware) -> None:
    result = [{"id": 1, "devices": [{"attributes": {"password": "s3cret", "port": 5900}}]}]
    reader = creds.with_roles("LOGIN_PASSWORD", "r", ["READONLY_ADMIN"])
    writer = creds.with_roles("LOGIN_PASSWORD", "w", ["VM_WRITE"])
    query = middleware.methods["vm.query"]
    masked = middleware.dump_result(query, result, reader)
    assert masked[0]["devices"][0]["attributes"] == {"password": "********", "port": 5900}
    assert middleware.dump_result(query, result, writer) == result
    assert middleware.dump_result(query, result, creds.root()) == result


def test_audit_and_job_arguments_are_redacted(middleware: Middleware) -> None:
    login = middleware.methods["auth.login"]
    assert middleware.redact_args(login, ["alice", "hunter22", None]) == ["alice", "********", None]
    login_ex = middleware.methods["auth.login_ex"]
    assert middleware.redact_args(login_ex, [{"mechanism": "API_KEY_PLAIN", "api_key": "1-abc"}]) == \
        [{"mechanism": "API_KEY_PLAIN", "api_key": "********"}]
    # The REST API's bodies go through the same rule (Velocity's authkeys travel in them).
    assert redact({"authkey": "k", "users": [{"password": "p", "name": "n"}]}) == \
        {"authkey": "********", "users": [{"password": "********", "name": "n"}]}


async def test_expired_sessions(middleware: Middleware) -> None:
    old = creds.with_roles("API_KEY", "k", ["VM_READ"], expires=1.0)
    with pytest.raises(Exception, match="Session is expired"):
        await middleware.authorize(middleware.methods["vm.query"], old)
