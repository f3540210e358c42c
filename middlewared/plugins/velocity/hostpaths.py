"""Host paths kept out of the messages Velocity clients read.

A Velocity user knows media by their mid and name and pools by their mpid, never where the host keeps them:
an error that quotes a file (libvirt's "Cannot access storage file", a missing disk, an existing target)
names the medium or pool instead, and any other host path is left out. The daemon's log keeps the message
as it was.
"""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from middlewared.plugins.velocity import mediastore

if TYPE_CHECKING:
    from middlewared.plugins.velocity.endpoint import Velocity

# An absolute path: a "/" not inside a word or URL, then up to the next blank, quote or bracket.
PATH = re.compile(r"(?<![\w.~/:-])/[^\s'\"`,;()\[\]{}<>]+")
# The REST API's own paths ("No endpoint at /v/foo", "use PUT /m/media/upload") are not host paths.
ROUTE_ROOTS = ("u", "m", "v")
HIDDEN = "(a host path)"


def _host_paths(message: str) -> list[str]:
    out = []
    for path in PATH.findall(message):
        path = path.rstrip(".:")
        first = path[1:].partition("/")[0]
        if path != "/" and first not in ROUTE_ROOTS:
            out.append(path)
    return out


async def public(velocity: "Velocity", message: str) -> str:
    """message with each host path replaced by the medium or pool it is, or left out."""
    paths = _host_paths(message)
    if not paths:
        return message
    pools = {os.path.normpath(p.path): p.mpid for p in velocity.middleware.config.velocity_pools()}
    for path in sorted(set(paths), key=len, reverse=True):  # longest first: a pool's path prefixes its files'
        normal = os.path.normpath(path)
        directory, name = os.path.split(normal)
        if normal in pools:
            shown = f"pool {pools[normal]}"
        elif directory in pools and (rows := await mediastore.media(velocity.middleware, mid=name)):
            shown = f"medium {name} ({rows[0]['name']!r})"
        elif directory in pools and name.startswith(".upload-"):
            shown = f"an upload's file in pool {pools[directory]}"
        else:
            shown = HIDDEN
        message = message.replace(path, shown)
    return message
