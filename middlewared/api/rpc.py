"""JSON-RPC 2.0 over WebSocket: one RpcConnection per client, dispatching calls to the Middleware."""
from __future__ import annotations

import asyncio
import errno
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Coroutine

from aiohttp import WSCloseCode, WSMsgType, web

from middlewared.api import errors as E
from middlewared.utils import wire_json
from middlewared.credentials import ANONYMOUS, Credentials
from middlewared.errors import ENOMETHOD, CallError
from middlewared.job import Job
from middlewared.middleware import AuditSource

if TYPE_CHECKING:
    from middlewared.middleware import Method, Middleware

logger = logging.getLogger(__name__)

ANONYMOUS_MAX_MESSAGE = 8192
MAX_MESSAGE = 65536
MAX_CALLS_IN_FLIGHT = 20
# Deepest nesting of arrays and objects in a request: far beyond any method's schema, well below what
# validating it recursively would need of Python's stack.
MAX_NESTING = 64


class RpcConnection:
    """A client connection: its credentials, options, subscriptions and calls in flight."""

    def __init__(self, middleware: "Middleware", ws: web.WebSocketResponse, credentials: Credentials,
                 origin: str, address: str = "", tls: bool = False) -> None:
        self.middleware = middleware
        self.ws = ws
        self.credentials = credentials
        self.origin = origin
        # The peer's address without port (rate limits, token origin checks); "unix:<uid>" on the socket.
        self.address = address or origin
        self.tls = tls
        self.session_id = str(uuid.uuid4())
        self.created_at = time.time()
        # State of a login exchange in progress (SCRAM keeps its nonces here between two calls).
        self.login_state: object | None = None
        self.legacy_jobs = True
        self.private_methods = False
        self.py_exceptions = False
        self.subscriptions: dict[str, str] = {}
        self._subscribed: dict[str, int] = {}
        self.inflight = 0
        self._outbox: deque[str] = deque()
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (events, protocol errors); a flusher task writes the outbox in order."""
        if self.closed:
            return
        self._outbox.append(wire_json.dumps(message))
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush())

    async def send_text(self, text: str) -> None:
        """Queue an encoded message and, unless a flush is under way, write the outbox from this task.

        A call's answer is written by the call's own task: one loop pass less than waking a flusher.
        """
        if self.closed:
            return
        self._outbox.append(text)
        if not self._flushing:
            self._flushing = True
            await self._flush()

    async def _flush(self) -> None:
        try:
            while self._outbox:
                await self.ws.send_str(self._outbox.popleft())
        except (ConnectionError, RuntimeError):
            self.closed = True
            self._outbox.clear()
        finally:
            self._flushing = False

    def send_event(self, name: str, kind: str, payload: dict[str, Any], job: Job | None) -> None:
        """Deliver an event when subscribed to name (or '*') and allowed to see it."""
        if name not in self._subscribed and "*" not in self._subscribed:
            return
        if job is not None:
            if not job.visible_to(self.credentials):
                return
            payload = {**payload, "fields": E.job_fields(payload["fields"], self.credentials)}
        self.send({"jsonrpc": "2.0", "method": "collection_update", "params": payload})

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, ident: str, name: str) -> None:
        self.subscriptions[ident] = name
        self._subscribed[name] = self._subscribed.get(name, 0) + 1

    def unsubscribe(self, ident: str) -> bool:
        name = self.subscriptions.pop(ident, None)
        if name is None:
            return False
        self._subscribed[name] -= 1
        if not self._subscribed[name]:
            del self._subscribed[name]
        return True

    def set_credentials(self, credentials: Credentials) -> None:
        """Change who this connection is (login, logout, account change); subscriptions the new
        credentials may not hold end with notify_unsubscribed."""
        self.credentials = credentials
        refused = [name for name in set(self.subscriptions.values())
                   if not self.middleware.can_subscribe(name, credentials)]
        for name in refused:
            self.end_subscriptions(name, E.truenas_error(errno.EACCES, "Not authorized"))

    def end_subscriptions(self, name: str, error: dict[str, Any] | None = None) -> None:
        """The server ends every subscription to name (notify_unsubscribed)."""
        for ident in [i for i, n in self.subscriptions.items() if n == name]:
            self.unsubscribe(ident)
        self.send({"jsonrpc": "2.0", "method": "notify_unsubscribed",
                   "params": {"collection": name, "error": error}})

    # -- receiving -----------------------------------------------------------------------------
    def on_message(self, text: str) -> None:
        """Parse one request and start its call; protocol errors are answered at once."""
        try:
            request = wire_json.loads(text)
        except ValueError as e:
            self._error(None, E.simple_error(E.PARSE_ERROR, str(e)))
            return
        if isinstance(request, list):
            self._error(None, E.simple_error(E.INVALID_REQUEST, "Batch messages are not supported at this time"))
            return
        if not isinstance(request, dict):
            self._error(None, E.simple_error(E.INVALID_REQUEST, "Request must be a JSON object"))
            return
        if type(request.get("id")) is float:
            # A fractional id, or an integer beyond 64 bits that orjson could only read as a float.
            request = wire_json.loads_exact(text)
        has_id = "id" in request
        msg_id = request.get("id")
        problem = _request_problem(request)
        if problem is not None:
            if has_id:
                self._error(msg_id, E.simple_error(E.INVALID_REQUEST, problem))
            return
        if len(text) > 2 * MAX_NESTING and too_deep(text, request):
            if has_id:
                self._error(msg_id, E.nesting_error(MAX_NESTING))
            return
        method = self.middleware.methods.get(request["method"])
        if method is None:
            if has_id:
                self._error(msg_id, E.simple_error(E.METHOD_NOT_FOUND, "Method does not exist", ENOMETHOD,
                                                   reason=f"Method {request['method']!r} does not exist"))
            return
        if self.inflight >= MAX_CALLS_IN_FLIGHT:
            if has_id:
                text = f"Maximum number of concurrent calls ({MAX_CALLS_IN_FLIGHT}) has exceeded"
                self._error(msg_id, E.simple_error(E.TOO_MANY_CONCURRENT_CALLS, text))
            return
        self.start_call(method, request.get("params", []), msg_id, has_id)

    def start_call(self, method: "Method", params: list[Any], msg_id: Any, has_id: bool) -> None:
        """Start a call; it counts as in flight until it has answered.

        The call's first step runs here, at once (as Python 3.12's eager tasks do): most calls finish
        in it and never cost a task. A call that has to wait continues in a task of its own. So code
        reached before a call's first real suspension must not rely on asyncio.current_task() (e.g.
        asyncio.timeout()); asyncio.wait_for is fine.
        """
        self.inflight += 1
        coro = self._call(method, params, msg_id, has_id)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        task = asyncio.create_task(_resume(coro, waiting_on))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, method: "Method", params: list[Any], msg_id: Any, has_id: bool) -> None:
        error: str | None = None
        began = time.perf_counter()
        try:
            credentials = self.credentials
            if not method.spec.authentication_required:
                policy = self.middleware.policy
                if policy is not None and not credentials.authenticated:
                    await policy.throttle(method, self)
            elif credentials.expires is not None or not credentials.has_role(method.spec.roles):
                # The common case (roles allow it, no expiry) needs no further check.
                await self.middleware.authorize(method, credentials, params)
            result = await self.middleware.call_method(method, params, self, msg_id)
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as e:
            error = str(e) or repr(e)
            if has_id:
                self._error(msg_id, E.error_object(e, method.name, E.sees_traces(self.credentials)))
            elif not isinstance(e, CallError):
                logger.debug("notification %s failed", method.name, exc_info=True)
        else:
            if has_id:
                try:
                    text = wire_json.dumps(self._result_message(msg_id, self.middleware.dump_result(
                        method, result, self.credentials)))
                except (TypeError, ValueError) as e:
                    logger.error("cannot serialise the result of %s", method.name, exc_info=e)
                    self._error(msg_id, E.simple_error(-32603, "Failed to JSON serialize server message"))
                else:
                    await self.send_text(text)
        finally:
            self.inflight -= 1
            self.middleware.call_stats.observe(method.name, time.perf_counter() - began, error is not None)
            self.middleware.audit_call(AuditSource.of(self), method, params, error)

    def _result_message(self, msg_id: Any, result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "result": result, "id": msg_id}

    def _error(self, msg_id: Any, error: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "error": error})

    async def close(self) -> None:
        """Close the socket (daemon shutdown)."""
        self.closed = True
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")

    async def terminate(self, reason: str) -> None:
        """End the session at once (revoked key, terminated session, disabled user)."""
        self.closed = True
        self.credentials = ANONYMOUS
        for task in list(self._tasks):
            task.cancel()
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode()[:120])


async def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive a coroutine started eagerly and suspended on waiting_on, as an asyncio Task would."""
    while True:
        try:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0)): just let the loop turn
                await asyncio.sleep(0)
            else:
                waiting_on._asyncio_future_blocking = False
                await asyncio.wait((waiting_on,))
        except asyncio.CancelledError:
            if waiting_on is not None:
                waiting_on.cancel()
            try:
                waiting_on = coro.throw(asyncio.CancelledError())
            except StopIteration:
                return
            continue
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return


_ID_TYPES = frozenset({int, float, str, type(None)})
_NO_PARAMS: list[Any] = []


def _request_problem(request: dict[str, Any]) -> str | None:
    method = request.get("method")
    if request.get("jsonrpc") == "2.0" and type(method) is str and method \
            and type(request.get("params", _NO_PARAMS)) is list and type(request.get("id")) in _ID_TYPES:
        return None  # a well-formed request, told at the cost of one expression (the hot path)
    if request.get("jsonrpc") != "2.0":
        return "'jsonrpc' member must be '2.0'"
    if not isinstance(request.get("method"), str) or not request["method"]:
        return "'method' member must be a non-empty string"
    if not isinstance(request.get("params", []), list):
        return "'params' member must be of type array"
    msg_id = request.get("id")
    # Fractional ids are numbers too: JSON-RPC 2.0 says they SHOULD NOT be used, not that they are invalid,
    # and the answer carries the same value.
    if isinstance(msg_id, bool) or (msg_id is not None and not isinstance(msg_id, (int, float, str))):
        return "'id' member must be a string, a number or null"
    return None


def too_deep(text: str, message: Any) -> bool:
    """Whether a decoded message nests arrays and objects deeper than MAX_NESTING."""
    # The usual cases, decided without walking the message: nesting n levels takes 2n brackets.
    if len(text) <= 2 * MAX_NESTING or text.count("[") + text.count("{") <= MAX_NESTING:
        return False
    stack = [(message, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


async def serve(connection: RpcConnection) -> None:
    """Read messages until the peer goes away, enforcing the size limits."""
    ws = connection.ws
    middleware = connection.middleware
    middleware.connections.add(connection)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if not connection.credentials.authenticated and len(msg.data) > ANONYMOUS_MAX_MESSAGE:
                    await ws.close(code=WSCloseCode.INVALID_TEXT,
                                   message=b"Anonymous connection max message length is 8 kB")
                    break
                if connection.inflight >= MAX_CALLS_IN_FLIGHT:
                    # Let the calls already started take a step before judging the limit: calls that
                    # finish at once (most) then never count against it, which is meant for calls that
                    # really wait, and pipelining clients are not refused for nothing.
                    await asyncio.sleep(0)
                connection.on_message(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"Binary messages are not supported")
                break
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        connection.closed = True
        middleware.connections.discard(connection)
