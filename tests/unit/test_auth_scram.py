"""SCRAM-SHA-512 server against the midclt client, TrueNAS' message shapes, channel binding, bad proofs."""
from __future__ import annotations

import base64
import shutil
import hashlib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from midclt.exceptions import ClientException
from midclt.scram import scram_login
from middlewared.plugins.auth import scram

SECRET = "A" * 64


@pytest.fixture(scope="module")
def keys() -> scram.ScramKeys:
    return scram.derive_keys(SECRET, b"s" * 16, 50000)


def server(keys: scram.ScramKeys, binding: bytes | None = None) -> Any:
    """A request function answering login_ex SCRAM messages the way the auth service does."""
    state: dict[str, Any] = {}

    async def request(data: dict[str, Any]) -> dict[str, Any]:
        if data["scram_type"] == "CLIENT_FIRST_MESSAGE":
            first = scram.parse_client_first(data["rfc_str"])
            assert (first.username, first.key_id) == ("alice", 7)
            state["conv"] = scram.server_first(first, keys)
            return {"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FIRST_RESPONSE",
                    "rfc_str": state["conv"].server_first}
        try:
            final = scram.server_final(state["conv"], data["rfc_str"], binding)
        except scram.ScramError:
            return {"response_type": "AUTH_ERR"}
        return {"response_type": "SCRAM_RESPONSE", "scram_type": "SERVER_FINAL_RESPONSE", "rfc_str": final}
    return request


async def test_round_trip(keys: scram.ScramKeys) -> None:
    await scram_login(server(keys), "alice", f"7-{SECRET}")


async def test_wrong_secret_is_refused(keys: scram.ScramKeys) -> None:
    with pytest.raises(ClientException, match="AUTH_ERR"):
        await scram_login(server(keys), "alice", f"7-{'B' * 64}")


def test_plain_check(keys: scram.ScramKeys) -> None:
    assert scram.check_secret(SECRET, keys) and not scram.check_secret("nope", keys)
    assert len(keys.stored_key) == len(keys.server_key) == 64
    assert keys.stored_key == hashlib.sha512(keys.client_key).digest()


def test_combined_nonce_is_client_bytes_then_server_bytes(keys: scram.ScramKeys) -> None:
    nonce = b"n" * 32
    first = scram.parse_client_first(f"n,,n=alice:7,r={base64.b64encode(nonce).decode()}")
    conv = scram.server_first(first, keys)
    fields = dict(p.split("=", 1) for p in conv.server_first.split(","))
    combined = base64.b64decode(fields["r"])
    assert combined[:32] == nonce and len(combined) == 64
    assert base64.b64decode(fields["s"]) == keys.salt and fields["i"] == "50000"


@pytest.mark.parametrize("text", ["n,,n=alice,r=AAAA", "x,,n=a:1,r=AAAA", "n,a=z,n=a:1,r=AAAA",
                                  "n,,r=AAAA,n=a:1", "n,,n=a:1,r=%%%%", "n,,n=a:1,r=AAAA"])
def test_malformed_client_first(text: str) -> None:
    with pytest.raises(scram.ScramError):
        scram.parse_client_first(text)


def test_escaped_names() -> None:
    first = scram.parse_client_first("y,,n=a=2Cb=3Dc:12,r=" + base64.b64encode(b"x" * 32).decode())
    assert (first.username, first.key_id, first.gs2_header) == ("a,b=c", 12, "y,,")


def test_bad_final_messages(keys: scram.ScramKeys) -> None:
    first = scram.parse_client_first("n,,n=alice:7,r=" + base64.b64encode(b"x" * 32).decode())
    conv = scram.server_first(first, keys)
    for text in ("c=biws,r=other,p=AAAA", f"c=eHl6,r={conv.nonce},p=AAAA", f"c=biws,r={conv.nonce},p=AAAA",
                 f"c=biws,r={conv.nonce},p={base64.b64encode(bytes(64)).decode()}", "p=x"):
        with pytest.raises(scram.ScramError):
            scram.server_final(conv, text, None)


def test_tls_server_end_point(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384",
                    "-sha384", "-nodes", "-days", "1", "-subj", "/CN=t", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(cert)], check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert scram.tls_server_end_point(str(cert)) == hashlib.sha384(der).digest()
