"""core.*: ping, options, introspection, jobs, events, downloads and bulk calls."""
from __future__ import annotations

from middlewared.plugin import EventSpec, Plugin
from middlewared.plugins.core.service import CoreService

PLUGIN = Plugin(
    name="core",
    services=(CoreService,),
    events=(EventSpec("core.get_jobs", "Jobs: added, and changed on every state or progress change.", ()),),
)
