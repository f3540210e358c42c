"""vm.device.pool_choices: the pools a new DISK volume may go to, the configured one first."""
from __future__ import annotations

from tests.support import Daemon, Rpc


async def test_pool_choices_lists_the_configured_pool_first(daemon: Daemon, unix_rpc: Rpc) -> None:
    choices = await unix_rpc.call("vm.device.pool_choices")
    assert list(choices)[0] == daemon.pool and choices[daemon.pool] == daemon.pool
    vm = await unix_rpc.call("vm.create", {"name": "poolchoice", "memory": 64, "autostart": False, "devices": [
        {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/poolchoice-disk0",
                        "zvol_volsize": 2**20}}]})
    try:
        assert vm["devices"][0]["attributes"]["zvol_name"] == f"{daemon.pool}/poolchoice-disk0"
    finally:
        await unix_rpc.call("vm.delete", vm["id"], {"zvols": True})


async def test_pool_choices_needs_a_role(daemon: Daemon, tcp_rpc: Rpc) -> None:
    error = await tcp_rpc.request("vm.device.pool_choices")
    assert error["error"]["data"]["error"] == 207  # ENOTAUTHENTICATED
