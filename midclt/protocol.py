"""Pure pieces of the JSON-RPC 2.0 protocol: URIs, requests, errors and job outcomes."""
from __future__ import annotations

import datetime
import errno
import json
from typing import Any, Iterable

from midclt.exceptions import ClientException, ValidationErrors

DEFAULT_SOCKET = "/run/middleware/middlewared.sock"
UNIX_SCHEME = "ws+unix://"
# Over a unix socket the HTTP handshake still needs a URL; only its path matters.
UNIX_HANDSHAKE_URL = "ws://localhost/api/current"

JOB_TERMINAL_STATES = frozenset({"SUCCESS", "FAILED", "ABORTED"})


def parse_uri(uri: str | None) -> tuple[str, str | None]:
    """Return the WebSocket URL to open and the unix socket path (None for TCP)."""
    if uri is None:
        return UNIX_HANDSHAKE_URL, DEFAULT_SOCKET
    if uri.startswith(UNIX_SCHEME):
        path = uri[len(UNIX_SCHEME):]
        if not path:
            raise ValueError(f"No socket path in {uri!r}")
        return UNIX_HANDSHAKE_URL, path
    if uri.startswith(("ws://", "wss://")):
        return uri, None
    raise ValueError(f"Unsupported URI {uri!r}: use ws://, wss:// or ws+unix://")


def encode_request(call_id: str, method: str, params: Iterable[Any]) -> str:
    """Serialise one JSON-RPC request, encoding dates and sets the way the server decodes them."""
    message = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": list(params)}
    return json.dumps(message, default=_ejson_default)


def _ejson_default(value: Any) -> Any:
    """Encode the non-JSON types TrueNAS' ejson understands."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return {"$date": int(value.timestamp() * 1000)}
    if isinstance(value, datetime.date):
        return {"$type": "date", "$value": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, (set, frozenset)):
        return {"$set": list(value)}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def error_from_data(data: dict[str, Any], fallback: str, code: int | None = None) -> ClientException:
    """Build a ClientException from a TrueNAS error object (reason, error, trace, extra)."""
    return ClientException(
        data.get("reason") or fallback, data.get("error"), data.get("trace"), data.get("extra"), code=code
    )


def error_from_rpc(error: Any) -> ClientException:
    """Map a JSON-RPC ``error`` member to the exception the caller sees."""
    if not isinstance(error, dict):
        return ClientException(f"Malformed error response: {error!r}")
    code = error.get("code")
    data = error.get("data")
    if not isinstance(data, dict):
        data = {}
    message = error.get("message") or f"JSON-RPC error {code}"
    if code == -32602:
        extra = data.get("extra")
        if isinstance(extra, list) and extra:
            return ValidationErrors(extra)
        return ValidationErrors([[None, data.get("reason") or message, data.get("error") or errno.EINVAL]])
    return error_from_data(data, message, code)


def job_outcome(job: dict[str, Any]) -> Any:
    """Return a finished job's result, or raise the error it failed with."""
    state = job.get("state")
    if state == "SUCCESS":
        return job.get("result")
    exc_info = job.get("exc_info") or {}
    if exc_info.get("type") == "VALIDATION":
        raise ValidationErrors(exc_info.get("extra") or [], code=None)
    if state == "ABORTED":
        raise ClientException(job.get("error") or "Job was aborted", errno.ECANCELED)
    trace: dict[str, Any] = {
        "class": exc_info.get("type"),
        "frames": [],
        "formatted": job.get("exception"),
        "repr": exc_info.get("repr"),
    }
    raise ClientException(
        job.get("error") or f"Job ended in state {state}", exc_info.get("errno"), trace, exc_info.get("extra")
    )
