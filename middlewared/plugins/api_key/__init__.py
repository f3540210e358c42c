"""api_key.*: API keys of local users (SCRAM-SHA-512 ready)."""
from __future__ import annotations

from middlewared.plugin import Plugin
from middlewared.plugins.api_key.service import ApiKeyService

PLUGIN = Plugin(name="api_key", services=(ApiKeyService,), depends=("core", "account"))
