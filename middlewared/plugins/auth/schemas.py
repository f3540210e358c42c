"""JSON Schemas of the auth.* methods."""
from __future__ import annotations

from typing import Any


MECHANISMS = ["PASSWORD_PLAIN", "API_KEY_PLAIN", "TOKEN_PLAIN", "SCRAM"]

LOGIN_DATA: dict[str, Any] = {
    "title": "login_data", "type": "object", "required": ["mechanism"], "additionalProperties": False,
    "description": "Credentials, discriminated by mechanism (SCRAM takes two calls: client first, client final).",
    "properties": {
        "mechanism": {"type": "string", "enum": MECHANISMS + ["OTP_TOKEN"], "description": "How to authenticate."},
        "username": {"type": "string", "description": "PASSWORD_PLAIN, API_KEY_PLAIN: the account name."},
        "password": {"type": "string", "description": "PASSWORD_PLAIN: the password."},
        "api_key": {"type": "string", "description": "API_KEY_PLAIN: the key, <id>-<secret>."},
        "token": {"type": "string", "description": "TOKEN_PLAIN: a token from auth.generate_token."},
        "otp_token": {"type": "string", "description": "OTP_TOKEN: not supported (no two-factor accounts)."},
        "scram_type": {"type": "string", "enum": ["CLIENT_FIRST_MESSAGE", "CLIENT_FINAL_MESSAGE"],
                       "description": "SCRAM: which client message rfc_str holds."},
        "rfc_str": {"type": "string", "maxLength": 4096, "description": "SCRAM: the RFC 5802 message."},
        "login_options": {"type": "object", "description": "Options of a successful login.",
                          "properties": {"user_info": {"type": "boolean", "description": "Include auth.me's answer "
                                                                                        "(default true)."}}},
    },
}
LOGIN_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "SUCCESS, AUTH_ERR, EXPIRED, or SCRAM_RESPONSE mid-exchange.",
    "properties": {
        "response_type": {"type": "string", "description": "SUCCESS | AUTH_ERR | EXPIRED | SCRAM_RESPONSE."},
        "user_info": {"description": "SUCCESS: auth.me of the new session (null unless asked)."},
        "authenticator": {"type": "string", "description": "SUCCESS: assurance level (LEVEL_1)."},
        "scram_type": {"type": "string", "description": "SCRAM_RESPONSE: SERVER_FIRST_RESPONSE or "
                                                        "SERVER_FINAL_RESPONSE."},
        "rfc_str": {"type": "string", "description": "SCRAM_RESPONSE: the RFC 5802 server message."},
    },
}
USERNAME: dict[str, Any] = {"title": "username", "type": "string", "description": "Account name."}
PASSWORD: dict[str, Any] = {"title": "password", "type": "string", "description": "Its password."}
OTP: dict[str, Any] = {"title": "otp_token", "type": ["string", "null"], "default": None,
                       "description": "One-time password (two-factor accounts are not supported)."}
API_KEY: dict[str, Any] = {"title": "api_key", "type": "string", "description": "An API key, <id>-<secret>."}
TOKEN: dict[str, Any] = {"title": "token", "type": "string", "description": "A token from auth.generate_token."}
BOOL_RESULT: dict[str, Any] = {"title": "result", "type": "boolean", "description": "Whether it succeeded."}
MECHANISMS_RESULT: dict[str, Any] = {"title": "result", "type": "array", "items": {"type": "string"},
                                     "description": "Mechanisms auth.login_ex accepts."}
TTL: dict[str, Any] = {"title": "ttl", "type": "integer", "minimum": 1, "maximum": 86400, "default": 600,
                       "description": "Seconds the token stays valid."}
ATTRS: dict[str, Any] = {"title": "attrs", "type": "object", "default": {},
                         "description": "Data kept with the token (a token with \"job\" only serves downloads)."}
MATCH_ORIGIN: dict[str, Any] = {"title": "match_origin", "type": "boolean", "default": True,
                                "description": "Only usable from this session's address."}
SINGLE_USE: dict[str, Any] = {"title": "single_use", "type": "boolean", "default": False,
                              "description": "Valid for one use only."}
TOKEN_RESULT: dict[str, Any] = {"title": "result", "type": "string", "description": "The token."}
ME_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "The session's user, TrueNAS' user object shape.",
    "properties": {
        "pw_name": {"type": "string", "description": "Account name."},
        "pw_uid": {"type": "integer", "description": "Account id (0 for root on the unix socket)."},
        "pw_gid": {"type": "integer", "description": "Always 0."},
        "pw_gecos": {"type": "string", "description": "Full name."},
        "pw_dir": {"type": "string", "description": "No home directory: /var/empty."},
        "pw_shell": {"type": "string", "description": "No shell: /usr/sbin/nologin."},
        "attributes": {"type": "object", "description": "User attributes (none kept)."},
        "two_factor_config": {"type": "object", "description": "Two-factor settings (not supported)."},
        "privilege": {"type": "object", "description": "What the session may do.", "properties": {
            "roles": {"type": "array", "items": {"type": "string"}, "description": "Roles held everywhere."},
            "web_shell": {"type": "boolean", "description": "Always false."},
            "scoped": {"type": "array", "description": "Roles held on VM groups or single VMs.", "items": {
                "type": "object", "description": "One scoped grant.", "properties": {
                    "roles": {"type": "array", "items": {"type": "string"}, "description": "Roles (expanded)."},
                    "scope_type": {"type": "string", "description": "VM_GROUP or VM."},
                    "scope_id": {"type": "integer", "description": "The VM group or VM id."},
                    "vms": {"type": "array", "items": {"type": "integer"},
                            "description": "The VMs the grant covers now (clients gate per-VM actions on it)."}}}}}},
        "account_attributes": {"type": "array", "items": {"type": "string"},
                               "description": "LOCAL, and how the session logged in."},
    },
}
SESSIONS_RESULT: dict[str, Any] = {"title": "result", "description": "Sessions, one session (get) or a count.",
                                   "anyOf": [{"type": "array", "items": {"type": "object"}},
                                             {"type": "object"}, {"type": "integer"}]}
SESSION_ID: dict[str, Any] = {"title": "id", "type": "string", "description": "A session id from auth.sessions."}
