"""Service bases and the one decorator that makes a method part of the API."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Mapping, Sequence, TypeVar

from middlewared.schema import Arguments, Schema

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobOptions:
    """How a method runs as a job: its lock, queue, logs, pipes, abort and description."""

    lock: str | Callable[[list[Any]], str] | None = None
    lock_queue_size: int | None = 5
    logs: bool = False
    pipes: tuple[str, ...] = ()
    abortable: bool = False
    transient: bool = False
    description: Callable[[list[Any]], str] | None = None
    read_roles: tuple[str, ...] = ()

    def lock_name(self, args: list[Any]) -> str | None:
        """The lock of a call, computed from its validated arguments."""
        if self.lock is None or isinstance(self.lock, str):
            return self.lock
        return self.lock(args)


@dataclass(frozen=True)
class MethodSpec:
    """Everything the decorator knows about an API method."""

    params: tuple[Schema, ...]
    result: Schema
    roles: tuple[str, ...]
    job: JobOptions | None = None
    authentication_required: bool = True
    name: str | None = None
    audit: str | None = None
    secret_params: tuple[str, ...] = field(default=())


def api_method(*, params: Sequence[Schema] = (), result: Schema, roles: Sequence[str] = (),
               job: JobOptions | None = None, authentication_required: bool = True,
               name: str | None = None, audit: str | None = None) -> Callable[[F], F]:
    """Expose a service method on the API with its schemas, roles and job options.

    The framework passes ``job=`` (for job methods) and ``app=`` (the calling connection, or None for
    internal calls) by keyword when the function declares those keyword-only parameters.
    """
    if authentication_required and not roles:
        raise ValueError("an API method needs roles unless it is open to anonymous callers")
    spec = MethodSpec(tuple(params), result, tuple(roles), job, authentication_required, name, audit)
    # Compile at import: a broken schema is a start-up error, not a runtime one.
    arguments = Arguments(spec.params)

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__}: API methods are coroutines")
        if not fn.__doc__:
            raise TypeError(f"{fn.__qualname__}: API methods need a docstring")
        setattr(fn, "__api_method__", (spec, arguments))
        return fn
    return decorate


class Service:
    """A plain method container; its API methods are the ones carrying @api_method."""

    namespace: ClassVar[str]

    def __init__(self, middleware: "Middleware") -> None:
        self.middleware = middleware

    def api_methods(self) -> list[tuple[str, MethodSpec, Arguments, Callable[..., Awaitable[Any]]]]:
        """(short name, spec, compiled arguments, bound function) for each API method."""
        out = []
        for attr in dir(type(self)):
            fn = getattr(type(self), attr, None)
            marker = getattr(fn, "__api_method__", None)
            if marker is None:
                continue
            spec, arguments = marker
            out.append((spec.name or attr, spec, arguments, getattr(self, attr)))
        return out


def id_param(title: str = "id", description: str = "Id of the record.") -> dict[str, Any]:
    """The schema of an integer id argument."""
    return {"title": title, "type": "integer", "description": description}


NULL_RESULT: dict[str, Any] = {"title": "result", "type": "null", "description": "Nothing."}
QUERY_FILTERS: dict[str, Any] = {
    "title": "filters", "type": "array", "default": [],
    "description": "Query filters: [field, op, value] triples, ANDed; [\"OR\", [...]] for alternatives.",
}
QUERY_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {},
    "description": "Query options: select, order_by, offset, limit, count, get, extra.",
}
GET_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {},
    "description": "Query options applied to the single result (select, extra).",
}


def merge_spec(base: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a schema literal with some keys replaced."""
    out = dict(base)
    out.update(changes)
    return out
