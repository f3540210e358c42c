"""/m/pool/assign, /m/pool/list, /m/media/*: administrator-defined pools, group grants with byte quotas, and
media files (allocated, or streamed in and out) owned by groups."""
from __future__ import annotations

import asyncio
import errno
import os
import re
import sqlite3
import uuid
from typing import Any

from aiohttp import web

from middlewared.plugins.velocity import mediastore
from middlewared.plugins.velocity import schemas as S
from middlewared.plugins.velocity.endpoint import CORS, Call, Endpoint
from middlewared.plugins.velocity.errors import ErrorSpec as Err
from middlewared.utils.upload import UploadError, request_to_file


def _pool(call: Call, mpid: int, code: int) -> Any:
    pool = mediastore.pools(call.velocity).get(mpid)
    if pool is None:
        raise call.error(code, f"Pool {mpid} does not exist")
    return pool


async def assign_put(call: Call) -> None:
    b = call.body
    call.require_group(b["gid"], 6210)
    _pool(call, b["mpid"], 6211)
    call.require("velocity.pool.assign", b["gid"], 6200)
    values = (mediastore.gid_column(b["gid"]), b["mpid"], b["quota"], b["write"], b["manage"])
    await call.middleware.db.transaction(lambda db: db.execute(
        "INSERT INTO velocity_pool_grant (vm_group, mpid, quota, write, manage) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (IFNULL(vm_group, 0), mpid) DO UPDATE SET quota = excluded.quota, write = excluded.write,"
        " manage = excluded.manage", values))


async def assign_delete(call: Call) -> None:
    b = call.body
    call.require_group(b["gid"], 6310)
    _pool(call, b["mpid"], 6311)
    call.require("velocity.pool.revoke", b["gid"], 6300)
    await call.middleware.db.transaction(lambda db: db.execute(
        "DELETE FROM velocity_pool_grant WHERE IFNULL(vm_group, 0) = ? AND mpid = ?", (b["gid"], b["mpid"])))


async def pool_list(call: Call) -> dict[str, Any]:
    gid = call.body["gid"]
    call.require_group(gid, 7110)
    call.require("velocity.pool.list", gid, 7100)
    pools = mediastore.pools(call.velocity)
    return {"pools": [{"mpid": g["mpid"], "name": pools[g["mpid"]].name, "write": g["write"], "manage": g["manage"],
                       "quota": g["quota"]}
                      for g in await mediastore.grants(call.middleware, gid) if g["mpid"] in pools]}


async def _reserve(call: Call, gid: int, mpid: int, name: str, kind: str, readonly: bool, size: int,
                   codes: tuple[int, int, int]) -> str:
    """Insert the media row (its size reserved against the group's quota on the pool) in one transaction;
    concurrent creations and uploads therefore cannot overrun a quota together."""
    manage_code, duplicate_code, quota_code = codes
    mid = str(uuid.uuid4())

    def insert(db: sqlite3.Connection) -> str | None:
        grant = db.execute("SELECT quota, manage FROM velocity_pool_grant WHERE IFNULL(vm_group, 0) = ? AND mpid = ?",
                           (gid, mpid)).fetchone()
        if grant is None and gid == 0:
            grant = (mediastore.ROOT_GRANT["quota"], mediastore.ROOT_GRANT["manage"])
        if grant is None or not grant[1]:
            return "manage"
        if db.execute("SELECT 1 FROM velocity_media WHERE mpid = ? AND name = ?", (mpid, name)).fetchone():
            return "duplicate"
        used = db.execute("SELECT IFNULL(SUM(size), 0) FROM velocity_media WHERE IFNULL(vm_group, 0) = ?"
                          " AND mpid = ?", (gid, mpid)).fetchone()[0]
        if grant[0] and used + size > grant[0]:
            return f"quota {grant[0]} bytes, {used} used"
        db.execute("INSERT INTO velocity_media (mid, mpid, vm_group, name, type, readonly, size)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (mid, mpid, mediastore.gid_column(gid), name, kind, readonly, size))
        return None
    problem = await call.middleware.db.transaction(insert)
    if problem == "manage":
        raise call.error(manage_code, f"Group {gid} may not manage media in pool {mpid}")
    if problem == "duplicate":
        raise call.error(duplicate_code, f"Pool {mpid} already has media named {name}")
    if problem:
        raise call.error(quota_code, f"The group's quota on pool {mpid} would be exceeded ({problem})")
    call.velocity.incomplete.add(mid)
    return mid


async def _forget(call: Call, mid: str) -> None:
    call.velocity.incomplete.discard(mid)
    await call.middleware.db.transaction(lambda db: db.execute("DELETE FROM velocity_media WHERE mid = ?", (mid,)))


def _allocate(path: str, size: int) -> None:
    with open(path, "xb") as f:
        f.truncate(size)  # zeros, without writing them (a sparse file where the filesystem can)


async def create_put(call: Call) -> dict[str, Any]:
    b = call.body
    call.require_group(b["gid"], 8210)
    pool = _pool(call, b["mpid"], 8211)
    call.require("velocity.media.create", b["gid"], 8200)
    mid = await _reserve(call, b["gid"], b["mpid"], b["name"], b["type"], False, b["size"], (8201, 8220, 8221))
    try:
        await asyncio.to_thread(_allocate, os.path.join(pool.path, mid), b["size"])
    except BaseException:
        await _forget(call, mid)
        raise
    call.velocity.incomplete.discard(mid)
    return {"mid": mid, "size": b["size"]}


HEADERS = (("x-velocity-mpid", 9210), ("x-velocity-gid", 9211), ("x-velocity-name", 9212),
           ("x-velocity-type", 9213), ("x-velocity-readonly", 9214))


def _headers(call: Call) -> dict[str, str]:
    out = {}
    for header, code in HEADERS:
        value = call.request.headers.get(header, "").strip()
        valid = re.fullmatch("[0-9]{1,18}", value) is not None if header in ("x-velocity-mpid", "x-velocity-gid") else \
            value in ("true", "false") if header == "x-velocity-readonly" else bool(value)
        if not valid:
            raise call.error(code, f"Header {header} is missing or invalid")
        out[header.removeprefix("x-velocity-")] = value
    return out


async def upload_put(call: Call) -> dict[str, Any]:
    h = _headers(call)
    gid, mpid, length = int(h["gid"]), int(h["mpid"]), call.request.content_length
    if length is None:
        raise call.error(9215)
    call.require_group(gid, 9217)
    pool = _pool(call, mpid, 9218)
    call.require("velocity.media.create", gid, 9200)
    mid = await _reserve(call, gid, mpid, h["name"], h["type"], h["readonly"] == "true", length, (9201, 9220, 9221))
    try:
        await request_to_file(call.request, os.path.join(pool.path, mid), length)
    except UploadError as e:
        await _forget(call, mid)
        raise call.error(9222 if e.errno == errno.EINVAL else 9220, str(e)) from None
    except ConnectionError:  # the client went away mid-body: a short body, nobody to answer
        await _forget(call, mid)
        raise call.error(9222, f"The connection ended before {length} bytes arrived") from None
    except BaseException:
        await _forget(call, mid)
        raise
    call.velocity.incomplete.discard(mid)
    return {"mid": mid, "size": length}


# Bytes per read of a download.
CHUNK = 4 << 20


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


async def media_list(call: Call) -> dict[str, Any]:
    gid = call.body["gid"]
    call.require_group(gid, 10110)
    call.require("velocity.media.list", gid, 10100)
    writable = {g["mpid"] for g in await mediastore.grants(call.middleware, gid) if g["write"]}
    return {"media": [{"mid": m["mid"], "mpid": m["mpid"], "name": m["name"], "type": m["type"],
                       "size": _size(mediastore.file_path(call.velocity, m)),
                       "readonly": m["readonly"] or m["mpid"] not in writable}
                      for m in await mediastore.media(call.middleware, gid=gid)
                      if m["mid"] not in call.velocity.incomplete]}


async def _media(call: Call, permission: str, missing: int, forbidden: int) -> dict[str, Any]:
    rows = await mediastore.media(call.middleware, mid=call.body["mid"])
    if not rows or rows[0]["mid"] in call.velocity.incomplete:
        raise call.error(missing, f"Media {call.body['mid']} does not exist")
    call.require(permission, rows[0]["gid"], forbidden)
    return rows[0]


async def media_delete(call: Call) -> None:
    row = await _media(call, "velocity.media.remove", 19310, 19300)
    grant = [g for g in await mediastore.grants(call.middleware, row["gid"]) if g["mpid"] == row["mpid"]]
    if not grant or not grant[0]["manage"]:
        raise call.error(19301, f"The media's group may not manage media in pool {row['mpid']}")
    path = mediastore.file_path(call.velocity, row)
    users = await mediastore.attached(call.middleware, path) if path else []
    if users:
        raise call.error(19320, f"Media {row['mid']} is attached to VM(s) {', '.join(map(str, users))}")
    await _forget(call, row["mid"])
    if path:
        await asyncio.to_thread(_unlink, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def download_post(call: Call) -> web.StreamResponse:
    row = await _media(call, "velocity.media.list", 20110, 20100)
    path = mediastore.file_path(call.velocity, row)
    if path is None or not os.path.isfile(path):
        raise call.error(20110, f"Media {row['mid']} has no file")
    response = web.StreamResponse(headers={**CORS, "Content-Type": "application/octet-stream",
                                           "Content-Disposition": f'attachment; filename="{row["mid"]}"'})
    response.content_length = os.stat(path).st_size
    await response.prepare(call.request)
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


_GID_ONLY = S.request("Which group.", {"gid": S.GID}, ("gid",))
_MID_ONLY = S.request("Which media.", {"mid": S.string("The media's MID.")}, ("mid",))
MPID = S.integer("Pool id (from the configuration).")
NEW_MEDIA = S.response("The new media.", {"mid": S.string("Its MID (a UUID)."), "size": S.integer("Bytes.")})

ENDPOINTS = [
    Endpoint("PUT", "/m/pool/assign", "Give a group access to a pool (or change it): quota, write, manage.",
             assign_put, request=S.request("The assignment.", {
                 "gid": S.GID, "mpid": MPID, "quota": S.integer("Bytes the group's media may take in the pool (0: "
                                                                "no limit)."),
                 "write": S.boolean("The group's VMs may write to its media in the pool."),
                 "manage": S.boolean("The group may create and remove media in the pool.")},
                 ("gid", "mpid", "quota", "write", "manage")),
             errors=(Err(403, 6200, "velocity.pool.assign is needed on the group"), Err(404, 6210, "No such group"),
                     Err(404, 6211, "No such pool"))),
    Endpoint("DELETE", "/m/pool/assign", "Take a pool away from a group.", assign_delete,
             request=S.request("The assignment.", {"gid": S.GID, "mpid": MPID}, ("gid", "mpid")),
             errors=(Err(403, 6300, "velocity.pool.revoke is needed on the group"), Err(404, 6310, "No such group"),
                     Err(404, 6311, "No such pool"))),
    Endpoint("POST", "/m/pool/list", "The pools assigned to a group (directly).", pool_list, request=_GID_ONLY,
             response=S.response("The pools.", {"pools": S.array(S.response("A pool.", {
                 "mpid": MPID, "name": S.string("Name."), "write": S.boolean("Write allowed."),
                 "manage": S.boolean("Manage allowed."), "quota": S.integer("Quota in bytes (0: none).")}),
                 "Pools.")}),
             errors=(Err(403, 7100, "velocity.pool.list is needed on the group"), Err(404, 7110, "No such group")),
             audit=None),
    Endpoint("PUT", "/m/media/create", "Allocate a zero-filled media file of size bytes.", create_put,
             request=S.request("The new media.", {
                 "mpid": MPID, "gid": S.GID, "name": S.string("Name, unique in the pool.", minLength=1),
                 "type": S.string("Free text: ISO, DISK, IPSW...", minLength=1),
                 "size": S.integer("Bytes.")}, ("mpid", "gid", "name", "type", "size")),
             response=NEW_MEDIA,
             errors=(Err(403, 8200, "velocity.media.create is needed on the group"),
                     Err(403, 8201, "The group may not manage media in the pool"), Err(404, 8210, "No such group"),
                     Err(404, 8211, "No such pool"), Err(409, 8220, "The pool has media of that name"),
                     Err(406, 8221, "The group's quota on the pool would be exceeded"))),
    Endpoint("PUT", "/m/media/upload", "Upload a media file: the raw body, streamed to disk, exactly "
             "Content-Length bytes; metadata in x-velocity-mpid, -gid, -name, -type, -readonly.", upload_put,
             raw_body=True, response=NEW_MEDIA,
             errors=(Err(403, 9200, "velocity.media.create is needed on the group"),
                     Err(403, 9201, "The group may not manage media in the pool"),
                     Err(400, 9210, "x-velocity-mpid is missing or not a number"),
                     Err(400, 9211, "x-velocity-gid is missing or not a number"),
                     Err(400, 9212, "x-velocity-name is missing"), Err(400, 9213, "x-velocity-type is missing"),
                     Err(400, 9214, "x-velocity-readonly is not true or false"),
                     Err(411, 9215, "A Content-Length header is required"), Err(404, 9217, "No such group"),
                     Err(404, 9218, "No such pool"), Err(409, 9220, "The pool has media of that name"),
                     Err(406, 9221, "The group's quota on the pool would be exceeded"),
                     Err(400, 9222, "The body was not Content-Length bytes long"))),
    Endpoint("POST", "/m/media/list", "The media of a group; size is the file's, readonly also when the group "
             "may not write to the pool.", media_list, request=_GID_ONLY,
             response=S.response("The media.", {"media": S.array(S.response("A media.", {
                 "mid": S.string("MID."), "mpid": MPID, "name": S.string("Name."), "type": S.string("Type."),
                 "size": S.integer("Bytes."), "readonly": S.boolean("Read-only for the group's VMs.")}), "Media.")}),
             errors=(Err(403, 10100, "velocity.media.list is needed on the group"), Err(404, 10110, "No such group")),
             audit=None),
    Endpoint("DELETE", "/m/media", "Remove a media and its file (not while a VM has it attached).", media_delete,
             request=_MID_ONLY,
             errors=(Err(403, 19300, "velocity.media.remove is needed on the media's group"),
                     Err(403, 19301, "The media's group may not manage media in its pool"),
                     Err(404, 19310, "No such media"), Err(409, 19320, "A VM has the media attached"))),
    Endpoint("POST", "/m/media/download", "Download a media file (streamed).", download_post, request=_MID_ONLY,
             errors=(Err(403, 20100, "velocity.media.list is needed on the media's group"),
                     Err(404, 20110, "No such media")), audit=None),
]
