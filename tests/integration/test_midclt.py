"""midclt and the Python clients against the real daemon, over its unix socket and TCP."""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from midclt import AsyncClient, Client, ClientException, ValidationErrors
from tests.support import unique


def midclt(daemon: Any, *args: str, uri: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m midclt`` against the daemon (unix socket unless another uri is given)."""
    return subprocess.run(
        [sys.executable, "-m", "midclt", "-u", uri or daemon.unix_uri, *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def test_call_ping(daemon: Any) -> None:
    proc = midclt(daemon, "call", "core.ping")
    assert (proc.returncode, proc.stdout) == (0, "pong\n"), proc.stderr


def test_ping_command(daemon: Any) -> None:
    proc = midclt(daemon, "ping")
    assert (proc.returncode, proc.stdout) == (0, "pong\n"), proc.stderr


def test_call_prints_json(daemon: Any) -> None:
    proc = midclt(daemon, "call", "core.get_methods")
    assert proc.returncode == 0, proc.stderr
    methods = json.loads(proc.stdout)
    assert "core.ping" in methods and "core.bulk" in methods


def test_output_formats(daemon: Any) -> None:
    proc = midclt(daemon, "--output", "yaml", "call", "core.set_options", '{"legacy_jobs": false}')
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["legacy_jobs"] is False
    proc = midclt(daemon, "-o", "table", "call", "core.set_options", "{}")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["legacy_jobs", "private_methods", "py_exceptions"]


def test_unknown_method(daemon: Any) -> None:
    proc = midclt(daemon, "call", "nope.nothing")
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.strip()


def test_validation_error(daemon: Any) -> None:
    proc = midclt(daemon, "call", "core.subscribe", "5")
    assert proc.returncode == 1
    assert any(line.startswith("[EINVAL] ") for line in proc.stderr.splitlines()), proc.stderr


def test_job_without_wait_prints_its_id(daemon: Any) -> None:
    proc = midclt(daemon, "call", "core.bulk", "core.ping", "[[]]")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 0


def test_job_wait_prints_its_result(daemon: Any) -> None:
    proc = midclt(daemon, "call", "-j", "core.bulk", "core.ping", "[[]]")
    assert proc.returncode == 0, proc.stderr
    [item] = json.loads(proc.stdout)
    assert item["result"] == "pong" and item["error"] is None
    assert "Total Progress: [" + "#" * 40 + "] 100.00%" in proc.stderr
    assert "\x1b" not in proc.stderr  # stderr is a pipe, not a TTY


def test_job_arguments_from_stdin(daemon: Any) -> None:
    proc = midclt(daemon, "call", "-j", "-jp", "description", "core.bulk", "core.ping", "-", stdin="[[], []]")
    assert proc.returncode == 0, proc.stderr
    assert [item["result"] for item in json.loads(proc.stdout)] == ["pong", "pong"]


def test_failed_job(daemon: Any) -> None:
    proc = midclt(daemon, "call", "-j", "core.job_wait", "999999")
    assert proc.returncode == 1
    assert "999999" in proc.stderr


def test_subscribe_prints_events(daemon: Any) -> None:
    sub = subprocess.Popen(
        [sys.executable, "-m", "midclt", "-u", daemon.unix_uri, "subscribe", "core.get_jobs", "-n", "1", "-t", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The subscriber needs a moment to subscribe; start jobs until it has seen one.
        with Client(daemon.unix_uri) as client:
            deadline = time.monotonic() + 60
            while sub.poll() is None and time.monotonic() < deadline:
                client.call("core.bulk", "core.ping", [[], []], job=True)
                time.sleep(0.2)
        out, err = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    [line] = out.splitlines()
    event = json.loads(line)
    assert event["collection"] == "core.get_jobs" and event["msg"] in ("added", "changed")


def test_subscribe_times_out(daemon: Any) -> None:
    proc = midclt(daemon, "subscribe", "core.get_jobs", "-n", "1000", "-t", "0.5")
    assert proc.returncode == 1


def test_tcp_is_unauthenticated(daemon: Any) -> None:
    assert midclt(daemon, "ping", uri=daemon.url).stdout == "pong\n"
    proc = midclt(daemon, "call", "core.get_jobs", uri=daemon.url)
    assert proc.returncode == 1 and "Not authenticated" in proc.stderr


@pytest.mark.parametrize("credentials", [["-U", "nosuchuser", "-P", "wrong"], ["-K", "1-wrongkey"]])
def test_login_failure_exits_1(daemon: Any, credentials: list[str]) -> None:
    proc = midclt(daemon, *credentials, "call", "core.ping", uri=daemon.url)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Failed to login: ") and proc.stdout == ""


def test_daemon_not_running(tmp_path: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "midclt", "-u", f"ws+unix://{tmp_path}/none.sock", "call", "core.ping"],
        capture_output=True, text=True, timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (1, "Failed to run middleware call. Daemon not running?\n")


def test_waitready(daemon: Any) -> None:
    assert midclt(daemon, "-t", "10", "waitready").returncode == 0


def test_client_over_unix_socket(daemon: Any) -> None:
    with Client(daemon.unix_uri) as client:
        assert client.ping() == "pong"
        assert "core.get_jobs" in client.call("core.get_methods")
        job_id = client.call("core.bulk", "core.ping", [[]])
        assert isinstance(job_id, int)
        seen: list[dict[str, Any]] = []
        result = client.call("core.bulk", "core.ping", [[], []], job=True, callback=seen.append)
        assert [item["result"] for item in result] == ["pong", "pong"]
        assert seen and seen[-1]["state"] == "SUCCESS"
        with pytest.raises(ValidationErrors) as verr:
            client.call("core.subscribe", 5)
        assert verr.value.errors[0].errno == errno.EINVAL
        with pytest.raises(ValidationErrors) as missing:
            client.call("core.job_wait", 999999, job=True)
        assert "999999" in str(missing.value)

        events: list[dict[str, Any]] = []
        ident = client.subscribe("core.get_jobs", events.append)
        client.call("core.bulk", "core.ping", [[]], job=True)
        assert any(event["fields"]["method"] == "core.bulk" for event in events)
        client.unsubscribe(ident)


def test_client_over_tcp_is_unauthenticated(daemon: Any) -> None:
    with Client(daemon.url) as client:
        assert client.ping() == "pong"
        with pytest.raises(ClientException) as exc:
            client.call("core.get_methods")
        assert exc.value.errno == 207
        assert "Not authenticated" in str(exc.value)


async def test_async_client(daemon: Any) -> None:
    async with await AsyncClient.connect(daemon.unix_uri) as client:
        assert await client.ping() == "pong"
        result = await client.call("core.bulk", "core.ping", [[]], job=True)
        assert result[0]["result"] == "pong"
    async with await AsyncClient.connect(daemon.url) as client:
        with pytest.raises(ClientException) as exc:
            await client.call("core.get_jobs")
        assert exc.value.errno == 207


# --- output for people ----------------------------------------------------------------------------

@pytest.fixture
def named_vm(daemon: Any) -> Any:
    """A stopped VM created through midclt; deleted afterwards."""
    proc = midclt(daemon, "call", "vm.create", json.dumps({"name": unique("cli"), "memory": 64, "autostart": False}))
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)
    yield created
    midclt(daemon, "call", "vm.delete", str(created["id"]), '{"force": true}')


def test_vm_table_shows_state_and_fits(daemon: Any, named_vm: dict[str, Any]) -> None:
    proc = midclt(daemon, "-o", "table", "call", "vm.query", f'[["id", "=", {named_vm["id"]}]]')
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["id", "name", "state", "vcpus", "memory", "autostart"]
    assert row.split() == [str(named_vm["id"]), named_vm["name"], "STOPPED", "1", "64", "false"]
    proc = midclt(daemon, "call", "-o", "table", "-c", "name,status.domain_state,shutdown_timeout", "vm.query",
                  f'[["id", "=", {named_vm["id"]}]]')
    assert proc.stdout.splitlines()[1].split() == [named_vm["name"], "SHUTOFF", "90"], proc.stderr
    for method in ("vm.query", "audit.query", "core.get_jobs", "vm.device.query", "user.query"):
        proc = midclt(daemon, "-o", "table", "call", method)
        assert proc.returncode == 0, proc.stderr
        assert max(map(len, proc.stdout.splitlines()), default=0) <= 120, method
    audit = midclt(daemon, "-o", "table", "call", "audit.query").stdout.splitlines()
    assert audit[0].split()[:2] == ["audit_id", "timestamp"] and audit[1].split()[1].startswith("20")


def test_csv_output(daemon: Any, named_vm: dict[str, Any]) -> None:
    proc = midclt(daemon, "-o", "csv", "-c", "id,name,status.state", "call", "vm.query",
                  f'[["id", "=", {named_vm["id"]}]]')
    assert proc.stdout.splitlines() == ["id,name,status.state", f"{named_vm['id']},{named_vm['name']},STOPPED"]


def test_traceback_only_with_debug(daemon: Any, named_vm: dict[str, Any]) -> None:
    for args in (["call", "vm.resume", str(named_vm["id"])], ["call", "-j", "vm.stop", str(named_vm["id"])]):
        proc = midclt(daemon, *args)
        assert proc.returncode == 1 and "is not" in proc.stderr
        assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr, proc.stderr
        proc = midclt(daemon, "--debug", *args)
        assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


def test_malformed_json_argument_is_an_error(daemon: Any) -> None:
    name = unique("broken")
    proc = midclt(daemon, "call", "vm.create", f'{{"name": "{name}", "memory": 64,}}')
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("Argument 1 is not valid JSON: ")
    assert midclt(daemon, "call", "vm.query", f'[["name", "=", "{name}"]]').stdout == "[]\n"  # nothing was called
    # A plain word is still a string, as with TrueNAS' midclt.
    assert midclt(daemon, "call", "core.bulk", "core.ping", "[[]]").returncode == 0


def test_reader_going_away_is_no_error(daemon: Any) -> None:
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f'"{sys.executable}" -m midclt -u "{daemon.unix_uri}" call core.get_methods | head -c 10'],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, len(proc.stdout), proc.stderr) == (0, 10, "")


def test_stop_of_a_guest_without_an_os_says_what_it_waits_for(daemon: Any) -> None:
    created = json.loads(midclt(daemon, "call", "vm.create", json.dumps(
        {"name": unique("noos"), "memory": 64, "autostart": False, "shutdown_timeout": 5})).stdout)
    try:
        assert midclt(daemon, "call", "vm.start", str(created["id"])).returncode == 0
        proc = midclt(daemon, "call", "-j", "-jp", "description", "vm.stop", str(created["id"]),
                      '{"force_after_timeout": true}')
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.splitlines()
        assert "waiting up to 5 s for the guest OS to react (a guest without an OS ignores it)" in lines[0]
        assert "then it is powered off" in lines[0] and lines[-1] == "Powered off after 5 s without ACPI shutdown"
    finally:
        midclt(daemon, "call", "vm.delete", str(created["id"]), '{"force": true}')
