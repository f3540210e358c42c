"""filesystem.*: list the storage roots and receive uploaded files into them (through POST /_upload)."""
from __future__ import annotations

import asyncio
import errno
import os
import stat
from typing import Any, AsyncIterable

from middlewared.crud import query_rows
from middlewared.errors import CallError, ValidationErrors
from middlewared.job import Job
from middlewared.plugins.vm_device.paths import PathError, confine, real_roots
from middlewared.service import QUERY_FILTERS, QUERY_OPTIONS, JobOptions, Service, api_method
from middlewared.utils.upload import UploadError, stream_to_file

READ = ("FILESYSTEM_DATA_READ", "VM_DEVICE_READ")
# Whoever may attach media to VMs may bring the media too (an ISO for the create wizard).
WRITE = ("FILESYSTEM_DATA_WRITE", "VM_DEVICE_WRITE")

PATH: dict[str, Any] = {"title": "path", "type": "string", "minLength": 1,
                        "description": "Absolute path inside one of the [storage] roots."}
PUT_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "How to write the file.",
    "properties": {
        "mode": {"type": "integer", "minimum": 0, "maximum": 0o777, "default": 0o644,
                 "description": "Permission bits of the new file."},
        "overwrite": {"type": "boolean", "default": False,
                      "description": "Replace an existing file instead of refusing with EEXIST."},
    },
}
ENTRY: dict[str, Any] = {
    "type": "object", "description": "A directory entry.",
    "properties": {
        "name": {"type": "string", "description": "File name."},
        "path": {"type": "string", "description": "Absolute path."},
        "realpath": {"type": "string", "description": "Path with symlinks resolved."},
        "type": {"type": "string", "enum": ["DIRECTORY", "FILE", "SYMLINK", "OTHER"],
                 "description": "Kind of entry (a symlink is described by its target when it has one)."},
        "size": {"type": "integer", "description": "Size in bytes."},
        "mode": {"type": "integer", "description": "st_mode."},
        "mtime": {"type": "number", "description": "Modification time (Unix seconds)."},
    },
}
LISTDIR_RESULT: dict[str, Any] = {"title": "result", "description": "Entries (a list, a count or one entry).",
                                  "anyOf": [{"type": "array", "items": ENTRY}, {"type": "integer"}, ENTRY]}
ROOTS_RESULT: dict[str, Any] = {"title": "result", "type": "array", "items": {"type": "string"},
                                "description": "The configured storage roots."}
PUT_RESULT: dict[str, Any] = {"title": "result", "type": "integer", "description": "Bytes written."}


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "DIRECTORY"
    if stat.S_ISREG(mode):
        return "FILE"
    return "OTHER"


def list_entries(directory: str) -> list[dict[str, Any]]:
    """The entries of a directory, each described by what it points to (a dangling link as SYMLINK)."""
    out = []
    with os.scandir(directory) as it:
        for entry in it:
            try:
                st = entry.stat()
                kind = _kind(st.st_mode)
            except OSError:
                st, kind = entry.stat(follow_symlinks=False), "SYMLINK"
            out.append({"name": entry.name, "path": entry.path, "realpath": os.path.realpath(entry.path),
                        "type": kind, "size": st.st_size, "mode": st.st_mode, "mtime": st.st_mtime})
    return out


class FilesystemService(Service):
    """filesystem.* methods."""

    namespace = "filesystem"

    def confined(self, path: str, attribute: str) -> str:
        """The real path of path, or ValidationErrors on attribute when it lies outside the storage roots."""
        try:
            return confine(path, real_roots(self.middleware.config.storage.roots))
        except PathError as e:
            raise _invalid(attribute, str(e)) from None

    @api_method(result=ROOTS_RESULT, roles=READ)
    async def roots(self) -> list[str]:
        """The storage roots: the only trees where media, CDROM and RAW files may live."""
        return list(self.middleware.config.storage.roots)

    @api_method(params=[PATH, QUERY_FILTERS, QUERY_OPTIONS], result=LISTDIR_RESULT, roles=READ)
    async def listdir(self, path: str, filters: list[Any], options: dict[str, Any]) -> Any:
        """The entries of a directory under the storage roots, with query filters and options."""
        real = self.confined(path, "path")
        if not os.path.isdir(real):
            raise CallError(f"{path} is not a directory", errno.ENOTDIR)
        return query_rows(await asyncio.to_thread(list_entries, real), filters, options)

    @api_method(params=[PATH, PUT_OPTIONS], result=PUT_RESULT, roles=WRITE, audit="put",
                job=JobOptions(pipes=("input",), abortable=True, description=lambda a: f"Uploading {a[0]}"))
    async def put(self, path: str, options: dict[str, Any], *, job: Job) -> int:
        """Write the file sent with this call through POST /_upload (refused over the WebSocket)."""
        raise CallError("filesystem.put reads a file: send it through POST /_upload", errno.EINVAL)

    async def receive(self, job: Job, path: str, options: dict[str, Any], chunks: AsyncIterable[bytes],
                      length: int | None) -> int:
        """The body of an upload job: stream the file to path, with progress against length."""
        target = self.target(path, options)

        def progress(done: int) -> None:
            job.set_progress(done * 100 / length if length else None,
                             f"{done // 2**20} of {length // 2**20} MiB" if length else f"{done // 2**20} MiB")
        try:
            # The file part's own length is not announced: the request's Content-Length bounds it, and a
            # body cut short fails the part reader, which removes the partial file.
            return await stream_to_file(chunks, target, None, progress, options["overwrite"], options["mode"])
        except UploadError as e:
            raise CallError(str(e), e.errno) from None
        except OSError as e:
            raise CallError(f"The upload did not complete: {e}", getattr(e, "errno", None) or errno.EIO) from None

    def target(self, path: str, options: dict[str, Any]) -> str:
        """Where an upload to path may be written: its directory inside the roots, the name not a directory."""
        name = os.path.basename(path)
        if not name or name in (".", ".."):
            raise _invalid("path", "The path must name a file")
        directory = self.confined(os.path.dirname(path) or "/", "path")
        if not os.path.isdir(directory):
            raise _invalid("path", f"Directory {os.path.dirname(path)} does not exist")
        target = os.path.join(directory, name)
        if os.path.isdir(target):
            raise _invalid("path", f"{path} is a directory")
        if os.path.lexists(target) and not options["overwrite"]:
            raise _invalid("path", f"{path} already exists", errno.EEXIST)
        return target


def _invalid(attribute: str, message: str, errno_: int = errno.EINVAL) -> ValidationErrors:
    errors = ValidationErrors()
    errors.add(attribute, message, errno_)
    return errors
