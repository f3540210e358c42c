"""Velocity media pools (from the configuration), pool grants and media rows, and where media files live."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from middlewared.config import VelocityPool
from middlewared.plugins.velocity import vmbridge

if TYPE_CHECKING:
    from middlewared.middleware import Middleware
    from middlewared.plugins.velocity.endpoint import Velocity


def pools(velocity: "Velocity") -> dict[int, VelocityPool]:
    return {p.mpid: p for p in velocity.middleware.config.velocity_pools()}


def gid_column(gid: int) -> int | None:
    """The vm_group column value of a Velocity gid (the root group is NULL)."""
    return gid or None


def file_path(velocity: "Velocity", row: dict[str, Any]) -> str | None:
    """Where a media's file lives (None when its pool left the configuration)."""
    pool = pools(velocity).get(row["mpid"])
    return os.path.join(pool.path, row["mid"]) if pool else None


async def media(middleware: "Middleware", mid: str | None = None, gid: int | None = None) -> list[dict[str, Any]]:
    """Media rows (all, one mid, or one group's), with gid (0 for the root group) and readonly as a bool."""
    sql, params = "SELECT * FROM velocity_media", ()  # type: tuple[str, tuple[Any, ...]]
    if mid is not None:
        sql, params = sql + " WHERE mid = ?", (mid,)
    elif gid is not None:
        sql, params = sql + " WHERE IFNULL(vm_group, 0) = ?", (gid,)
    rows = await middleware.db.fetchall(sql + " ORDER BY name", params)
    return [{**r, "gid": r["vm_group"] or 0, "readonly": bool(r["readonly"])} for r in rows]


async def grants(middleware: "Middleware", gid: int | None = None) -> list[dict[str, Any]]:
    """Pool grants (all, or one group's), with gid and the flags as bools."""
    rows = await middleware.db.fetchall("SELECT * FROM velocity_pool_grant ORDER BY mpid")
    out = [{"gid": r["vm_group"] or 0, "mpid": r["mpid"], "quota": r["quota"], "write": bool(r["write"]),
            "manage": bool(r["manage"])} for r in rows]
    # The root group (the host) has every pool unless assigned otherwise, as Velocity assigned new pools to it.
    explicit = {g["mpid"] for g in out if g["gid"] == 0}
    out += [ROOT_GRANT | {"mpid": p.mpid} for p in middleware.config.velocity_pools() if p.mpid not in explicit]
    return sorted((g for g in out if gid is None or g["gid"] == gid), key=lambda g: (g["gid"], g["mpid"]))


ROOT_GRANT: dict[str, Any] = {"gid": 0, "quota": 0, "write": True, "manage": True}


async def attached(middleware: "Middleware", path: str) -> list[int]:
    """Ids of the VMs with a disk on this file."""
    return [vm["id"] for vm in await vmbridge.entries(middleware)
            if any(d["attributes"].get("path") == path for d in vm["devices"])]


async def prepare_pools(middleware: "Middleware") -> None:
    """Create missing pool directories; forget media whose upload a stop interrupted (row without file)."""
    paths = {pool.mpid: pool.path for pool in middleware.config.velocity_pools()}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.startswith(".upload-") and name.endswith(".part"):
                os.unlink(os.path.join(path, name))
    gone = [r["mid"] for r in await media(middleware)
            if r["mpid"] in paths and not os.path.exists(os.path.join(paths[r["mpid"]], r["mid"]))]
    if gone:
        await middleware.db.transaction(lambda db: db.executemany("DELETE FROM velocity_media WHERE mid = ?",
                                                                  [(mid,) for mid in gone]))
