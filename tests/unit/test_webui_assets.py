"""The web UI's served npm files are also installed with the package (setup.cfg package_data)."""
from __future__ import annotations

from setuptools.config.setupcfg import read_configuration

from middlewared.plugins.webui.assets import VENDOR
from tests.support import ROOT


def test_every_served_vendor_file_is_package_data() -> None:
    data = read_configuration(str(ROOT / "setup.cfg"))["options"]["package_data"]["middlewared.plugins.webui"]
    assert {f"node_modules/{rel}" for rel in VENDOR.values()} <= set(data)
