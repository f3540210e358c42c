"""Intent records of volumes and files (a real SQLite file, libvirt's test driver): what start-up removes and what
it leaves alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Callable

import libvirt
import pytest

from middlewared.datastore import Datastore
from middlewared.plugins.vm_device import intents as I

POOL = "default-pool"  # the test driver's pool


class DriverHypervisor:
    """Hypervisor.run over a libvirt test:///default connection (in the calling thread)."""

    def __init__(self) -> None:
        self.conn = libvirt.open("test:///default")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.conn, *args)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Datastore]:
    ds = Datastore(str(tmp_path / "db.sqlite"))
    await ds.open()
    yield ds
    await ds.close()


def make_volume(hv: DriverHypervisor, name: str) -> None:
    hv.conn.storagePoolLookupByName(POOL).createXML(f"<volume><name>{name}</name><capacity>1024</capacity></volume>")


def volume_names(hv: DriverHypervisor) -> set[str]:
    return {v.name() for v in hv.conn.storagePoolLookupByName(POOL).listAllVolumes(0)}


async def test_clean_up_removes_only_unowned_leftovers_of_earlier_lives(db: Datastore, tmp_path: Path) -> None:
    hv = DriverHypervisor()
    earlier = I.Intents(db)
    for name in ("lost", "owned", "never-made"):
        await earlier.begin(I.Leftover(I.VOLUME, f"{POOL}/{name}"))
    for name in ("lost", "owned", "made-by-hand"):
        make_volume(hv, name)
    lost_file = tmp_path / "lost.img"
    lost_file.write_bytes(b"x")
    await earlier.begin(I.Leftover(I.FILE, str(lost_file)))
    lost_tree = tmp_path / ".work"
    (lost_tree / "sub").mkdir(parents=True)
    (lost_tree / "sub" / "disk0").write_bytes(b"x")
    await earlier.begin(I.Leftover(I.TREE, str(lost_tree)))
    now = I.Intents(db)
    # A write of this life in progress: its volume is no leftover yet.
    await now.begin(I.Leftover(I.VOLUME, f"{POOL}/in-progress"))
    make_volume(hv, "in-progress")

    outside = tmp_path.parent / f"{tmp_path.name}-outside.img"
    outside.write_bytes(b"x")
    await earlier.begin(I.Leftover(I.FILE, str(outside)))  # not the daemon's to remove
    removed = await now.clean_up(hv, {f"{POOL}/owned"}, None, [str(tmp_path)])  # type: ignore[arg-type]
    assert outside.exists()
    outside.unlink()
    assert set(removed) == {f"{POOL}/lost", str(lost_file), str(lost_tree)}
    assert not lost_tree.exists()
    assert volume_names(hv) >= {"owned", "made-by-hand", "in-progress"} and "lost" not in volume_names(hv)
    assert not lost_file.exists()
    left = await db.fetchall("SELECT target FROM storage_intent")
    assert [r["target"] for r in left] == [f"{POOL}/in-progress"]


async def test_a_volume_a_domain_uses_is_kept(db: Datastore) -> None:
    hv = DriverHypervisor()
    make_volume(hv, "used")
    await I.Intents(db).begin(I.Leftover(I.VOLUME, f"{POOL}/used"))
    hv.conn.defineXML(f"""<domain type="test"><name>user-of-used</name><memory>1024</memory>
      <os><type>hvm</type></os><devices><disk type="volume" device="disk">
      <source pool="{POOL}" volume="used"/><target dev="vda"/></disk></devices></domain>""")
    assert await I.Intents(db).clean_up(hv, set(), "some-instance", ["/"]) == []  # type: ignore[arg-type]
    assert "used" in volume_names(hv)
    assert await db.fetchall("SELECT * FROM storage_intent") == []


async def test_scratch_directory(db: Datastore, tmp_path: Path) -> None:
    intents = I.Intents(db)
    with pytest.raises(RuntimeError):
        async with intents.scratch(str(tmp_path / "work")):
            (tmp_path / "work" / "part").write_bytes(b"x")
            assert [r["kind"] for r in await db.fetchall("SELECT kind FROM storage_intent")] == [I.TREE]
            raise RuntimeError("abort")
    assert not (tmp_path / "work").exists() and await db.fetchall("SELECT * FROM storage_intent") == []
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        async with intents.scratch(str(tmp_path / "taken")):
            pass
    assert (tmp_path / "taken").exists() and await db.fetchall("SELECT * FROM storage_intent") == []


async def test_making_forgets_the_intent_when_the_body_fails(db: Datastore) -> None:
    intents = I.Intents(db)
    with pytest.raises(RuntimeError):
        async with intents.making(I.Leftover(I.VOLUME, f"{POOL}/x")):
            assert len(await db.fetchall("SELECT * FROM storage_intent")) == 1
            raise RuntimeError("volume exists")
    assert await db.fetchall("SELECT * FROM storage_intent") == []
    async with intents.making(I.Leftover(I.VOLUME, f"{POOL}/y")):
        pass
    # A row naming it claims it, in its own transaction.
    await db.transaction(lambda conn: I.claim(conn, [{"dtype": "DISK", "zvol_name": f"{POOL}/y", "path": None}]))
    assert await db.fetchall("SELECT * FROM storage_intent") == []
