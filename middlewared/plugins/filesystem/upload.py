"""POST /_upload: a file sent to a job method that reads one (filesystem.put), in the TrueNAS style.

The body is multipart/form-data with a ``data`` field first, ``{"method": ..., "params": [...]}``, then a
``file`` field with the bytes. The caller authenticates with a token from auth.generate_token, as
``?auth_token=`` or an ``Authorization: Token <token>`` (or ``Bearer``) header. The file streams to disk
inside a job (progress and abort through core.get_jobs and core.job_abort); the answer, once it is
written, is ``{"job_id": N}``. Failures answer JSON ``{"error": {JSON-RPC error object}, "job_id"?}``.
The audit log records each upload as JSON-RPC records a call of its method: the token's user, the peer,
the parameters (secrets masked), the outcome.
"""
from __future__ import annotations

import asyncio
import errno
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

from aiohttp import BodyPartReader, web

from middlewared.api.errors import CALL_ERROR, error_object, simple_error
from middlewared.api.server import peer_origin
from middlewared.errors import CallError
from middlewared.job import Job, JobState
from middlewared.middleware import AuditSource
from middlewared.plugins.filesystem.service import FilesystemService
from middlewared.tokens import Token
from middlewared.utils.upload import BATCH, CHUNK

if TYPE_CHECKING:
    from middlewared.middleware import Method, Middleware

MAX_DATA_FIELD = 64 * 1024


def _fail(status: int, error: dict[str, Any], job_id: int | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if job_id is not None:
        body["job_id"] = job_id
    return web.json_response(body, status=status)


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value:
        return value.strip()
    return request.query.get("auth_token", "")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _data_field(reader: Any) -> dict[str, Any] | None:
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "data":
        return None
    raw = await part.read(decode=False)
    if len(raw) > MAX_DATA_FIELD:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    ok = isinstance(data, dict) and isinstance(data.get("method"), str) and isinstance(data.get("params", []), list)
    return data if ok else None


@dataclass
class _Upload:
    """One /_upload request as its audit record tells it, filled in as the request is read."""

    request: web.Request
    token: Token | None = None
    bad_token: bool = False
    method: "Method | None" = None
    params: list[Any] = field(default_factory=list)
    error: str | None = None

    def fail(self, status: int, error: dict[str, Any], job_id: int | None = None) -> web.Response:
        self.error = f"HTTP {status}: {error['data']['reason']}"
        return _fail(status, error, job_id)

    def refuse(self, status: int, message: str, errno_: int) -> web.Response:
        return self.fail(status, simple_error(CALL_ERROR, message, errno_))

    def audit(self, middleware: "Middleware") -> None:
        """Record the request as JSON-RPC records a call of the same method (a bad token as a failed
        token authentication); requests that name no method are not recorded, as on JSON-RPC."""
        origin = peer_origin(self.request)
        if self.bad_token:
            if middleware.audit_log is not None:
                middleware.audit_log.record("AUTHENTICATION", AuditSource(None, origin, None), "TOKEN_PLAIN", [],
                                            self.error)
        elif self.token is not None and self.method is not None:
            source = AuditSource(self.token.credentials.username, origin, None)
            middleware.audit_call(source, self.method, self.params, self.error)


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """The /_upload route."""

    async def upload(request: web.Request) -> web.StreamResponse:
        state = _Upload(request)
        try:
            response = await receive(state)
        except asyncio.CancelledError:  # the daemon stops, or the client went away
            state.error = "cancelled"
            raise
        except Exception as e:
            state.error = str(e) or repr(e)
            raise
        finally:
            state.audit(middleware)
        return response

    async def receive(state: _Upload) -> web.Response:
        request = state.request
        if request.content_length is None:
            return state.refuse(411, "A Content-Length header is required", errno.EINVAL)
        state.token = middleware.tokens.take(_token(request), request.remote)
        if state.token is None:
            state.bad_token = True
            return state.refuse(401, "A valid auth_token is required", errno.EACCES)
        if not request.content_type.startswith("multipart/"):
            return state.refuse(400, "The body must be multipart/form-data", errno.EINVAL)
        reader = await request.multipart()
        data = await _data_field(reader)
        if data is None:
            return state.refuse(400, 'The first field must be "data": {"method": ..., "params": [...]}',
                                errno.EINVAL)
        method = state.method = middleware.methods.get(data["method"])
        state.params = data.get("params", [])
        if method is None or method.spec.job is None or "input" not in method.spec.job.pipes:
            return state.refuse(404, f"{data['method']} does not accept uploads", errno.ENOENT)
        credentials = state.token.credentials
        try:
            await middleware.authorize(method, credentials, state.params)
            args = method.arguments.validate(state.params)
            service = middleware.service_of(FilesystemService)
            service.target(args[0], args[1])
        except Exception as e:
            return state.fail(403 if isinstance(e, CallError) and e.errno == errno.EACCES else 422, error_object(e))
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "file":
            return state.refuse(400, 'The second field must be "file"', errno.EINVAL)
        file_part = part
        # As for a raw body (utils/upload): the socket is read on while a batch is being written.
        request.content.set_read_chunk_size(BATCH)

        async def run(job: Job) -> Any:
            return await service.receive(job, args[0], args[1], _chunks(file_part), request.content_length)
        job = middleware.jobs.submit(method.name, args, method.spec.job, run, credentials,
                                     redacted_args=middleware.redact_args(method, args))
        await job.wait()
        if job.state == JobState.SUCCESS:
            return web.json_response({"job_id": job.id})
        if job.state == JobState.ABORTED:
            return state.fail(409, simple_error(CALL_ERROR, "The upload was aborted", errno.ECANCELED), job.id)
        assert job.raised is not None
        return state.fail(422, error_object(job.raised), job.id)

    return [web.post("/_upload", upload)]
