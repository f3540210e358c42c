"""Unit fixtures shared by several files."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from middlewared.config import Config
from middlewared.datastore import Datastore
from middlewared.middleware import Middleware
from middlewared.plugins import PLUGINS
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.service import VMService


@pytest.fixture
async def middleware(tmp_path: Path) -> AsyncIterator[Middleware]:
    """Every plugin's services made but none set up; a database file; libvirt is the test driver."""
    mw = Middleware(Config(), PLUGINS)
    mw.datastore = Datastore(str(tmp_path / "db.sqlite"))
    await mw.datastore.open()
    vms = mw.service_of(VMService)
    vms.hypervisor = Hypervisor("test:///default")
    await vms.hypervisor.start()
    yield mw
    await vms.hypervisor.stop()
    await mw.datastore.close()
