"""The client side of TrueNAS' SCRAM-SHA-512 API key login (auth.login_ex mechanism SCRAM).

The key never crosses the wire: the client proves it knows the key, and the server proves it holds the
key's ServerKey. Names are ``<user>:<key id>``; the server's nonce is base64(client nonce + its own bytes).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any, Awaitable, Callable

from midclt.exceptions import ClientException

MAX_ITERATIONS = 5000000  # a hostile server must not make the client spin
Request = Callable[[dict[str, Any]], Awaitable[Any]]


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def _answer(response: Any, expected: str) -> str:
    """The rfc_str of a SCRAM_RESPONSE of the expected type, or a ClientException."""
    if not isinstance(response, dict) or response.get("response_type") != "SCRAM_RESPONSE" \
            or response.get("scram_type") != expected:
        kind = response.get("response_type") if isinstance(response, dict) else response
        raise ClientException(f"Login failed: {kind}")
    return str(response.get("rfc_str", ""))


def _fields(text: str) -> dict[str, str]:
    return {part[0]: part[2:] for part in text.split(",") if len(part) > 1 and part[1] == "="}


async def scram_login(request: Request, username: str, key: str) -> None:
    """Log in with an API key ``<id>-<secret>`` by SCRAM; raise ClientException on any failure."""
    key_id, _, secret = key.strip().partition("-")
    if not key_id.isdigit() or not secret:
        raise ClientException("API key must look like <id>-<secret>")
    nonce = secrets.token_bytes(32)
    bare = f"n={username.replace('=', '=3D').replace(',', '=2C')}:{key_id},r={base64.b64encode(nonce).decode()}"
    server_first = _answer(await request({"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE",
                                          "rfc_str": f"n,,{bare}"}), "SERVER_FIRST_RESPONSE")
    fields = _fields(server_first)
    try:
        iterations, salt = int(fields["i"]), base64.b64decode(fields["s"])
        combined = base64.b64decode(fields["r"])
    except (KeyError, ValueError) as exc:
        raise ClientException(f"Malformed SCRAM server message: {exc}") from exc
    if not combined.startswith(nonce) or len(combined) <= len(nonce) or not 0 < iterations <= MAX_ITERATIONS:
        raise ClientException("SCRAM server message refused (nonce or iteration count)")
    salted = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = _hmac(hashlib.sha512(client_key).digest(), auth_message)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    server_final = _answer(await request({"mechanism": "SCRAM", "scram_type": "CLIENT_FINAL_MESSAGE",
                                          "rfc_str": f"{without_proof},p={proof}"}), "SERVER_FINAL_RESPONSE")
    expected = _hmac(_hmac(salted, b"Server Key"), auth_message)
    if not hmac.compare_digest(_fields(server_final).get("v", "").encode(), base64.b64encode(expected)):
        raise ClientException("The server could not prove it knows the key")
