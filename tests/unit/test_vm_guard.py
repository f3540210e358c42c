"""The per-VM guard: shared holders overlap, an exclusive one runs alone, and waiters keep their order."""
from __future__ import annotations

import asyncio

from middlewared.plugins.vm.guard import VMGuard, VMGuards


async def test_shared_holders_overlap_and_exclusive_waits_for_them() -> None:
    guard, order = VMGuard(), []

    async def shared(name: str, hold: float) -> None:
        async with guard.shared():
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    async def exclusive(name: str) -> None:
        async with guard.exclusive():
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    first = asyncio.create_task(shared("stop", 0.05))
    second = asyncio.create_task(shared("poweroff", 0.01))
    await asyncio.sleep(0)
    revert = asyncio.create_task(exclusive("revert"))
    await asyncio.sleep(0)
    # A start issued while the revert waits queues behind it: starts cannot starve a snapshot.
    start = asyncio.create_task(shared("start", 0))
    await asyncio.gather(first, second, revert, start)
    assert order[:2] == ["stop in", "poweroff in"]
    assert order.index("revert in") > order.index("stop out")
    assert order.index("start in") == order.index("revert out") + 1


async def test_a_cancelled_exclusive_waiter_releases_the_queue() -> None:
    guard = VMGuard()
    async with guard.shared():
        waiter = asyncio.create_task(guard.exclusive().__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        # Without the waiter, another shared caller gets in at once.
        async with asyncio.timeout(1):
            async with guard.shared():
                pass


async def test_guards_are_per_vm() -> None:
    guards = VMGuards()
    assert guards(1) is guards(1) and guards(1) is not guards(2)
    async with guards(1).exclusive():
        async with asyncio.timeout(1):
            async with guards(2).exclusive():
                pass
