"""Jobs over the wire: legacy and new-style results, events with message_ids, abort, wait, downloads."""
from __future__ import annotations

import aiohttp
import pytest

from tests.support import Daemon, Rpc, RpcError


async def test_legacy_job_returns_id_and_events(unix_rpc: Rpc) -> None:
    await unix_rpc.call("core.subscribe", "core.get_jobs")
    job_id = await unix_rpc.call("core.bulk", "core.ping", [[]])
    assert isinstance(job_id, int)
    added = await unix_rpc.next_event(lambda e: e["params"]["msg"] == "added" and e["params"]["id"] == job_id)
    assert added["params"]["collection"] == "core.get_jobs"
    assert added["params"]["fields"]["message_ids"]
    done = await unix_rpc.next_event(lambda e: e["params"]["id"] == job_id
                                     and e["params"]["fields"]["state"] == "SUCCESS")
    fields = done["params"]["fields"]
    assert fields["progress"]["percent"] == 100 and fields["result"][0]["result"] == "pong"
    assert fields["time_finished"]["$date"] >= fields["time_started"]["$date"]


async def test_new_style_job_answers_with_result_and_message_ids(unix_rpc: Rpc) -> None:
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    await unix_rpc.call("core.subscribe", "core.get_jobs")
    reply = await unix_rpc.request("core.bulk", "core.ping", [[]])
    assert reply["result"][0]["result"] == "pong"
    ev = await unix_rpc.next_event(lambda e: e["params"]["msg"] == "added")
    assert ev["params"]["fields"]["message_ids"] == [reply["id"]]


async def test_job_failure_is_reported(unix_rpc: Rpc) -> None:
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.job_wait", 999999)
    assert e.value.errno == 2 and e.value.reason == "[ENOENT] Job with id 999999 does not exist"


async def test_get_jobs_filters(unix_rpc: Rpc) -> None:
    job_id = await unix_rpc.call("core.bulk", "core.ping", [[]])
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    await unix_rpc.call("core.job_wait", job_id)
    jobs = await unix_rpc.call("core.get_jobs", [["id", "=", job_id]])
    assert len(jobs) == 1 and jobs[0]["state"] == "SUCCESS" and jobs[0]["method"] == "core.bulk"
    assert await unix_rpc.call("core.get_jobs", [["id", "=", job_id]], {"count": True}) == 1
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.get_jobs", [["id", "<>", 1]])
    assert e.value.code == -32602 and e.value.extra[0][0] == "filters"


async def test_job_abort_unknown(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.job_abort", 424242)
    assert e.value.code == -32001 and e.value.errno == 2


async def test_download_requires_output_pipe(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.download", "core.bulk", [], "x")
    assert e.value.code == -32602 and e.value.extra[0][0] == "method"


async def test_download_bad_token(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{daemon.port}/_download/1?auth_token=nope") as r:
            assert r.status == 403


async def test_pipe_jobs_need_core_download(unix_rpc: Rpc, vm: dict[str, object]) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.log_file_download", vm["id"])
    assert e.value.code == -32001 and "core.download" in e.value.reason


async def test_download_token_is_single_use(daemon: Daemon, unix_rpc: Rpc, vm: dict[str, object]) -> None:
    job_id, url = await unix_rpc.call("core.download", "vm.log_file_download", [vm["id"]], "qemu.log")
    assert url.startswith(f"/_download/{job_id}?auth_token=")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{daemon.port}{url}") as r:
            assert r.status == 200
            assert 'filename="qemu.log"' in r.headers["Content-Disposition"]
            await r.read()
        async with s.get(f"http://127.0.0.1:{daemon.port}{url}") as r:
            assert r.status == 403


async def test_abort_running_job(unix_rpc: Rpc, vm: dict[str, object]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    await unix_rpc.call("core.subscribe", "core.get_jobs")
    job_id = await unix_rpc.call("vm.stop", vm["id"])  # OVMF ignores ACPI: the job keeps waiting
    await unix_rpc.next_event(lambda e: e["params"]["id"] == job_id and e["params"]["fields"]["state"] == "RUNNING")
    assert await unix_rpc.call("core.job_abort", job_id) is None
    ev = await unix_rpc.next_event(lambda e: e["params"]["id"] == job_id
                                   and e["params"]["fields"]["state"] == "ABORTED")
    assert ev["params"]["fields"]["time_finished"] is not None
    await unix_rpc.call("vm.poweroff", vm["id"])
