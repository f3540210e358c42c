"""Creates racing for one name: one wins, the others get the validation error a late duplicate gets."""
from __future__ import annotations

import asyncio
import errno
from uuid import uuid4

import pytest

from tests.support import Daemon, RpcError, connect, unique


async def create(daemon: Daemon, data: dict[str, object]) -> dict[str, object] | RpcError:
    async with connect(daemon) as rpc:
        try:
            result: dict[str, object] = await rpc.call("vm.create", data)
            return result
        except RpcError as e:
            return e


@pytest.mark.parametrize("field", ["name", "uuid"])
async def test_concurrent_creates_of_one_name_or_uuid(daemon: Daemon, field: str) -> None:
    name, uuid = unique("race"), str(uuid4())
    datas = [{"name": name if field == "name" else f"{name}{i}", "memory": 64, "autostart": False,
              **({"uuid": uuid} if field == "uuid" else {})} for i in range(8)]
    results = await asyncio.gather(*(create(daemon, d) for d in datas))
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, RpcError)]
    try:
        assert len(won) == 1 and len(lost) == 7
        for e in lost:
            assert e.code == -32602 and e.extra == [[f"vm_create.{field}", e.extra[0][1], errno.EEXIST]], e.error
    finally:
        async with connect(daemon) as rpc:
            for vm in won:
                await rpc.call("vm.delete", vm["id"])
