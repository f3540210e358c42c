"""The core service: what every client needs before and beside the other namespaces."""
from __future__ import annotations

import errno
import uuid
from typing import TYPE_CHECKING, Any

from middlewared import credentials as creds
from middlewared.api.errors import error_object, job_fields
from middlewared.crud import query_rows
from middlewared.errors import CallError, InstanceNotFound, ValidationErrors
from middlewared.job import FINAL, Job
from middlewared.service import NULL_RESULT, QUERY_FILTERS, QUERY_OPTIONS, JobOptions, Service, api_method, id_param
from middlewared.plugins.core import schemas as S

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection

ANY_ROLE = ("READONLY_ADMIN", "VM_READ", "VM_DEVICE_READ")


class CoreService(Service):
    """core.* methods."""

    namespace = "core"

    @api_method(result=S.PONG, authentication_required=False)
    async def ping(self) -> str:
        """Answer "pong": a cheap liveness check, open to anonymous callers."""
        return "pong"

    @api_method(params=[S.OPTIONS], result=S.OPTIONS_RESULT, authentication_required=False)
    async def set_options(self, options: dict[str, Any], *, app: "RpcConnection | None" = None) -> dict[str, Any]:
        """Set options of this connection (legacy_jobs, private_methods, py_exceptions); return them."""
        if app is None:
            raise CallError("set_options needs a connection", errno.EINVAL)
        if "legacy_jobs" in options:
            app.legacy_jobs = options["legacy_jobs"]
        if "private_methods" in options:
            # There are no private methods on the wire: internal calls are Python calls.
            app.private_methods = options["private_methods"]
        if "py_exceptions" in options:
            # Pickled exceptions are never sent; the flag is kept only so clients see it acknowledged.
            app.py_exceptions = options["py_exceptions"]
        return {"legacy_jobs": app.legacy_jobs, "private_methods": app.private_methods,
                "py_exceptions": app.py_exceptions}

    @api_method(params=[S.TARGET], result=S.METHODS_RESULT, roles=ANY_ROLE)
    async def get_methods(self, target: str, *, app: "RpcConnection | None" = None) -> dict[str, Any]:
        """Every API method the caller may call, with docstring, schemas, job flag and roles."""
        out: dict[str, Any] = {}
        for name, method in sorted(self.middleware.methods.items()):
            if app is not None and method.spec.authentication_required and \
                    not app.credentials.has_role(method.spec.roles):
                continue
            out[name] = {
                "description": (method.fn.__doc__ or "").strip(),
                "params": method.arguments.schemas(),
                "result": method.spec.result,
                "job": method.is_job,
                "roles": list(method.spec.roles),
                "authentication_required": method.spec.authentication_required,
                "pipes": list(method.spec.job.pipes) if method.spec.job else [],
            }
        return out

    @api_method(params=[QUERY_FILTERS, QUERY_OPTIONS], result=S.JOBS_RESULT, roles=ANY_ROLE)
    async def get_jobs(self, filters: list[Any], options: dict[str, Any], *,
                       app: "RpcConnection | None" = None) -> Any:
        """Jobs the caller may see, filtered and shaped like any query."""
        jobs = self.middleware.jobs.jobs.values()
        if app is None:
            return query_rows([j.encode() for j in jobs], filters, options)
        rows = [job_fields(j.encode(), app.credentials) for j in jobs if j.visible_to(app.credentials)]
        return query_rows(rows, filters, options)

    def _job(self, job_id: int, app: "RpcConnection | None") -> Job:
        job = self.middleware.jobs.get(job_id)
        if job is None:
            raise InstanceNotFound(f"Job with id {job_id} does not exist")
        if app is not None and not job.visible_to(app.credentials):
            raise CallError(f"Not allowed to access job {job_id}", errno.EPERM)
        return job

    @api_method(params=[id_param("id", "Id of the job to wait for.")], result=S.ANY_RESULT,
                roles=ANY_ROLE, job=JobOptions(transient=False))
    async def job_wait(self, job_id: int, *, job: Job, app: "RpcConnection | None" = None) -> Any:
        """A job that mirrors another job's progress and ends with its result or error."""
        target = self._job(job_id, app)
        while target.state not in FINAL:
            job.set_progress(target.progress["percent"], target.progress["description"],
                             target.progress["extra"])
            await target.next_change()
        return await target.wait(raise_error=True)

    @api_method(params=[id_param("id", "Id of the job to abort.")], result=NULL_RESULT, roles=ANY_ROLE)
    async def job_abort(self, job_id: int, *, app: "RpcConnection | None" = None) -> None:
        """Abort a waiting or running job."""
        job = self._job(job_id, app)
        if app is not None and job.credentials is not None and not app.credentials.is_full_admin \
                and job.credentials.username != app.credentials.username:
            raise CallError(f"Not allowed to abort job {job_id}", errno.EPERM)
        job.abort()

    @api_method(params=[S.EVENT_NAME, S.SUBSCRIBE_OPTIONS], result=S.IDENT_RESULT, roles=ANY_ROLE)
    async def subscribe(self, name: str, options: dict[str, Any], *, app: "RpcConnection | None" = None) -> str:
        """Subscribe this connection to an event ('*' for all); return the subscription id.

        With ``since``, the events missed since that sequence number are sent first (a reconnecting client
        loses nothing), or the call fails when they are no longer all kept.
        """
        if app is None:
            raise CallError("subscribe needs a connection", errno.EINVAL)
        if name != "*" and name not in self.middleware.events:
            verrors = ValidationErrors()
            verrors.add("name", f"Event {name!r} does not exist", errno.ENOENT)
            raise verrors
        if not self.middleware.can_subscribe(name, app.credentials):
            raise CallError("Not authorized", errno.EACCES)
        since = options["since"]
        if since is not None:
            self.middleware.event_log.check(since)  # before subscribing: a refused replay subscribes nothing
        ident = str(uuid.uuid4())
        app.subscribe(ident, name)
        if since is not None:
            self.middleware.replay_events(app, name, since)
        return ident

    @api_method(params=[S.IDENT], result=NULL_RESULT, roles=ANY_ROLE)
    async def unsubscribe(self, ident: str, *, app: "RpcConnection | None" = None) -> None:
        """End a subscription of this connection."""
        if app is not None:
            app.unsubscribe(ident)

    @api_method(params=[S.DL_METHOD, S.DL_ARGS, S.DL_FILENAME, S.DL_BUFFERED], result=S.DOWNLOAD_RESULT,
                roles=ANY_ROLE)
    async def download(self, method: str, args: list[Any], filename: str, buffered: bool, *,
                       app: "RpcConnection | None" = None) -> list[Any]:
        """Start a job with an output pipe; return [job_id, "/_download/<job_id>?auth_token=..."]."""
        target = self.middleware.methods.get(method)
        if target is None or target.spec.job is None or "output" not in target.spec.job.pipes:
            verrors = ValidationErrors()
            verrors.add("method", f"{method} is not a job with an output pipe")
            raise verrors
        credentials = app.credentials if app is not None else None
        if credentials is not None:
            await self.middleware.authorize(target, credentials, args)
        validated = target.arguments.validate(args)
        kwargs = {"app": app} if target.wants_app else {}
        job = self.middleware.submit_job(target, validated, credentials, None, kwargs)
        ttl = 3600 if buffered else 60
        token = self.middleware.tokens.create(credentials or creds.root("INTERNAL"), ttl, single_use=True,
                                              attrs={"job": job.id, "filename": filename})
        return [job.id, f"/_download/{job.id}?auth_token={token}"]

    @api_method(params=[S.BULK_METHOD, S.BULK_PARAMS, S.BULK_DESCRIPTION], result=S.BULK_RESULT,
                roles=ANY_ROLE, job=JobOptions())
    async def bulk(self, method: str, params: list[list[Any]], description: str | None, *, job: Job,
                   app: "RpcConnection | None" = None) -> list[dict[str, Any]]:
        """Call a method once per argument list; always succeeds with a result or error per call."""
        target = self.middleware.methods.get(method)
        if target is None:
            raise CallError(f"Method {method} does not exist", errno.ENOENT)
        results = []
        for index, args in enumerate(params):
            job.set_progress(100 * index / max(len(params), 1),
                             (description or "{method} {index}/{total}").format(
                                 method=method, index=index + 1, total=len(params)))
            try:
                if app is not None:
                    await self.middleware.authorize(target, app.credentials, args)
                # Internal calls wait for jobs to finish, so value is the job's result.
                value = await self.middleware.call_method(target, args, None)
                results.append({"job_id": None, "result": value, "error": None})
            except Exception as e:
                results.append({"job_id": None, "result": None, "error": error_object(e, method)["data"]["reason"]})
        return results

