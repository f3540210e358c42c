"""GET /_download/{job_id}?auth_token=...: stream the output pipe of a job to an HTTP client."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


async def download(middleware: "Middleware", request: web.Request) -> web.StreamResponse:
    """Serve the bytes a job writes to its output pipe; the token must be bound to that job."""
    try:
        job_id = int(request.match_info["job_id"])
    except ValueError:
        raise web.HTTPBadRequest(text="Invalid job id") from None
    token = middleware.tokens.take(request.query.get("auth_token", ""))
    if token is None or token.attrs.get("job") != job_id:
        raise web.HTTPForbidden(text="Invalid token")
    job = middleware.jobs.get(job_id)
    if job is None or job.pipes_output is None:
        raise web.HTTPNotFound(text="No such job")
    filename = str(token.attrs.get("filename") or f"{job_id}.bin").replace('"', "")
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{filename}"',
    })
    await response.prepare(request)
    while (chunk := await job.pipes_output.read()) is not None:
        await response.write(chunk)
    await response.write_eof()
    return response
