"""NICs on libvirt networks that are not running: not offered, refused at create, a clear error at start."""
from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.test_vm_device_fixtures import expect_call_error, vm_with
from tests.support import Daemon, Rpc, RpcError, unique


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=check,
                          timeout=60)


@pytest.fixture
def network(libvirtd: str, tmp_path: Path) -> Iterator[str]:
    """An isolated libvirt network (a bridge, no addresses) of its own, defined but not started; removed after."""
    name = unique("mwnet")
    xml = tmp_path / "net.xml"
    xml.write_text(f"<network><name>{name}</name><bridge name='mwnb{uuid.uuid4().hex[:8]}' stp='on' delay='0'/>"
                   "</network>")
    virsh("net-define", str(xml))
    yield name
    virsh("net-destroy", name, check=False)
    virsh("net-undefine", name, check=False)


async def test_inactive_network_is_no_choice_and_refused(unix_rpc: Rpc, daemon: Daemon, network: str) -> None:
    assert network not in await unix_rpc.call("vm.device.nic_attach_choices")
    nic = {"dtype": "NIC", "type": "VIRTIO", "nic_attach": network}
    async with vm_with(unix_rpc) as vm:
        with pytest.raises(RpcError) as refused:
            await unix_rpc.call("vm.device.create", {"vm": vm["id"], "attributes": nic})
        assert refused.value.code == -32602
        [(attribute, message, code)] = refused.value.extra
        assert attribute.endswith("attributes.nic_attach") and code == errno.ENODEV
        assert f"libvirt network {network} is not active" in message
        assert (await unix_rpc.call("vm.get_instance", vm["id"]))["devices"] == []
    with pytest.raises(RpcError) as refused:
        await unix_rpc.call("vm.create", {"name": unique("net"), "memory": 64, "devices": [{"attributes": nic}]})
    assert refused.value.code == -32602 and "is not active" in refused.value.extra[0][1]
    virsh("net-start", network)
    assert network in await unix_rpc.call("vm.device.nic_attach_choices")


async def test_start_after_the_network_went_down(unix_rpc: Rpc, daemon: Daemon, network: str) -> None:
    virsh("net-start", network)
    async with vm_with(unix_rpc, {"dtype": "NIC", "type": "VIRTIO", "nic_attach": network}) as vm:
        virsh("net-destroy", network)
        log_size = len(daemon.log())
        error = await expect_call_error(unix_rpc, "vm.start", vm["id"])
        assert error.errno == errno.ENODEV
        assert f"NIC device {vm['devices'][0]['id']} ({network}): libvirt network {network} is not active" in (
            error.reason)
        assert "Traceback" not in daemon.log()[log_size:]
        # The VM stays editable meanwhile: only a new nic_attach must be an active network.
        updated = await unix_rpc.call("vm.update", vm["id"], {"description": "waiting for its network"})
        assert updated["description"] == "waiting for its network"
        assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "STOPPED"
