"""plugins/velocity/hostpaths.py: host paths in a client's error messages become media and pools, or go."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from middlewared.config import VelocityPool
from middlewared.plugins.velocity import hostpaths, mediastore

MID = "0b6f0c43-1f3e-4a52-8c8e-1f2d3c4b5a69"


@pytest.fixture
def velocity(monkeypatch: pytest.MonkeyPatch) -> Any:
    async def media(middleware: Any, mid: str | None = None, gid: int | None = None) -> list[dict[str, Any]]:
        return [{"mid": MID, "name": "debian.iso"}] if mid == MID else []
    monkeypatch.setattr(mediastore, "media", media)
    pools = [VelocityPool(1, "local", "/srv/velocity/pool1"), VelocityPool(2, "fast", "/srv/fast/")]
    return SimpleNamespace(middleware=SimpleNamespace(config=SimpleNamespace(velocity_pools=lambda: pools)))


async def test_a_media_file_is_named_by_mid_and_name(velocity: Any) -> None:
    message = f"The hypervisor refused: Cannot access storage file '/srv/velocity/pool1/{MID}' (as uid:64055)"
    assert await hostpaths.public(velocity, message) == \
        f"The hypervisor refused: Cannot access storage file 'medium {MID} ('debian.iso')' (as uid:64055)"


async def test_pools_unknown_files_and_other_host_paths(velocity: Any) -> None:
    message = ("/srv/fast is full; /srv/velocity/pool1/.upload-x1.part and /srv/velocity/pool1/gone.img: "
               "see /var/lib/libvirt/qemu/nvram/7_vm_VARS.fd.")
    assert await hostpaths.public(velocity, message) == \
        "pool 2 is full; an upload's file in pool 1 and (a host path): see (a host path)."


@pytest.mark.parametrize("message", [
    "No endpoint at /v/vm/nope", "Method not allowed: use PUT /m/media/upload", "cpus: 2/4 used", "and/or",
    "memory_mib: 512 > 256", "https://example.org/x", "Directory / is the root"])
async def test_route_paths_and_plain_text_are_kept(velocity: Any, message: str) -> None:
    assert await hostpaths.public(velocity, message) == message
