"""Endpoints of the Velocity REST API: one declaration each (path, method, schemas, errors, handler),
and the one dispatcher that turns a request into a handler call and every failure into ``{code, message}``."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from middlewared.config import VelocityConfig
from middlewared.credentials import Credentials
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.auth.scope import ScopeIndex, policy
from middlewared.plugins.velocity import audit, hostpaths
from middlewared.plugins.velocity import errors as E
from middlewared.plugins.velocity import permissions as P
from middlewared.plugins.velocity.authkeys import AuthKeys
from middlewared.schema import Schema, compile_schema, validation_errors
from middlewared.utils import upload

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

Handler = Callable[["Call"], Awaitable[Any]]
# Request bodies larger than this are refused (uploads stream and are not bound by it).
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    """One method on one path."""

    method: str
    path: str
    summary: str
    handler: Handler
    request: Schema | None = None
    response: Schema | None = None
    errors: tuple[E.ErrorSpec, ...] = ()
    public: bool = False
    # The handler reads the body itself (streamed uploads): no JSON parsing, no body authkey.
    raw_body: bool = False
    # The audit log's event for a call (AUTHENTICATION, LOGOUT, METHOD_CALL); None for reads, which are not
    # audited, as JSON-RPC's read-only methods are not.
    audit: str | None = "METHOD_CALL"
    _validator: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.request is not None:
            object.__setattr__(self, "_validator", compile_schema(self.request))

    @property
    def base(self) -> int:
        return E.base(self.path, self.method)

    def all_errors(self) -> list[E.ErrorSpec]:
        """Declared errors plus the ones every endpoint may answer."""
        out = [E.ErrorSpec(400, self.base + E.MALFORMED, "The body is not a JSON object"),
               E.ErrorSpec(400, self.base + E.INVALID, "The body does not match the schema"),
               E.ErrorSpec(413, self.base + E.TOO_LARGE, "The body is too large")]
        if not self.public:
            out += [E.ErrorSpec(401, E.UNAUTHORIZED, "No authkey was sent"),
                    E.ErrorSpec(401, E.BAD_AUTHKEY, "The authkey is unknown or expired")]
        out.append(E.ErrorSpec(500, self.base + E.INTERNAL, "An internal error (logged by the daemon)"))
        return [*self.errors, *out]


class Velocity:
    """What the handlers share: the middleware, the authkeys, the configuration."""

    def __init__(self, middleware: "Middleware") -> None:
        self.middleware = middleware
        self.config: VelocityConfig = middleware.config.velocity
        self.keys = AuthKeys(self.config.authkey_lifetime)
        # vmid -> the transitional state (STARTING, PAUSING, ...) of a state change under way.
        self.transitions: dict[int, str] = {}
        # MIDs whose file is still being written (hidden until complete).
        self.incomplete: set[str] = set()

    @property
    def index(self) -> ScopeIndex:
        return policy(self.middleware).index


@dataclass
class Call:
    """One request being served."""

    velocity: Velocity
    endpoint: Endpoint
    request: web.Request
    body: dict[str, Any] = field(default_factory=dict)
    authkey: str | None = None
    _credentials: Credentials | None = None
    # For the audit log: who a public endpoint acted for (the login name tried, the key's owner) and the
    # login the authkey belongs to.
    actor: str | None = None
    session: str | None = None

    @property
    def middleware(self) -> "Middleware":
        return self.velocity.middleware

    @property
    def credentials(self) -> Credentials:
        assert self._credentials is not None, "a public endpoint has no caller"
        return self._credentials

    @property
    def username(self) -> str | None:
        """Who made the request: the authkey's user, or whom a public endpoint acted for."""
        return self._credentials.username if self._credentials is not None else self.actor

    def error(self, code: int, detail: str | None = None) -> E.VelocityError:
        """The declared error with this code (detail replaces its description)."""
        for spec in self.endpoint.errors:
            if spec.code == code:
                return E.VelocityError(spec.status, code, detail or spec.description)
        raise AssertionError(f"{self.endpoint.method} {self.endpoint.path}: undeclared error {code}")

    def has(self, permission: str, gid: int) -> bool:
        return P.has(self.velocity.index, self.credentials, permission, gid)

    def require(self, permission: str, gid: int, code: int) -> None:
        """Raise the declared permission error unless the caller holds permission on gid."""
        if not self.has(permission, gid):
            raise self.error(code, f"{permission} is needed on group {gid}")

    def require_group(self, gid: int, code: int) -> None:
        """Raise the declared not-found error for a group that does not exist."""
        if gid != P.ROOT_GID and gid not in self.velocity.index.parents:
            raise self.error(code, f"Group {gid} does not exist")


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def _read_body(endpoint: Endpoint, request: web.Request) -> dict[str, Any]:
    if endpoint.raw_body:
        return {}
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise E.VelocityError(413, endpoint.base + E.TOO_LARGE, f"Bodies are limited to {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise E.VelocityError(413, endpoint.base + E.TOO_LARGE, f"Bodies are limited to {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise E.VelocityError(400, endpoint.base + E.MALFORMED, f"The body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise E.VelocityError(400, endpoint.base + E.MALFORMED, "The body must be a JSON object")
    return body


def _integral(value: Any) -> Any:
    """15.0 becomes 15 before validation: Velocity's clients may write integers so, and every number here is one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _validate(endpoint: Endpoint, body: dict[str, Any]) -> None:
    if endpoint._validator is None:
        return
    problems = validation_errors(endpoint._validator, body, "body")
    if problems:
        text = "; ".join(f"{p.attribute}: {p.errmsg}" for p in problems)
        raise E.VelocityError(400, endpoint.base + E.INVALID, text)


async def _authenticate(velocity: Velocity, endpoint: Endpoint, call: Call) -> None:
    if endpoint.public:
        return
    if call.authkey is None:
        raise E.VelocityError(401, E.UNAUTHORIZED, "An authkey is needed (Authorization: Bearer <authkey>)")
    credentials = await velocity.keys.credentials(velocity.middleware, call.authkey)
    if credentials is None:
        raise E.VelocityError(401, E.BAD_AUTHKEY, "The authkey is unknown or expired")
    call._credentials = credentials
    found, _ = velocity.keys.find(call.authkey)
    call.session = found.session if found is not None else None


def _from_service(endpoint: Endpoint, error: ValidationErrors | CallError) -> E.VelocityError:
    """A service's refusal that no handler anticipated: still a client error with a code."""
    if isinstance(error, ValidationErrors):
        # The service names attributes after its method ("user_create.password"): keep the field's name.
        text = "; ".join(f"{(e.attribute or '').partition('.')[2] or 'body'}: {e.errmsg}" for e in error)
    else:
        text = error.errmsg
    return E.VelocityError(400, endpoint.base + E.INVALID, text)


async def _run(call: Call) -> Any:
    """Read, authenticate and validate the request, then run its handler."""
    endpoint, velocity, request = call.endpoint, call.velocity, call.request
    call.body = _integral(await _read_body(endpoint, request))
    in_body = call.body.get("authkey")  # Velocity's own clients send it in every body
    call.authkey = _bearer(request) or (in_body if isinstance(in_body, str) else None) \
        or request.headers.get("x-velocity-authkey")
    await _authenticate(velocity, endpoint, call)
    _validate(endpoint, call.body)
    call.body.pop("authkey", None)
    return await endpoint.handler(call)


async def serve(velocity: Velocity, endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
    """Run one endpoint and audit it; every outcome is a JSON answer (or the handler's own stream)."""
    call = Call(velocity, endpoint, request)
    failure: E.VelocityError | None = None
    try:
        result = await _run(call)
    except E.VelocityError as e:
        failure = e
    except (ValidationErrors, CallError) as e:
        failure = _from_service(endpoint, e)
    except web.HTTPException as e:  # aiohttp's own refusals while reading (e.g. a body too large)
        failure = E.VelocityError(e.status, endpoint.base + (E.TOO_LARGE if e.status == 413 else E.MALFORMED),
                                  e.reason)
    except asyncio.CancelledError:  # the daemon stops, or the client went away while it was answered
        audit.record(call, "cancelled")
        raise
    except Exception:
        logger.exception("%s %s failed", endpoint.method, endpoint.path)
        failure = E.VelocityError(500, endpoint.base + E.INTERNAL, "Internal error")
    if failure is not None:
        failure = await _without_host_paths(call, failure)
    audit.record(call, None if failure is None else audit.describe(failure))
    if failure is not None:
        return _json(failure.body(), status=failure.status)
    if isinstance(result, web.StreamResponse):
        return result
    return _json(result) if result is not None else web.Response(status=200)


async def _without_host_paths(call: Call, failure: E.VelocityError) -> E.VelocityError:
    """The failure as a client may read it; the log keeps the host paths it named."""
    message = await hostpaths.public(call.velocity, failure.message)
    if message == failure.message:
        return failure
    logger.info("%s %s answered %d: %s", call.endpoint.method, call.request.path, failure.code, failure.message)
    return E.VelocityError(failure.status, failure.code, message)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer, newline-terminated for people reading it in a terminal."""
    return web.Response(text=json.dumps(body) + "\n", status=status, headers=headers,
                        content_type="application/json")


def route_table(velocity: Velocity, endpoints: list[Endpoint]) -> list[web.RouteDef]:
    """aiohttp routes of the endpoints, plus ``{code, message}`` answers for unknown paths and methods."""
    by_path: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, []).append(endpoint)
    out: list[web.RouteDef] = []
    for path, group in by_path.items():
        methods = sorted(e.method for e in group)
        for route in (path, _SLASHES + path[1:]):
            for endpoint in group:
                out.append(web.route(endpoint.method, route, _handler(velocity, endpoint)))
            out.append(web.route("OPTIONS", route, _preflight(methods)))
            out.append(web.route("*", route, _not_allowed(methods)))
    for prefix in ("u", "m", "v"):
        out.append(web.route("*", _SLASHES.replace("+", "*") + prefix + "{tail:(/.*)?}", _no_route))
    return out


# vCMD joins its base URL and "/u/auth" with one more "/" ("http://host:8090//u/auth"); Velocity's server
# took that as "/u/auth", and so does this one.
_SLASHES = "/{lead:/+}"


# Velocity's web interface runs in a browser on another origin and sends the authkey in bodies and headers,
# never in cookies: any origin may call, as Velocity's own server allowed.
CORS = {"Access-Control-Allow-Origin": "*"}
CORS_HEADERS = ", ".join(("Authorization", "Content-Type", "x-velocity-authkey", "x-velocity-mpid", "x-velocity-gid",
                          "x-velocity-name", "x-velocity-type", "x-velocity-readonly"))


def _handler(velocity: Velocity, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = await serve(velocity, endpoint, request)
        if not response.prepared:
            response.headers.update(CORS)
            if request.get(upload.CONNECTION_TAKEN):
                response.force_close()  # an upload took the connection: it ends with this response
        return response
    return handle


def _preflight(methods: list[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={**CORS, "Access-Control-Allow-Methods": ", ".join(methods),
                                                 "Access-Control-Allow-Headers": CORS_HEADERS,
                                                 "Access-Control-Max-Age": "600"})
    return handle


def _not_allowed(methods: list[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return _json({"code": E.NO_ROUTE, "message": f"Method not allowed: use {', '.join(methods)}"},
                                 status=405, headers={"Allow": ", ".join(methods)})
    return handle


async def _no_route(request: web.Request) -> web.StreamResponse:
    return _json({"code": E.NO_ROUTE, "message": f"No endpoint at {request.path}"}, status=404)
