"""Python clients for the middleware daemon: AsyncClient (asyncio) and Client (blocking)."""
from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Coroutine, TypeVar

from midclt.aio import (
    CALL_TIMEOUT, CONNECT_TIMEOUT, SHORT_TIMEOUT, AsyncClient, EndCallback, EventCallback, JobCallback,
)

__all__ = ["AsyncClient", "CALL_TIMEOUT", "CONNECT_TIMEOUT", "Client"]

T = TypeVar("T")


class Client:
    """The AsyncClient API, blocking: the connection lives on a private event loop in a thread.

    Callbacks run on that thread; they must not block, nor call this client back (use a queue).
    """

    def __init__(self, uri: str | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="midclt-client", daemon=True)
        self._thread.start()
        try:
            self._client = self._run(AsyncClient.connect(uri, timeout))
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed by either side)."""
        return self._client.closed

    def call(
        self,
        method: str,
        *params: Any,
        job: bool = False,
        timeout: float | None = CALL_TIMEOUT,
        callback: JobCallback | None = None,
    ) -> Any:
        """Call a method; a job method returns its id, or with ``job=True`` its result once it ends."""
        return self._run(self._client.call(method, *params, job=job, timeout=timeout, callback=callback))

    def subscribe(self, name: str, callback: EventCallback, on_end: EndCallback | None = None) -> str:
        """Subscribe to an event; ``callback(params)`` runs for each one. Returns the subscription id."""
        return self._run(self._client.subscribe(name, callback, on_end))

    def unsubscribe(self, ident: str) -> None:
        """End a subscription made with subscribe()."""
        self._run(self._client.unsubscribe(ident))

    def ping(self, timeout: float = SHORT_TIMEOUT) -> str:
        """Call core.ping; returns ``"pong"``."""
        return self._run(self._client.ping(timeout))

    def login(self, username: str, password: str) -> None:
        """Authenticate with a password (auth.login_ex, or auth.login on servers without it)."""
        self._run(self._client.login(username, password))

    def login_with_api_key(self, key: str, username: str | None = None) -> None:
        """Authenticate with an API key (``<id>-<secret>``); by SCRAM when username is given."""
        self._run(self._client.login_with_api_key(key, username))

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for it from this thread."""
        if threading.current_thread() is self._thread:
            coro.close()
            # Blocking the loop's own thread on the loop would deadlock.
            raise RuntimeError("Client methods cannot be called from a client callback")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: do not leave the call running
            raise

    def _stop_loop(self) -> None:
        """Stop the loop thread and release the loop."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
