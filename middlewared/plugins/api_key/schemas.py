"""JSON Schemas of api_key.*."""
from __future__ import annotations

from typing import Any

from middlewared.schema import DATE_OR_NULL

FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Name, unique per user."},
    "username": {"type": "string", "description": "The user the key logs in as."},
    "expires_at": {**DATE_OR_NULL, "description": "When the key stops working (null: never)."},
}
ENTRY: dict[str, Any] = {
    "title": "entry", "type": "object", "description": "An API key (its secret is shown only by create/reset).",
    "properties": {
        "id": {"type": "integer", "description": "Id: the part of the key before the dash."},
        **FIELDS,
        "user_identifier": {"type": "integer", "description": "Id of the user."},
        "created_at": {"type": "object", "description": "Creation time, ejson date."},
        "local": {"type": "boolean", "description": "Always true (local accounts)."},
        "revoked": {"type": "boolean", "description": "Always false: revoked keys are deleted."},
        "expired": {"type": "boolean", "description": "Whether expires_at has passed."},
        "key": {"type": "string", "description": "create/reset only: the key, <id>-<secret>. Not shown again."},
        "client_key": {"type": "string", "description": "create/reset only: SCRAM ClientKey (base64)."},
        "stored_key": {"type": "string", "description": "create/reset only: SCRAM StoredKey (base64)."},
        "server_key": {"type": "string", "description": "create/reset only: SCRAM ServerKey (base64)."},
        "salt": {"type": "string", "description": "create/reset only: PBKDF2 salt (base64)."},
        "iterations": {"type": "integer", "description": "create/reset only: PBKDF2 iterations."},
    },
}
CREATE: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["name", "username"],
                          "description": "The new key.", "properties": FIELDS}
UPDATE: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "description": "Fields to change.",
    "properties": {"name": FIELDS["name"], "expires_at": FIELDS["expires_at"],
                   "reset": {"type": "boolean", "description": "Replace the secret (the old key stops working "
                                                              "and its sessions end); the answer shows the new key."}},
}
MY_KEYS_RESULT: dict[str, Any] = {"title": "result", "type": "array", "items": ENTRY,
                                  "description": "The caller's own API keys."}
