"""The plugin table: every plugin the daemon loads, in start order (dependencies first)."""
from __future__ import annotations

from middlewared.plugin import Plugin
from middlewared.plugins import core, vm

PLUGINS: tuple[Plugin, ...] = (
    core.PLUGIN,
    vm.PLUGIN,
)
