"""SCRAM-SHA-512 (RFC 5802, RFC 7677's scheme with SHA-512), server side, as TrueNAS clients speak it.

Two TrueNAS departures from the RFC, which its clients rely on: the user name is ``<user>:<api key id>``,
and the combined nonce is base64(client nonce bytes + server nonce bytes), not a string concatenation.
The standard library is enough (PBKDF2, HMAC); a SCRAM library would need patching for both.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass

CB_NAME = "tls-server-end-point"
NONCE_SIZE = 32


class ScramError(ValueError):
    """A malformed or failed SCRAM message: the login answers AUTH_ERR."""


@dataclass(frozen=True)
class ScramKeys:
    """What the server keeps of a secret (salt, iterations, StoredKey, ServerKey); ClientKey only at creation."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    client_key: bytes = b""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def derive_keys(secret: str, salt: bytes, iterations: int) -> ScramKeys:
    """SaltedPassword = Hi(secret, salt, i) and the keys derived from it (slow: run it in a thread)."""
    salted = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(salt, iterations, hashlib.sha512(client_key).digest(), _hmac(salted, b"Server Key"),
                     client_key)


def check_secret(secret: str, keys: ScramKeys) -> bool:
    """Whether a plain secret (API_KEY_PLAIN) derives the stored StoredKey."""
    return hmac.compare_digest(derive_keys(secret, keys.salt, keys.iterations).stored_key, keys.stored_key)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ScramError("bad base64") from None


def _attributes(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """Parse ``a=v,b=w`` attributes, exactly the given names in this order."""
    parts = text.split(",")
    if [p[:2] for p in parts] != [f"{n}=" for n in names]:
        raise ScramError(f"expected attributes {','.join(names)}")
    return {p[0]: p[2:] for p in parts}


@dataclass(frozen=True)
class ClientFirst:
    """A parsed client-first-message."""

    gs2_header: str      # "n,,", "y,," or "p=tls-server-end-point,,"
    bare: str            # "n=<user>:<id>,r=<nonce>"
    username: str
    key_id: int
    nonce: bytes

    @property
    def wants_binding(self) -> bool:
        return self.gs2_header.startswith("p=")


def parse_client_first(text: str) -> ClientFirst:
    """Parse ``<gs2 flag>,,n=<user>:<key id>,r=<base64 nonce>``."""
    flag, authzid, bare = (text.split(",", 2) + ["", ""])[:3]
    if flag not in ("n", "y", f"p={CB_NAME}") or authzid:
        raise ScramError("unsupported GS2 header")
    attrs = _attributes(bare, ("n", "r"))
    name = attrs["n"].replace("=2C", ",").replace("=3D", "=")
    username, _, key_id = name.rpartition(":")
    if not username or not key_id.isdigit():
        raise ScramError("SCRAM is offered for API keys only: the name must be <user>:<key id>")
    nonce = _b64decode(attrs["r"])
    if len(nonce) < 16:
        raise ScramError("client nonce too short")
    return ClientFirst(f"{flag},,", bare, username, int(key_id), nonce)


@dataclass(frozen=True)
class Conversation:
    """The server's side of one exchange, between the two client messages."""

    first: ClientFirst
    server_first: str
    nonce: str
    keys: ScramKeys


def server_first(first: ClientFirst, keys: ScramKeys) -> Conversation:
    """Answer a client-first-message: ``r=<combined nonce>,s=<salt>,i=<iterations>``."""
    nonce = base64.b64encode(first.nonce + secrets.token_bytes(NONCE_SIZE)).decode()
    text = f"r={nonce},s={base64.b64encode(keys.salt).decode()},i={keys.iterations}"
    return Conversation(first, text, nonce, keys)


def server_final(conv: Conversation, text: str, binding: bytes | None) -> str:
    """Check a client-final-message (``c=..,r=..,p=..``); return ``v=<ServerSignature>`` or raise."""
    attrs = _attributes(text, ("c", "r", "p"))
    if not hmac.compare_digest(attrs["r"], conv.nonce):
        raise ScramError("nonce mismatch")
    cb_data = (binding or b"") if conv.first.wants_binding else b""
    expected_c = conv.first.gs2_header.encode() + cb_data
    if not hmac.compare_digest(_b64decode(attrs["c"]), expected_c):
        raise ScramError("channel binding mismatch")
    auth_message = f"{conv.first.bare},{conv.server_first},c={attrs['c']},r={attrs['r']}".encode()
    proof = _b64decode(attrs["p"])
    signature = _hmac(conv.keys.stored_key, auth_message)
    if len(proof) != len(signature):
        raise ScramError("bad proof size")
    client_key = bytes(a ^ b for a, b in zip(proof, signature))
    if not hmac.compare_digest(hashlib.sha512(client_key).digest(), conv.keys.stored_key):
        raise ScramError("bad proof")
    return "v=" + base64.b64encode(_hmac(conv.keys.server_key, auth_message)).decode()


# RFC 5929 4.1: the certificate's own signature hash, MD5 and SHA-1 promoted to SHA-256.
_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.4": "sha256", "1.2.840.113549.1.1.5": "sha256", "1.2.840.10045.4.1": "sha256",
    "1.2.840.113549.1.1.14": "sha224", "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.113549.1.1.11": "sha256", "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.113549.1.1.12": "sha384", "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.113549.1.1.13": "sha512", "1.2.840.10045.4.3.4": "sha512",
}


# RSASSA-PSS names its hash in the algorithm's parameters (RFC 4055): absent means SHA-1 (promoted).
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_PSS_DIGESTS = {
    "1.2.840.113549.2.5": "sha256", "1.3.14.3.2.26": "sha256", "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512",
}


def _der_item(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at offset."""
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    return tag, start, start + length


def _oid(data: bytes) -> str:
    parts, value = [data[0] // 40, data[0] % 40], 0
    for byte in data[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def tls_server_end_point(pem_path: str) -> bytes:
    """The tls-server-end-point channel binding of the first certificate in a PEM file."""
    with open(pem_path, encoding="ascii") as f:
        pem = f.read()
    end = "-----END CERTIFICATE-----"
    der = ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)])
    _, cert_start, _ = _der_item(der, 0)
    _, _, tbs_end = _der_item(der, cert_start)                # skip tbsCertificate
    _, alg_start, alg_end = _der_item(der, tbs_end)           # signatureAlgorithm SEQUENCE
    _, oid_start, oid_end = _der_item(der, alg_start)         # its algorithm OID
    oid = _oid(der[oid_start:oid_end])
    name = _pss_hash(der, oid_end, alg_end) if oid == _RSASSA_PSS else _SIGNATURE_HASHES.get(oid)
    if name is None:
        raise ScramError("tls-server-end-point is undefined for this certificate's signature algorithm")
    return hashlib.new(name, der).digest()


def _pss_hash(der: bytes, start: int, end: int) -> str | None:
    """The binding hash of an RSASSA-PSS signature from its parameters (der[start:end]), or None."""
    if start >= end:
        return "sha256"
    _, params_start, params_end = _der_item(der, start)       # RSASSA-PSS-params SEQUENCE
    if params_start >= params_end:
        return "sha256"
    tag, hash_start, _ = _der_item(der, params_start)
    if tag != 0xA0:                                           # [0] hashAlgorithm left out: SHA-1
        return "sha256"
    _, alg_start, _ = _der_item(der, hash_start)              # its AlgorithmIdentifier SEQUENCE
    _, oid_start, oid_end = _der_item(der, alg_start)
    return _PSS_DIGESTS.get(_oid(der[oid_start:oid_end]))
