"""The asyncio client for the middleware daemon: one WebSocket, calls, jobs and events."""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, TypeVar

import aiohttp

from midclt.exceptions import CallTimeout, ClientException, ConnectError
from midclt.protocol import JOB_TERMINAL_STATES, encode_request, error_from_data, error_from_rpc, job_outcome, parse_uri
from midclt.scram import scram_login

__all__ = ["AsyncClient"]

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], object]
JobCallback = Callable[[dict[str, Any]], object]
EndCallback = Callable[[ClientException | None], object]

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 60.0
SHORT_TIMEOUT = 10.0  # for core.subscribe, core.unsubscribe and core.ping, like truenas_api_client
MAX_MESSAGE_SIZE = 256 * 1024 * 1024  # big results (core.get_methods, queries) may pass aiohttp's 4 MiB default

# Methods that never start a job, so calling them needs no core.get_jobs subscription. They are
# also what an unauthenticated TCP connection may call, where core.subscribe itself would fail.
_NO_JOB_METHODS = frozenset({
    "core.ping", "core.set_options", "core.subscribe", "core.unsubscribe",
    "auth.login", "auth.login_ex", "auth.login_with_api_key", "auth.login_with_token", "auth.mechanism_choices",
})


@dataclass
class _JobWatch:
    """One caller waiting for a job to finish."""

    future: asyncio.Future[dict[str, Any]]
    callback: JobCallback | None


@dataclass
class _JobStarted:
    """A pending call turned out to be a job: its id, and the watch when the caller waits."""

    job_id: int
    watch: _JobWatch | None


@dataclass
class _Pending:
    """A request waiting for its response (or for a job event naming its id)."""

    future: asyncio.Future[Any]
    job: bool
    callback: JobCallback | None


@dataclass
class _Subscription:
    """A user subscription: the event name and what to call on events and on its end."""

    name: str
    callback: EventCallback
    on_end: EndCallback | None


@dataclass
class _JobState:
    """What is known of one job the client is waiting for."""

    fields: dict[str, Any] = field(default_factory=dict)
    watches: list[_JobWatch] = field(default_factory=list)


def _safe_call(callback: Callable[[T], object], argument: T) -> None:
    """Run a user callback; its exceptions are logged, never allowed to stop the reader."""
    try:
        callback(argument)
    except Exception:
        log.exception("Callback %r failed", callback)


def _connect_error(exc: BaseException) -> ConnectError:
    """Describe why a connection could not be opened."""
    if isinstance(exc, TimeoutError):
        return ConnectError("Timed out connecting to middleware", errno.ETIMEDOUT)
    code = exc.errno if isinstance(exc, OSError) else None
    return ConnectError(f"Failed to connect to middleware: {exc}", code)


class AsyncClient:
    """A JSON-RPC 2.0 WebSocket connection to the daemon; create it with ``await AsyncClient.connect()``."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._pending: dict[str, _Pending] = {}
        self._jobs: dict[int, _JobState] = {}
        self._subs: dict[str, _Subscription] = {}
        self._jobs_sub: str | None = None
        self._jobs_sub_failed = False
        self._jobs_lock = asyncio.Lock()
        self._closed: ClientException | None = None
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, uri: str | None = None, timeout: float = CONNECT_TIMEOUT) -> AsyncClient:
        """Open a connection (default: the daemon's unix socket) and switch to new-style jobs."""
        url, socket_path = parse_uri(uri)
        connector = aiohttp.UnixConnector(path=socket_path) if socket_path else None
        session = aiohttp.ClientSession(connector=connector)
        try:
            async with asyncio.timeout(timeout):
                ws = await session.ws_connect(url, max_msg_size=MAX_MESSAGE_SIZE)
        except BaseException as exc:  # cancellation included: the session must not leak
            await session.close()
            if isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError)):
                raise _connect_error(exc) from exc
            raise
        client = cls(session, ws)
        try:
            # The reply is awaited so that a connection is only handed out once it works.
            await client._request("core.set_options", [{"legacy_jobs": False}], timeout)
        except BaseException as exc:
            await client.close()
            if isinstance(exc, ClientException):
                raise ConnectError(f"Failed connection handshake: {exc}", exc.errno) from exc
            raise
        return client

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed by either side)."""
        return self._closed is not None

    async def call(
        self,
        method: str,
        *params: Any,
        job: bool = False,
        timeout: float | None = CALL_TIMEOUT,
        callback: JobCallback | None = None,
    ) -> Any:
        """Call a method; a job method returns its id, or with ``job=True`` its result once it ends."""
        if method not in _NO_JOB_METHODS:
            await self._watch_jobs()
        outcome = await self._request(method, params, timeout, job=job, callback=callback)
        if not isinstance(outcome, _JobStarted):
            return outcome
        if outcome.watch is None:
            return outcome.job_id
        # No timeout here: a job may legitimately run for hours, and its events say when it ends.
        return job_outcome(await outcome.watch.future)

    async def subscribe(self, name: str, callback: EventCallback, on_end: EndCallback | None = None) -> str:
        """Subscribe to an event; ``callback(params)`` runs for each one. Returns the subscription id."""
        # Registered before the request so that no event sent ahead of the reply is lost.
        provisional = f"pending-{uuid.uuid4()}"
        self._subs[provisional] = _Subscription(name, callback, on_end)
        try:
            ident = str(await self._request("core.subscribe", [name], SHORT_TIMEOUT))
        finally:
            subscription = self._subs.pop(provisional, None)
        if subscription is None:  # the connection closed meanwhile
            raise self._closed or ClientException("Subscription ended", errno.ECONNRESET)
        self._subs[ident] = subscription
        return ident

    async def unsubscribe(self, ident: str) -> None:
        """End a subscription made with subscribe()."""
        self._subs.pop(ident, None)
        await self._request("core.unsubscribe", [ident], SHORT_TIMEOUT)

    async def ping(self, timeout: float = SHORT_TIMEOUT) -> str:
        """Call core.ping; returns ``"pong"``."""
        return str(await self._request("core.ping", [], timeout))

    async def login(self, username: str, password: str) -> None:
        """Authenticate with a password (auth.login_ex, or auth.login on servers without it)."""
        credentials = {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password}
        try:
            response = await self._request("auth.login_ex", [credentials], CALL_TIMEOUT)
        except ClientException as exc:
            if exc.code != -32601:
                raise
            ok = await self._request("auth.login", [username, password], CALL_TIMEOUT)
            response = {"response_type": "SUCCESS" if ok is True else "AUTH_ERR"}
        response_type = response.get("response_type") if isinstance(response, dict) else None
        self._logged_in(response_type == "SUCCESS", f"Login failed: {response_type}")

    async def login_with_api_key(self, key: str, username: str | None = None) -> None:
        """Authenticate with an API key (``<id>-<secret>``): by SCRAM when the user is known and the server
        offers it (the key then never crosses the wire), else through auth.login_with_api_key."""
        if username and "SCRAM" in await self._request("auth.mechanism_choices", [], CALL_TIMEOUT):
            await scram_login(lambda data: self._request("auth.login_ex", [data], CALL_TIMEOUT), username, key)
            self._logged_in(True, "")
            return
        ok = await self._request("auth.login_with_api_key", [key], CALL_TIMEOUT)
        self._logged_in(ok is True, "Login failed: invalid API key")

    async def close(self) -> None:
        """Close the connection; calls still pending fail with ClientException."""
        self._shutdown(ClientException("Client closed", errno.ECONNABORTED))
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._session.close()

    def _logged_in(self, ok: bool, failure: str) -> None:
        """Raise on a failed login; after a successful one, job events may now be subscribable."""
        if not ok:
            raise ClientException(failure, errno.EACCES)
        self._jobs_sub_failed = False

    async def _watch_jobs(self) -> None:
        """Subscribe to core.get_jobs once, so that job calls are recognised by their events."""
        async with self._jobs_lock:
            if self._jobs_sub is not None or self._jobs_sub_failed:
                return
            try:
                self._jobs_sub = str(await self._request("core.subscribe", ["core.get_jobs"], SHORT_TIMEOUT))
            except ClientException as exc:
                if self._closed or isinstance(exc, CallTimeout):
                    raise
                # Not authenticated (yet): the call itself will say so; retried after login().
                self._jobs_sub_failed = True

    async def _request(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        *,
        job: bool = False,
        callback: JobCallback | None = None,
    ) -> Any:
        """Send one request and wait for its response, or for a job event naming its id."""
        if self._closed:
            raise self._closed
        call_id = str(uuid.uuid4())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = _Pending(future, job, callback)
        try:
            async with asyncio.timeout(timeout):
                await self._ws.send_str(encode_request(call_id, method, params))
                return await future
        except TimeoutError:
            raise CallTimeout() from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise self._closed or ClientException(f"Connection lost: {exc}", errno.ECONNRESET) from exc
        finally:
            self._pending.pop(call_id, None)

    async def _read_loop(self) -> None:
        """Dispatch every message from the server until the connection ends."""
        reason = "Connection closed"
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = f"Connection closed by server ({msg.data}: {msg.extra or 'no reason'})"
                    break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"Connection error: {msg.data}"
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
        except Exception as exc:  # a broken transport surfaces here
            reason = f"Connection error: {exc}"
        finally:
            self._shutdown(ClientException(reason, errno.ECONNRESET))

    def _on_text(self, text: str) -> None:
        """Decode and route one message; a bad message is logged, never fatal."""
        try:
            message = json.loads(text)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            method = message.get("method")
            params = message.get("params")
            if method == "collection_update" and isinstance(params, dict):
                self._on_event(params)
            elif method == "notify_unsubscribed" and isinstance(params, dict):
                self._on_unsubscribed(params)
            elif "id" in message:
                self._on_response(message)
        except Exception:
            log.exception("Cannot handle message %.200s", text)

    def _on_response(self, message: dict[str, Any]) -> None:
        """Resolve the pending call a response belongs to (late responses of jobs are dropped)."""
        call_id = message["id"]
        pending = self._pending.get(call_id) if isinstance(call_id, str) else None
        if pending is None or pending.future.done():
            if "error" in message and call_id is None:
                log.warning("Server reported an error: %s", message["error"])
            return
        if "error" in message:
            pending.future.set_exception(error_from_rpc(message["error"]))
        else:
            pending.future.set_result(message.get("result"))

    def _on_event(self, params: dict[str, Any]) -> None:
        """Route a collection_update to the job machinery and to matching subscriptions."""
        collection = params.get("collection")
        if collection == "core.get_jobs":
            self._on_job_event(params)
        for subscription in list(self._subs.values()):
            if subscription.name in (collection, "*"):
                _safe_call(subscription.callback, params)

    def _on_job_event(self, params: dict[str, Any]) -> None:
        """Turn pending calls named in ``message_ids`` into jobs, and feed the jobs being waited on."""
        fields = params.get("fields")
        if params.get("msg") not in ("added", "changed") or not isinstance(fields, dict):
            return
        job_id = fields.get("id", params.get("id"))
        if not isinstance(job_id, int):
            return
        for call_id in fields.get("message_ids") or ():
            pending = self._pending.get(call_id) if isinstance(call_id, str) else None
            if pending is None or pending.future.done():
                continue
            watch = None
            if pending.job:
                watch = _JobWatch(asyncio.get_running_loop().create_future(), pending.callback)
                self._jobs.setdefault(job_id, _JobState()).watches.append(watch)
            pending.future.set_result(_JobStarted(job_id, watch))
        state = self._jobs.get(job_id)
        if state is not None:
            state.fields.update(fields)
            self._job_progress(job_id, state)

    def _job_progress(self, job_id: int, state: _JobState) -> None:
        """Tell the watchers of a job about its new state; wake them when it has ended."""
        for watch in state.watches:
            if watch.callback is not None:
                _safe_call(watch.callback, dict(state.fields))
        if state.fields.get("state") in JOB_TERMINAL_STATES:
            del self._jobs[job_id]
            for watch in state.watches:
                if not watch.future.done():
                    watch.future.set_result(dict(state.fields))

    def _on_unsubscribed(self, params: dict[str, Any]) -> None:
        """The server ended every subscription to a collection, possibly with an error."""
        collection = params.get("collection")
        error = params.get("error")
        exc = error_from_data(error, f"Subscription to {collection} ended") if isinstance(error, dict) else None
        for ident, subscription in list(self._subs.items()):
            if subscription.name == collection:
                del self._subs[ident]
                if subscription.on_end is not None:
                    _safe_call(subscription.on_end, exc)
        if collection == "core.get_jobs" and self._jobs_sub is not None:
            self._jobs_sub = None
            self._fail_jobs(exc or ClientException("Job events subscription ended", errno.ECONNRESET))

    def _fail_jobs(self, exc: ClientException) -> None:
        """Wake every job watcher with an error: its job can no longer be followed."""
        jobs, self._jobs = self._jobs, {}
        for state in jobs.values():
            for watch in state.watches:
                if not watch.future.done():
                    watch.future.set_exception(exc)

    def _shutdown(self, exc: ClientException) -> None:
        """Mark the connection gone and fail everything still waiting on it (once)."""
        if self._closed is not None:
            return
        self._closed = exc
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(exc)
        self._fail_jobs(exc)
        subs, self._subs = self._subs, {}
        for subscription in subs.values():
            if subscription.on_end is not None:
                _safe_call(subscription.on_end, exc)
