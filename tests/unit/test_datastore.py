"""The SQLite datastore: WAL, foreign keys, migrations, transactions that roll back."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from middlewared.datastore import Datastore
from middlewared.datastore.migrations import Migration


async def test_open_migrate_and_rollback(tmp_path: Path) -> None:
    ds = Datastore(str(tmp_path / "sub" / "db.sqlite"))
    await ds.open()
    assert (await ds.fetchall("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
    assert (await ds.fetchall("PRAGMA foreign_keys"))[0]["foreign_keys"] == 1
    versions = [r["version"] for r in await ds.fetchall("SELECT version FROM migrations ORDER BY version")]
    assert versions == list(range(1, len(versions) + 1))

    def fail(conn: object) -> None:
        conn.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')")  # type: ignore[attr-defined]
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        await ds.transaction(fail)
    assert await ds.fetchall("SELECT * FROM settings WHERE key = 'a'") == []
    await ds.close()
    # Reopening applies nothing twice.
    ds = Datastore(str(tmp_path / "sub" / "db.sqlite"))
    await ds.open()
    await ds.close()


async def test_instance_uuid_made_once(tmp_path: Path) -> None:
    """The daemon instance's UUID is a version 4 UUID, different per database, unchanged on reopening."""
    values = []
    for path in ("a.sqlite", "a.sqlite", "b.sqlite"):
        ds = Datastore(str(tmp_path / path))
        await ds.open()
        rows = await ds.fetchall("SELECT value FROM settings WHERE key = 'instance_uuid'")
        values.append(rows[0]["value"])
        await ds.close()
    assert values[0] == values[1] != values[2]
    assert all(str(uuid.UUID(v)) == v and uuid.UUID(v).version == 4 for v in values)


async def test_failed_migration_leaves_nothing(tmp_path: Path) -> None:
    bad = (Migration(1, "ok", ("CREATE TABLE a (x)",)), Migration(2, "bad", ("CREATE TABLE b (x)", "NOPE")))
    ds = Datastore(str(tmp_path / "db.sqlite"), bad)
    with pytest.raises(Exception):
        await ds.open()
    names = [r[0] for r in ds.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert "a" in names and "b" not in names
    await ds.close()
