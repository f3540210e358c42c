"""The OpenAPI 3.1 document of the Velocity REST API, built from the endpoint declarations themselves."""
from __future__ import annotations

from typing import Any, Sequence

from middlewared.plugins.velocity.endpoint import Endpoint
from middlewared.plugins.velocity.errors import ERROR_BODY, ErrorSpec

_ID = {"type": "string", "pattern": "^[0-9]+$"}
_TEXT = {"type": "string", "minLength": 1, "pattern": "[^ \t]"}
UPLOAD_HEADERS = (("x-velocity-mpid", _ID, "Pool id."), ("x-velocity-gid", _ID, "Owning group id."),
                  ("x-velocity-name", _TEXT, "Media name, unique in the pool."),
                  ("x-velocity-type", _TEXT, "Media type (free text: ISO, DISK...)."),
                  ("x-velocity-readonly", {"type": "string", "enum": ["true", "false"]},
                   "Whether the media is read-only."))


def _error_responses(errors: Sequence[ErrorSpec]) -> dict[str, Any]:
    by_status: dict[int, list[ErrorSpec]] = {}
    for spec in errors:
        by_status.setdefault(spec.status, []).append(spec)
    out = {}
    for status, specs in sorted(by_status.items()):
        codes = sorted({s.code for s in specs})
        schema = {**ERROR_BODY, "properties": {**ERROR_BODY["properties"], "code": {
            **ERROR_BODY["properties"]["code"], "enum": codes}}}
        out[str(status)] = {"description": "; ".join(f"{s.code}: {s.description}" for s in specs),
                            "content": {"application/json": {"schema": schema}}}
    return out


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{endpoint.method.lower()}{endpoint.path.replace('/', '_')}",
        "summary": endpoint.summary,
        "security": [] if endpoint.public else [{"authkey": []}],
        "responses": _error_responses(endpoint.all_errors()),
    }
    if endpoint.raw_body:
        operation["parameters"] = [{"name": name, "in": "header", "required": True, "description": what,
                                    "schema": schema} for name, schema, what in UPLOAD_HEADERS]
        operation["requestBody"] = {"required": True, "description": "The media's bytes (Content-Length needed).",
                                    "content": {"application/octet-stream": {"schema": {
                                        "type": "string", "format": "binary"}}}}
    elif endpoint.request is not None:
        operation["requestBody"] = {"required": bool(endpoint.request.get("required")),
                                    "content": {"application/json": {"schema": endpoint.request}}}
    if endpoint.response is not None:
        ok: dict[str, Any] = {"description": "Done.", "content": {"application/json": {"schema": endpoint.response}}}
    elif endpoint.path == "/m/media/download":
        ok = {"description": "The media's bytes.", "content": {"application/octet-stream": {"schema": {
            "type": "string", "format": "binary"}}}}
    else:
        ok = {"description": "Done (empty body)."}
    operation["responses"] = {"200": ok, **operation["responses"]}
    return operation


def document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The whole document."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Velocity REST API (middlewared)", "version": "1",
                 "description": "Users, groups and authkeys (/u), media pools and media (/m), VMs and host NICs "
                                "(/v), over the same accounts, VM groups and VMs as the JSON-RPC API. Every error "
                                "answers {code, message}."},
        "components": {"securitySchemes": {"authkey": {
            "type": "http", "scheme": "bearer",
            "description": "An authkey from POST /u/auth (also accepted as authkey in a JSON body)."}}},
        "paths": paths,
    }
