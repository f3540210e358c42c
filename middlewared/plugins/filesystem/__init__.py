"""filesystem.*: the storage roots, directory listings, and files uploaded through POST /_upload."""
from __future__ import annotations

from middlewared.plugin import Plugin
from middlewared.plugins.filesystem.service import FilesystemService
from middlewared.plugins.filesystem.upload import routes

PLUGIN = Plugin(name="filesystem", services=(FilesystemService,), depends=("core",), routes=routes)
