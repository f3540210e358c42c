"""The plugin table: every plugin the daemon loads, in start order (dependencies first)."""
from __future__ import annotations

from middlewared.plugin import Plugin
from middlewared.plugins import (account, api_key, audit, auth, core, filesystem, metrics, velocity, vm, vm_device,
                                 vm_snapshot, webui)

PLUGINS: tuple[Plugin, ...] = (
    core.PLUGIN,
    vm.PLUGIN,
    vm_device.PLUGIN,
    vm_snapshot.PLUGIN,
    audit.PLUGIN,
    auth.PLUGIN,
    account.PLUGIN,
    api_key.PLUGIN,
    filesystem.PLUGIN,
    metrics.PLUGIN,
    velocity.PLUGIN,
    webui.PLUGIN,
)
