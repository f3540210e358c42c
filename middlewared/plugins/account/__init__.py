"""user.* and group.*: local accounts and account groups."""
from __future__ import annotations

from middlewared.plugin import Plugin
from middlewared.plugins.account.service import GroupService, UserService

PLUGIN = Plugin(name="account", services=(UserService, GroupService), depends=("core",))
