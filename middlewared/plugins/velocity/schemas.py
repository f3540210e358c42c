"""JSON Schema building blocks shared by the Velocity endpoints (request and response bodies)."""
from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def integer(description: str, minimum: int | None = 0) -> Schema:
    out: Schema = {"type": "integer", "description": description}
    if minimum is not None:
        out["minimum"] = minimum
    return out


def string(description: str, **more: Any) -> Schema:
    return {"type": "string", "description": description, **more}


def boolean(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def array(items: Schema, description: str) -> Schema:
    return {"type": "array", "items": items, "description": description}


AUTHKEY: Schema = string("The authkey, for clients that send it in the body rather than as a Bearer token.")


def request(description: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    """A request body: unknown keys are ignored (as Velocity does); ``authkey`` may ride along."""
    return {"type": "object", "description": description, "required": list(required),
            "properties": {**properties, "authkey": AUTHKEY}}


def response(description: str, properties: Schema) -> Schema:
    """A response body: every listed key is always present."""
    return {"type": "object", "description": description, "additionalProperties": False,
            "required": list(properties), "properties": properties}


GID = integer("Group id (0: the root group).")
UID = integer("User id.")
PERMISSION = response("A permission.", {
    "pid": integer("Permission id (stable: its place in the catalogue)."),
    "name": string("Permission name, e.g. velocity.vm.view."),
    "description": string("What it allows."),
})
PERMISSIONS = array(PERMISSION, "Permissions held directly on the group (they also apply to its subgroups).")
