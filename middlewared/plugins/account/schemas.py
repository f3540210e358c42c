"""JSON Schemas of user.* and group.*."""
from __future__ import annotations

from typing import Any

from middlewared import roles as roles_


ROLES: dict[str, Any] = {"type": "array", "uniqueItems": True,
                         "items": {"type": "string", "enum": roles_.grantable(), "description": "A role."},
                         "description": "Roles held everywhere (see acl.* for roles on some VMs only)."}
IDS: dict[str, Any] = {"type": "array", "uniqueItems": True, "items": {"type": "integer", "description": "An id."}}
# No ":" in names: SCRAM logins name the key as "<user>:<key id>".
USERNAME: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$",
                            "description": "Login name (letters, digits, _ . -)."}
PASSWORD: dict[str, Any] = {"type": "string", "minLength": 8, "maxLength": 1024,
                            "description": "Password (hashed with scrypt, never stored or logged)."}

USER_FIELDS: dict[str, Any] = {
    "username": USERNAME,
    "full_name": {"type": "string", "maxLength": 256, "description": "Full name."},
    "password": PASSWORD,
    "enabled": {"type": "boolean", "description": "Whether the account may log in."},
    "locked": {"type": "boolean", "description": "Locked accounts may not log in (set by an administrator)."},
    "roles": ROLES,
    "groups": {**IDS, "description": "Ids of the account groups the user belongs to."},
}
USER_ENTRY: dict[str, Any] = {
    "title": "entry", "type": "object", "description": "A local account.",
    "properties": {
        "id": {"type": "integer", "description": "Id (root is 1)."},
        **{k: v for k, v in USER_FIELDS.items() if k != "password"},
        "builtin": {"type": "boolean", "description": "Built in (root): cannot be renamed or deleted."},
        "password_set": {"type": "boolean", "description": "Whether a password login is possible."},
    },
}
USER_CREATE: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["username"],
                               "description": "The new account.", "properties": USER_FIELDS}
USER_UPDATE: dict[str, Any] = {"type": "object", "additionalProperties": False, "description": "Fields to change.",
                               "properties": USER_FIELDS}

GROUP_FIELDS: dict[str, Any] = {
    "name": {**USERNAME, "description": "Group name."},
    "roles": {**ROLES, "description": "Roles every member holds everywhere."},
    "users": {**IDS, "description": "Ids of the member users."},
}
GROUP_ENTRY: dict[str, Any] = {
    "title": "entry", "type": "object", "description": "An account group.",
    "properties": {"id": {"type": "integer", "description": "Id."}, **GROUP_FIELDS,
                   "builtin": {"type": "boolean", "description": "Built in: cannot be renamed or deleted."}},
}
GROUP_CREATE: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["name"],
                                "description": "The new group.", "properties": GROUP_FIELDS}
GROUP_UPDATE: dict[str, Any] = {"type": "object", "additionalProperties": False, "description": "Fields to change.",
                                "properties": GROUP_FIELDS}
ROOT_PASSWORD: dict[str, Any] = {**PASSWORD, "title": "password", "description": "root's new password."}
