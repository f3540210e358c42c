"""The Middleware: plugins, the method registry, call dispatch and the event hub."""
from __future__ import annotations

import asyncio
import errno
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence, TypeVar

from middlewared import roles as roles_
from middlewared.call_stats import CallStats
from middlewared.config import Config
from middlewared.credentials import Credentials
from middlewared.errors import CallError, not_authenticated, not_authorized
from middlewared.event_log import EventLog
from middlewared.job import Job
from middlewared.jobs import JobManager
from middlewared.plugin import EventSpec, Plugin
from middlewared.schema import Arguments
from middlewared.service import MethodSpec, Service
from middlewared.tokens import TokenManager

if TYPE_CHECKING:
    from middlewared.datastore import Datastore

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=Service)

# How a secret appears to those who may not read it; sent back unchanged in an update it keeps the stored value.
SECRET = "********"
# Keys (and positional parameter titles) whose values never reach logs, job records or read-only callers.
SECRET_KEYS = frozenset({"password", "api_key", "secret", "token", "otp_token", "key", "client_key",
                         "stored_key", "server_key", "rfc_str", "user_data", "authkey"})
# Methods that run other methods: audited whatever their roles say.
ALWAYS_AUDIT = frozenset({"core.bulk", "core.download"})


class Connection(Protocol):
    """What the middleware needs of a client connection (the transport implements it)."""

    credentials: Credentials
    legacy_jobs: bool
    origin: str
    address: str
    session_id: str

    def send_event(self, name: str, kind: str, payload: dict[str, Any], job: Job | None) -> None: ...

    def set_credentials(self, credentials: Credentials) -> None: ...

    async def terminate(self, reason: str) -> None: ...


class AccessPolicy(Protocol):
    """Access beyond global roles (grants scoped to VM groups or VMs) and call limits: the auth plugin."""

    async def allows(self, method: "Method", credentials: Credentials, params: Sequence[Any]) -> bool:
        """Whether credentials lacking the method's roles everywhere may still make this call."""
        ...

    def can_subscribe(self, event: EventSpec, credentials: Credentials) -> bool:
        """Whether credentials lacking the event's roles everywhere may subscribe (events then filtered)."""
        ...

    def visible(self, collection: str, row: dict[str, Any], credentials: Credentials) -> bool:
        """Whether one record (or event payload) of a collection is visible to scoped credentials."""
        ...

    async def throttle(self, method: "Method", app: Connection) -> None:
        """Raise (after a delay) when an unauthenticated caller exceeds the rate limit."""
        ...


@dataclass(frozen=True)
class AuditSource:
    """Who made an audited request and how, whatever the transport carried it."""

    username: str | None
    # The transport and peer ("TCP:127.0.0.1:40000", "UNIX:pid=..,uid=0"), or INTERNAL for the daemon itself.
    origin: str
    # What ties one client's records together (a JSON-RPC connection, a REST authkey's login); never a secret.
    session: str | None
    # The API the request came through: MIDDLEWARE (JSON-RPC, TrueNAS' name) or VELOCITY (REST).
    service: str = "MIDDLEWARE"

    @classmethod
    def of(cls, app: Connection | None, username: str | None = None) -> "AuditSource":
        """A JSON-RPC connection's source; username replaces the connection's own (failed logins)."""
        if app is None:
            return cls(username, "INTERNAL", None)
        return cls(username if username is not None else app.credentials.username, app.origin, app.session_id)


class AuditLog(Protocol):
    """Where logins and write calls are recorded: the audit plugin."""

    def record(self, event: str, source: AuditSource, method: str | None, params: Any, error: str | None) -> None:
        """Store one record (in the background; never raises); params must already be redacted."""
        ...


@dataclass(frozen=True)
class Method:
    """A registered API method."""

    name: str
    spec: MethodSpec
    arguments: Arguments
    fn: Callable[..., Awaitable[Any]]
    wants_job: bool
    wants_app: bool
    # Whether every role of the method only reads (no audit record, secrets masked for readers).
    read_only: bool = False

    @property
    def is_job(self) -> bool:
        return self.spec.job is not None


def _keyword_params(fn: Callable[..., Any]) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY}


class Middleware:
    """Owns the plugins, services, methods, events, jobs and connections of one daemon."""

    def __init__(self, config: Config, plugins: Sequence[Plugin]) -> None:
        self.config = config
        self.plugins = tuple(plugins)
        self.services: dict[str, Service] = {}
        self.methods: dict[str, Method] = {}
        self.events: dict[str, EventSpec] = {}
        self.connections: set[Connection] = set()
        self.jobs = JobManager(self, config.jobs.logs_dir)
        self.tokens = TokenManager()
        self.call_stats = CallStats()
        self.event_log = EventLog()
        self.datastore: Datastore | None = None
        self.policy: AccessPolicy | None = None
        self.audit_log: AuditLog | None = None
        self._set_up: list[Plugin] = []
        self._register_all()

    # -- registration ------------------------------------------------------------------------
    def _register_all(self) -> None:
        seen: set[str] = set()
        for plugin in self.plugins:
            missing = [d for d in plugin.depends if d not in seen]
            if missing:
                raise RuntimeError(f"plugin {plugin.name} depends on {missing}, not declared before it")
            if plugin.name in seen:
                raise RuntimeError(f"plugin {plugin.name} declared twice")
            seen.add(plugin.name)
            for cls in plugin.services:
                self._register_service(cls(self))
            for event in plugin.events:
                self.register_event(event)

    def _register_service(self, service: Service) -> None:
        ns = service.namespace
        if ns in self.services:
            raise RuntimeError(f"service {ns} registered twice")
        self.services[ns] = service
        for short, spec, arguments, fn in service.api_methods():
            name = f"{ns}.{short}"
            if name in self.methods:
                raise RuntimeError(f"method {name} registered twice")
            kw = _keyword_params(fn)
            self.methods[name] = Method(name, spec, arguments, fn, "job" in kw, "app" in kw,
                                        roles_.is_read_only(spec.roles))
        role_prefix = getattr(service, "role_prefix", None)
        if role_prefix and hasattr(service, "entry_schema"):
            self.register_event(EventSpec(f"{ns}.query", f"Changes of {ns} records.",
                                          (f"{role_prefix}_READ",)))

    def register_event(self, event: EventSpec) -> None:
        """Declare an event; a name declared twice is a start-up error."""
        if event.name in self.events:
            raise RuntimeError(f"event {event.name} registered twice")
        self.events[event.name] = event

    def service(self, namespace: str) -> Service:
        """The service instance of a namespace."""
        return self.services[namespace]

    def service_of(self, cls: type[S]) -> S:
        """The registered instance of a service class (typed, for plugins that use each other)."""
        service = self.services[cls.namespace]
        if not isinstance(service, cls):
            raise TypeError(f"service {cls.namespace} is a {type(service).__name__}, not a {cls.__name__}")
        return service

    @property
    def db(self) -> "Datastore":
        """The open datastore."""
        if self.datastore is None:
            raise RuntimeError("the datastore is not open")
        return self.datastore

    # -- lifecycle ---------------------------------------------------------------------------
    async def setup(self) -> None:
        """Run every plugin's setup in table order."""
        self.jobs.prepare_logs_dir()
        for plugin in self.plugins:
            await plugin.setup(self)
            self._set_up.append(plugin)

    async def teardown(self) -> None:
        """Abort jobs, then run the teardowns of the plugins that were set up, in reverse order."""
        await self.jobs.shutdown()
        while self._set_up:
            plugin = self._set_up.pop()
            try:
                await plugin.teardown(self)
            except Exception:
                logger.exception("teardown of plugin %s failed", plugin.name)

    # -- calls -------------------------------------------------------------------------------
    async def authorize(self, method: Method, credentials: Credentials, params: Sequence[Any] = ()) -> None:
        """Raise unless these credentials may call the method with these (raw) params."""
        if not method.spec.authentication_required:
            return
        if not credentials.authenticated:
            raise not_authenticated()
        if credentials.expired:
            raise CallError("Session is expired", errno.EACCES)
        if credentials.has_role(method.spec.roles):
            return
        if self.policy is None or not await self.policy.allows(method, credentials, params):
            raise not_authorized()

    def visible_rows(self, collection: str, roles: Sequence[str], rows: list[dict[str, Any]],
                     credentials: Credentials) -> list[dict[str, Any]]:
        """The rows of a collection that credentials may read (all of them with the roles everywhere)."""
        if credentials.has_role(roles):
            return rows
        policy = self.policy
        if policy is None:
            return []
        return [r for r in rows if policy.visible(collection, r, credentials)]

    def dump_result(self, method: Method, result: Any, credentials: Credentials) -> Any:
        """A result as the caller may see it: secrets masked for callers that may only read them."""
        if credentials.is_full_admin or not method.spec.authentication_required or not method.read_only:
            return result  # writers may see what they write; public methods answer only the caller's own
        writes = {r[:-len("_READ")] + "_WRITE" for r in method.spec.roles if r.endswith("_READ")}
        if writes and (credentials.has_role(writes) or writes & credentials.scoped_roles()):
            return result
        return redact(result)

    def audit_call(self, source: AuditSource, method: Method, params: Sequence[Any], error: str | None) -> None:
        """Record a call that changes state (or runs other calls) in the audit log, whatever carried it."""
        if self.audit_log is None:
            return
        if method.spec.audit is None and method.read_only and method.name not in ALWAYS_AUDIT:
            return
        self.audit_log.record("METHOD_CALL", source, method.name, self.redact_args(method, list(params)), error)

    def call_method(self, method: Method, params: Sequence[Any], app: Connection | None,
                    message_id: Any = None) -> Awaitable[Any]:
        """Validate params (raising at once) and return the awaitable that runs the method.

        A plain method's own coroutine is returned as it is: no extra frame on the hot path.
        """
        args = method.arguments.validate(params)
        kwargs: dict[str, Any] = {"app": app} if method.wants_app else {}
        if method.spec.job is None:
            return method.fn(*args, **kwargs)
        if "output" in method.spec.job.pipes:
            # Nobody would read the pipe: such jobs run through core.download (as upstream).
            raise CallError(f"{method.name} writes its output to a pipe: call it through core.download",
                            errno.EINVAL)
        if "input" in method.spec.job.pipes:
            raise CallError(f"{method.name} reads a file: send it through POST /_upload", errno.EINVAL)
        job = self.submit_job(method, args, app.credentials if app else None, message_id, kwargs)
        return self._job_answer(job, app)

    async def _job_answer(self, job: Job, app: Connection | None) -> Any:
        if app is not None and app.legacy_jobs:
            return job.id
        return await job.wait(raise_error=True)

    def submit_job(self, method: Method, args: list[Any], credentials: Credentials | None,
                   message_id: Any = None, kwargs: dict[str, Any] | None = None) -> Job:
        """Queue a job method call."""
        assert method.spec.job is not None
        kw = dict(kwargs or {})

        async def run(job: Job) -> Any:
            return await method.fn(*args, job=job, **kw)
        return self.jobs.submit(method.name, args, method.spec.job, run, credentials, message_id,
                                self.redact_args(method, args))

    async def call(self, name: str, *params: Any) -> Any:
        """Call an API method by name as the daemon itself (validated, no authorization; jobs awaited)."""
        method = self.methods.get(name)
        if method is None:
            raise CallError(f"Method {name} does not exist", errno.ENOENT)
        return await self.call_method(method, params, None)

    def redact_args(self, method: Method, args: list[Any]) -> list[Any]:
        """Arguments with secret fields (and secret positional parameters) replaced, for job records and logs."""
        titles = [a.name for a in method.arguments.args]
        return [SECRET if index < len(titles) and titles[index] in SECRET_KEYS and value else redact(value)
                for index, value in enumerate(args)]

    # -- events ------------------------------------------------------------------------------
    def can_subscribe(self, name: str, credentials: Credentials) -> bool:
        """Whether credentials may subscribe to an event name ('*' needs full admin)."""
        if name == "*":
            return credentials.is_full_admin
        event = self.events.get(name)
        if event is None:
            return False
        if not event.roles or credentials.has_role(event.roles):
            return True
        return self.policy is not None and self.policy.can_subscribe(event, credentials)

    def event_view(self, name: str, payload: dict[str, Any], credentials: Credentials) -> dict[str, Any] | None:
        """The event message as these (subscribed) credentials may see it, or None."""
        event = self.events.get(name)
        if event is None or not event.roles or credentials.has_role(event.roles):
            return payload
        if event.scoped_view is not None:
            return event.scoped_view(self, payload, credentials)
        return payload if self.policy is not None and self.policy.visible(name, payload, credentials) else None

    def send_event(self, name: str, kind: str, **kwargs: Any) -> None:
        """Send a collection_update (ADDED, CHANGED or REMOVED) to every subscriber of name."""
        if kind not in ("ADDED", "CHANGED", "REMOVED"):
            raise ValueError(f"bad event type {kind}")
        payload: dict[str, Any] = {"msg": kind.lower(), "collection": name}
        if "id" in kwargs:
            payload["id"] = kwargs.pop("id")
        fields = kwargs.pop("fields", None)
        if fields is not None and kind != "REMOVED":
            payload["fields"] = fields
        if kwargs:
            payload["extra"] = kwargs
        event = self.events.get(name)
        self.event_log.stamp(name, kind, payload, keep=event is None or event.replay)
        for conn in list(self.connections):
            # Filtered here, for every transport: scoped credentials see only their VMs' events.
            view = self.event_view(name, payload, conn.credentials)
            if view is not None:
                conn.send_event(name, kind, view, None)

    def replay_events(self, conn: Connection, name: str, since: int) -> None:
        """Send a (just subscribed) connection the kept events of name numbered after since, as they were sent
        and as its credentials may see them; CallError when the log no longer reaches back to since."""
        for logged in self.event_log.since(since, name):
            if logged.job is not None:
                conn.send_event(logged.name, logged.kind, logged.payload, logged.job)
                continue
            view = self.event_view(logged.name, logged.payload, conn.credentials)
            if view is not None:
                conn.send_event(logged.name, logged.kind, view, None)

    def send_job_event(self, kind: str, job: Job) -> None:
        """Announce a job change on core.get_jobs to the connections allowed to see the job."""
        payload = {"msg": kind.lower(), "collection": "core.get_jobs", "id": job.id, "fields": job.encode()}
        self.event_log.stamp("core.get_jobs", kind, payload, job)
        for conn in list(self.connections):
            conn.send_event("core.get_jobs", kind, payload, job)


def redact(value: Any) -> Any:
    """A value with every secret field (SECRET_KEYS, at any depth) masked: what logs and the audit log may hold."""
    if isinstance(value, dict):
        return {k: (SECRET if k in SECRET_KEYS and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
