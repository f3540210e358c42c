"""A third-party TrueNAS client (pytruenas, from PyPI) works against the daemon unchanged."""
from __future__ import annotations

import pytest
from pytruenas import ClientException, TrueNASClient, TrueNASWSConnection, ValidationErrors

from tests.support import Daemon


@pytest.fixture
def conn(daemon: Daemon) -> TrueNASWSConnection:
    c = TrueNASWSConnection(daemon.unix_uri, call_timeout=30)
    c.connect()
    yield c
    c.close()


def test_calls_and_errors(conn: TrueNASWSConnection) -> None:
    assert conn.call("core.ping") == "pong"
    assert isinstance(conn.call("core.get_methods"), dict)
    with pytest.raises(ValidationErrors) as e:
        conn.call("core.subscribe", 5)
    assert "name" in str(e.value)
    with pytest.raises(ClientException):
        conn.call("no.such_method")


def test_job_id_and_polled_result(daemon: Daemon) -> None:
    client = TrueNASClient(daemon.unix_uri)
    job_id = client.api.core.bulk("core.ping", [[]])
    assert isinstance(job_id, int)
    assert client.wait(job_id, timeout=30) == [{"job_id": None, "result": "pong", "error": None}]


def test_subscription(conn: TrueNASWSConnection) -> None:
    with conn.subscribe("core.get_jobs") as sub:
        job_id = conn.call("core.bulk", "core.ping", [[]])
        seen = []
        for event in sub.events(timeout=10):
            seen.append(event)
            if event.fields and event.fields.get("state") == "SUCCESS":
                break
        assert seen[0].msg == "added" and seen[0].id == job_id
        assert seen[-1].fields["state"] == "SUCCESS"  # type: ignore[index]


def test_tcp_anonymous_ping(daemon: Daemon) -> None:
    c = TrueNASWSConnection(daemon.url, call_timeout=10)
    c.connect()
    try:
        assert c.call("core.ping") == "pong"
        with pytest.raises(ClientException) as e:
            c.call("core.get_methods")
        assert "Not authenticated" in str(e.value)
    finally:
        c.close()
