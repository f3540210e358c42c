"""auth.*: logins (password, API key plain or SCRAM, token), tokens, the session's identity, sessions."""
from __future__ import annotations

import errno
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from middlewared import roles as roles_
from middlewared.credentials import ANONYMOUS
from middlewared.crud import query_rows
from middlewared.errors import CallError
from middlewared.middleware import AuditSource
from middlewared.plugins.auth import login as L
from middlewared.plugins.auth import schemas as S
from middlewared.plugins.auth import scram
from middlewared.plugins.auth.scope import policy
from middlewared.service import NULL_RESULT, QUERY_FILTERS, QUERY_OPTIONS, Service, api_method

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection

SELF = (roles_.AUTHENTICATED,)


@dataclass(frozen=True)
class ScramState:
    """A SCRAM exchange between its two calls (kept on the connection)."""

    conversation: scram.Conversation
    key: dict[str, Any] | None  # None: unknown key id or user, the exchange is bound to fail


def _conn(app: "RpcConnection | None") -> "RpcConnection":
    if app is None:
        raise CallError("This method needs a client connection", errno.EINVAL)
    return app


def _succeeded(answer: dict[str, Any]) -> bool:
    return bool(answer["response_type"] == L.SUCCESS)


class AuthService(Service):
    """auth.* methods."""

    namespace = "auth"
    _binding: bytes | None = None

    @api_method(params=[S.LOGIN_DATA], result=S.LOGIN_RESULT, authentication_required=False)
    async def login_ex(self, data: dict[str, Any], *, app: "RpcConnection | None" = None) -> dict[str, Any]:
        """Authenticate this session; the answer's response_type says how it went."""
        conn = _conn(app)
        mechanism = data["mechanism"]
        if mechanism == "SCRAM":
            return await self._scram(data, conn)
        if mechanism == "PASSWORD_PLAIN":
            outcome = await L.check_password(self.middleware, data.get("username", ""), data.get("password", ""))
        elif mechanism == "API_KEY_PLAIN":
            outcome = await L.check_api_key(self.middleware, data.get("api_key", ""), data.get("username", ""))
        elif mechanism == "TOKEN_PLAIN":
            outcome = L.check_token(self.middleware, data.get("token", ""), conn)
        else:
            outcome = L.Outcome(L.AUTH_ERR, username=data.get("username"))
        return await self._conclude(conn, mechanism, outcome, data.get("login_options", {}).get("user_info", True))

    async def _conclude(self, conn: "RpcConnection", mechanism: str, outcome: L.Outcome,
                        user_info: bool) -> dict[str, Any]:
        """Start the session (or slow down and record the failure) and build the answer."""
        audit = self.middleware.audit_log
        failures = policy(self.middleware).failures
        refusal = failures.refusal(conn.address, outcome.username)
        if refusal is not None:
            # Even the right secret: guessing from this address stops; other addresses are not concerned.
            if audit is not None:
                audit.record("AUTHENTICATION", AuditSource.of(conn, outcome.username), mechanism, [], "LOCKED")
            raise CallError(refusal, errno.EBUSY)
        if outcome.credentials is None:
            if audit is not None:
                audit.record("AUTHENTICATION", AuditSource.of(conn, outcome.username), mechanism, [],
                             outcome.response_type)
            await failures.failed(conn.address, outcome.username)
            return {"response_type": outcome.response_type}
        conn.set_credentials(outcome.credentials)
        if audit is not None:
            audit.record("AUTHENTICATION", AuditSource.of(conn, outcome.username), mechanism, [], None)
        return {"response_type": L.SUCCESS, "authenticator": "LEVEL_1",
                "user_info": await self.me(app=conn) if user_info else None}

    async def _scram(self, data: dict[str, Any], conn: "RpcConnection") -> dict[str, Any]:
        """The two SCRAM calls: CLIENT_FIRST_MESSAGE, then CLIENT_FINAL_MESSAGE on the same connection."""
        state, conn.login_state = conn.login_state, None
        try:
            if data.get("scram_type") == "CLIENT_FIRST_MESSAGE":
                first = scram.parse_client_first(data.get("rfc_str", ""))
                if first.wants_binding and not conn.tls:
                    raise scram.ScramError("channel binding needs TLS")
                key = await L.api_key_row(self.middleware, first.key_id)
                if key is None or key["username"] != first.username:
                    key = None  # answer as for a real key, so that key ids cannot be probed
                keys = L.scram_keys(key) if key else self._decoy_keys()
                conversation = scram.server_first(first, keys)
                conn.login_state = ScramState(conversation, key)
                return {"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FIRST_RESPONSE",
                        "rfc_str": conversation.server_first}
            if not isinstance(state, ScramState) or data.get("scram_type") != "CLIENT_FINAL_MESSAGE":
                raise scram.ScramError("no SCRAM exchange in progress")
            binding = self._tls_binding() if state.conversation.first.wants_binding else None
            final = scram.server_final(state.conversation, data.get("rfc_str", ""), binding)
            if state.key is None:
                raise scram.ScramError("unknown key")
        except scram.ScramError:
            username = state.conversation.first.username if isinstance(state, ScramState) else None
            return await self._conclude(conn, "SCRAM", L.Outcome(L.AUTH_ERR, username=username), False)
        outcome = await L.key_session(self.middleware, state.key)
        answer = await self._conclude(conn, "SCRAM", outcome, False)
        if answer["response_type"] != L.SUCCESS:
            return answer
        return {"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FINAL_RESPONSE", "rfc_str": final}

    def _decoy_keys(self) -> scram.ScramKeys:
        return scram.ScramKeys(secrets.token_bytes(16), self.middleware.config.auth.api_key_iterations,
                               secrets.token_bytes(64), secrets.token_bytes(64))

    def _tls_binding(self) -> bytes:
        if self._binding is None:
            self._binding = scram.tls_server_end_point(self.middleware.config.server.tls_certificate)
        return self._binding

    @api_method(params=[S.USERNAME, S.PASSWORD, S.OTP], result=S.BOOL_RESULT, authentication_required=False)
    async def login(self, username: str, password: str, otp_token: str | None, *,
                    app: "RpcConnection | None" = None) -> bool:
        """Authenticate with a password (legacy form of login_ex PASSWORD_PLAIN)."""
        data = {"mechanism": "PASSWORD_PLAIN", "username": username, "password": password}
        return _succeeded(await self.login_ex(data, app=app))

    @api_method(params=[S.API_KEY], result=S.BOOL_RESULT, authentication_required=False)
    async def login_with_api_key(self, api_key: str, *, app: "RpcConnection | None" = None) -> bool:
        """Authenticate with an API key <id>-<secret> (its user is looked up from the id)."""
        outcome = await L.check_api_key(self.middleware, api_key, None)
        return _succeeded(await self._conclude(_conn(app), "API_KEY_PLAIN", outcome, False))

    @api_method(params=[S.TOKEN], result=S.BOOL_RESULT, authentication_required=False)
    async def login_with_token(self, token: str, *, app: "RpcConnection | None" = None) -> bool:
        """Authenticate with a token from auth.generate_token."""
        return _succeeded(await self.login_ex({"mechanism": "TOKEN_PLAIN", "token": token}, app=app))

    @api_method(result=S.MECHANISMS_RESULT, authentication_required=False)
    async def mechanism_choices(self) -> list[str]:
        """The mechanisms auth.login_ex accepts (clients pick SCRAM for API keys when it is listed)."""
        return list(S.MECHANISMS)

    @api_method(params=[S.TTL, S.ATTRS, S.MATCH_ORIGIN, S.SINGLE_USE], result=S.TOKEN_RESULT, roles=SELF)
    async def generate_token(self, ttl: int, attrs: dict[str, Any], match_origin: bool, single_use: bool, *,
                             app: "RpcConnection | None" = None) -> str:
        """A token standing for this session's credentials (token logins, or a download if attrs.job is set)."""
        conn = _conn(app)
        return self.middleware.tokens.create(conn.credentials, ttl, single_use, attrs,
                                             conn.address if match_origin else None)

    @api_method(result=NULL_RESULT, roles=SELF)
    async def logout(self, *, app: "RpcConnection | None" = None) -> None:
        """End this session's login; the connection stays open, anonymous."""
        conn = _conn(app)
        if self.middleware.audit_log is not None:
            self.middleware.audit_log.record("LOGOUT", AuditSource.of(conn), None, [], None)
        conn.set_credentials(ANONYMOUS)

    @api_method(result=S.ME_RESULT, roles=SELF)
    async def me(self, *, app: "RpcConnection | None" = None) -> dict[str, Any]:
        """Who this session is and which roles it holds."""
        c = _conn(app).credentials
        full_name = ""
        if c.user_id is not None:
            ds = self.middleware.db
            rows = await ds.fetchall("SELECT full_name FROM account_user WHERE id = ?", (c.user_id,))
            full_name = rows[0]["full_name"] if rows else ""
        index = policy(self.middleware).index
        scoped = [{"roles": sorted(g.roles), "scope_type": g.scope_type, "scope_id": g.scope_id,
                   "vms": index.vms_in(g.scope_type, g.scope_id)} for g in c.grants]
        return {"pw_name": c.username or "", "pw_uid": c.user_id or 0, "pw_gid": 0, "pw_gecos": full_name,
                "pw_dir": "/var/empty", "pw_shell": "/usr/sbin/nologin", "attributes": {}, "two_factor_config": {},
                "privilege": {"roles": sorted(c.roles - {roles_.AUTHENTICATED}), "web_shell": False,
                              "scoped": scoped},
                "account_attributes": ["LOCAL", c.kind]}

    @api_method(params=[QUERY_FILTERS, QUERY_OPTIONS], result=S.SESSIONS_RESULT, roles=("AUTH_SESSIONS_READ",))
    async def sessions(self, filters: list[Any], options: dict[str, Any], *,
                       app: "RpcConnection | None" = None) -> Any:
        """Logged-in sessions: id, current, internal, origin, credentials, credentials_data, created_at."""
        rows = []
        for conn in list(self.middleware.connections):
            c = conn.credentials
            if not c.authenticated:
                continue
            data: dict[str, Any] = {"username": c.username}
            if c.api_key_id is not None:
                data["api_key"] = {"id": c.api_key_id}
            rows.append({"id": conn.session_id, "current": conn is app, "internal": conn.origin.startswith("UNIX"),
                         "origin": conn.origin, "credentials": c.kind, "credentials_data": data,
                         "created_at": {"$date": int(getattr(conn, "created_at", 0) * 1000)}})
        return query_rows(rows, filters, options)

    @api_method(params=[S.SESSION_ID], result=S.BOOL_RESULT, roles=("AUTH_SESSIONS_WRITE",), audit="terminate")
    async def terminate_session(self, session_id: str, *, app: "RpcConnection | None" = None) -> bool:
        """Close another session at once; false when no session has this id."""
        if app is not None and session_id == app.session_id:
            raise CallError("Use auth.logout to end the current session", errno.EINVAL)
        for conn in list(self.middleware.connections):
            if conn.session_id == session_id:
                await conn.terminate("Session terminated by an administrator")
                return True
        return False
