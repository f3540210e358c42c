"""Fixtures and helpers shared by the vm.device integration tests (this module holds no tests itself)."""
from __future__ import annotations

import os
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from tests.support import Daemon, Rpc, RpcError, unique

# Host-wide names, unique per test process so that two test runs on one host do not share them
# (interface names have at most 15 characters).
_TAG = os.getpid() % 10**7
BRIDGE = f"mwtbr{_TAG}"
DUMMY = f"mwtve{_TAG}"
NAT = f"mwtnat{_TAG}"
# Private, host-local subnets for the test NAT network: the first one no other network uses.
NAT_SUBNETS = range(250, 255)


def nat_xml(subnet: int) -> str:
    return (f"<network><name>{NAT}</name><forward mode='nat'/><bridge name='{NAT}b' stp='on' delay='0'/>"
            f"<ip address='192.168.{subnet}.1' netmask='255.255.255.0'/></network>")


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def virsh(*args: str) -> str:
    return run("virsh", "-c", "qemu:///system", *args)


@pytest.fixture(scope="module")
def storage(daemon: Daemon) -> Path:
    """The daemon's storage root, made searchable by the QEMU user (tempfile makes it private)."""
    for directory in (daemon.tmp, daemon.storage):
        os.chmod(directory, 0o755)
    return daemon.storage


@pytest.fixture
def media(storage: Path) -> Path:
    """A small file: QEMU takes any file as CD-ROM media."""
    path = storage / f"{unique('media')}.iso"
    path.write_bytes(b"\0" * 2048 * 32)
    return path


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    """A host bridge for NICs, removed afterwards."""
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "link", "set", BRIDGE, "up")
    yield BRIDGE
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


@pytest.fixture(scope="module")
def dummy() -> Iterator[str]:
    """A host interface that is not a bridge (NICs on it are macvtaps), removed afterwards.

    One end of a veth pair: this kernel has no dummy interfaces."""
    subprocess.run(["ip", "link", "del", DUMMY], capture_output=True)
    run("ip", "link", "add", DUMMY, "type", "veth", "peer", "name", f"{DUMMY}p")
    run("ip", "link", "set", DUMMY, "up")
    run("ip", "link", "set", f"{DUMMY}p", "up")
    yield DUMMY
    subprocess.run(["ip", "link", "del", DUMMY], capture_output=True)


@pytest.fixture(scope="module")
def nat_network(libvirtd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libvirt NAT network on a private subnet (192.168.250.0/24 unless taken), removed afterwards."""
    subprocess.run(["virsh", "-c", "qemu:///system", "net-destroy", NAT], capture_output=True)
    subprocess.run(["virsh", "-c", "qemu:///system", "net-undefine", NAT], capture_output=True)
    xml = tmp_path_factory.mktemp("net") / "nat.xml"
    for subnet in NAT_SUBNETS:
        xml.write_text(nat_xml(subnet))
        virsh("net-define", str(xml))
        if subprocess.run(["virsh", "-c", "qemu:///system", "net-start", NAT], capture_output=True).returncode == 0:
            break
        virsh("net-undefine", NAT)
    else:
        pytest.fail(f"no free subnet among 192.168.{NAT_SUBNETS.start}-{NAT_SUBNETS.stop - 1}.0/24")
    yield NAT
    subprocess.run(["virsh", "-c", "qemu:///system", "net-destroy", NAT], capture_output=True)
    subprocess.run(["virsh", "-c", "qemu:///system", "net-undefine", NAT], capture_output=True)


@asynccontextmanager
async def vm_with(rpc: Rpc, *attributes: dict[str, Any], **fields: Any) -> AsyncIterator[dict[str, Any]]:
    """A stopped VM with these devices, deleted (with its volumes) afterwards."""
    data = {"name": unique("dev"), "memory": 64, "autostart": False, "shutdown_timeout": 5, **fields,
            "devices": [{"attributes": a} for a in attributes]}
    vm = await rpc.call("vm.create", data)
    try:
        yield vm
    finally:
        try:
            await rpc.call("vm.delete", vm["id"], {"force": True, "zvols": True})
        except RpcError:
            pass


async def expect_invalid(rpc: Rpc, method: str, *params: Any) -> list[tuple[str, int]]:
    """Call, expect a validation error (-32602), return its (attribute, errno) pairs."""
    with pytest.raises(RpcError) as e:
        await rpc.call(method, *params)
    assert e.value.code == -32602, e.value.error
    return [(a, n) for a, _, n in e.value.extra]


async def expect_call_error(rpc: Rpc, method: str, *params: Any) -> RpcError:
    """Call, expect a CallError (-32001)."""
    with pytest.raises(RpcError) as e:
        await rpc.call(method, *params)
    assert e.value.code == -32001, e.value.error
    return e.value


def by_dtype(vm: dict[str, Any], dtype: str) -> list[dict[str, Any]]:
    """A VM entry's devices of one type."""
    return [d for d in vm["devices"] if d["attributes"]["dtype"] == dtype]


def volumes(pool: str) -> set[str]:
    """Names of the volumes of a libvirt pool."""
    virsh("pool-refresh", pool)
    lines = virsh("vol-list", pool).splitlines()[2:]
    return {line.split()[0] for line in lines if line.strip()}
