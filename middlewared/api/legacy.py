"""The legacy ``/websocket`` protocol (DDP-like) that older TrueNAS clients speak, on the same dispatch.

Messages: connect/connected, method/result, sub/nosub/ready, ping/pong, as TrueNAS's legacy clients send
and expect them. Jobs always answer with their id there.
"""
from __future__ import annotations

import errno
import uuid
from typing import Any

from middlewared.api import errors as E
from middlewared.utils import wire_json
from middlewared.api.rpc import MAX_CALLS_IN_FLIGHT, MAX_NESTING, RpcConnection, too_deep
from middlewared.errors import ENOMETHOD, errname
from middlewared.job import Job


class LegacyConnection(RpcConnection):
    """A /websocket client: connect handshake, method/result, sub/unsub, DDP-style events."""

    connected = False

    def on_message(self, text: str) -> None:
        try:
            message = wire_json.loads(text)
        except ValueError:
            self.send({"msg": "failed", "version": "1"})
            return
        if not isinstance(message, dict):
            self.send({"msg": "failed", "version": "1"})
            return
        kind = message.get("msg")
        if kind == "method" and self.connected and too_deep(text, message):
            self._error(message.get("id"), E.nesting_error(MAX_NESTING))
            return
        if not self.connected:
            self._handshake(message)
        elif kind == "method":
            self._method(message)
        elif kind == "sub":
            self._sub(message)
        elif kind == "unsub":
            self.unsubscribe(str(message.get("id")))
        elif kind == "ping":
            self.send({"msg": "pong", **({"id": message["id"]} if "id" in message else {})})

    def _handshake(self, message: dict[str, Any]) -> None:
        if message.get("msg") == "connect" and message.get("version") == "1" and "1" in (message.get("support") or []):
            self.connected = True
            self.send({"msg": "connected", "session": str(uuid.uuid4())})
        else:
            self.send({"msg": "failed", "version": "1"})

    def _method(self, message: dict[str, Any]) -> None:
        msg_id, name, params = message.get("id"), message.get("method"), message.get("params", [])
        method = self.middleware.methods.get(name) if isinstance(name, str) else None
        if method is None or not isinstance(params, list):
            reason = f"Method {name!r} does not exist" if method is None else "params must be a list"
            code = ENOMETHOD if method is None else errno.EINVAL
            self.send({"msg": "result", "id": msg_id, "error": {
                "error": code, "errname": errname(code), "type": None, "reason": reason, "trace": None,
                "extra": None}})
            return
        if self.inflight >= MAX_CALLS_IN_FLIGHT:
            self._error(msg_id, E.simple_error(E.TOO_MANY_CONCURRENT_CALLS, "Maximum number of concurrent "
                                               f"calls ({MAX_CALLS_IN_FLIGHT}) has exceeded", errno.EBUSY))
            return
        self.start_call(method, params, msg_id, True)

    def _sub(self, message: dict[str, Any]) -> None:
        ident, name = str(message.get("id")), message.get("name")
        if isinstance(name, str) and (name == "*" or name in self.middleware.events) \
                and self.middleware.can_subscribe(name, self.credentials):
            self.subscribe(ident, name)
            self.send({"msg": "ready", "subs": [ident]})
        else:
            error = {"error": errno.EACCES, "errname": "EACCES", "type": None,
                     "reason": f"Cannot subscribe to {name!r}", "trace": None, "extra": None}
            self.send({"msg": "nosub", "id": ident, "collection": name, "error": error})

    def _result_message(self, msg_id: Any, result: Any) -> dict[str, Any]:
        return {"msg": "result", "id": msg_id, "result": result}

    def _error(self, msg_id: Any, error: dict[str, Any]) -> None:
        data = dict(error.get("data") or {})
        data["type"] = None
        if error.get("code") == E.INVALID_PARAMS:
            # Legacy clients recognise validation failures by EAGAIN + type VALIDATION.
            data.update(error=errno.EAGAIN, errname="EAGAIN", type="VALIDATION")
            if not data.get("trace"):
                # Legacy clients also need a trace to recognise them: one without the traceback.
                data["trace"] = {"class": "ValidationErrors", "frames": [], "formatted": data.get("reason"),
                                 "repr": "ValidationErrors()"}
        self.send({"msg": "result", "id": msg_id, "error": data})

    def send_event(self, name: str, kind: str, payload: dict[str, Any], job: Job | None) -> None:
        if name not in self._subscribed and "*" not in self._subscribed:
            return
        if job is not None:
            if not job.visible_to(self.credentials):
                return
            payload = {**payload, "fields": E.job_fields(payload["fields"], self.credentials)}
        self.send({"msg": payload["msg"], **{k: v for k, v in payload.items() if k != "msg"}})

    def end_subscriptions(self, name: str, error: dict[str, Any] | None = None) -> None:
        for ident in [i for i, n in self.subscriptions.items() if n == name]:
            self.unsubscribe(ident)
        self.send({"msg": "nosub", "collection": name, **({"error": error} if error else {})})
