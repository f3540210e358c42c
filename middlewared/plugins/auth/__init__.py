"""auth.*, vm_group.* and acl.*: logins, sessions, tokens, and roles scoped to VM groups or VMs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from middlewared.plugin import Plugin
from middlewared.plugins.auth.acl import ACLService, VMGroupService
from middlewared.plugins.auth.scope import ScopePolicy
from middlewared.plugins.auth.service import AuthService

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


async def setup(middleware: "Middleware") -> None:
    """Install the access policy (scoped grants, rate limits) with the grants read from the datastore."""
    policy = ScopePolicy(middleware)
    await policy.index.load(middleware)
    middleware.policy = policy


async def teardown(middleware: "Middleware") -> None:
    """Back to global roles only."""
    middleware.policy = None


PLUGIN = Plugin(name="auth", services=(AuthService, VMGroupService, ACLService), depends=("core", "audit"),
                setup=setup, teardown=teardown)
