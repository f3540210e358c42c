"""What libvirt's capabilities say: machine types per architecture and their vCPU limits."""
from __future__ import annotations

from middlewared.plugins.vm.capabilities import arch_machines, machine_max_cpus

CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <domain type='qemu'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
</capabilities>"""


def test_arch_machines() -> None:
    assert arch_machines(CAPABILITIES) == {
        "i686": ["pc-i440fx-7.2", "pc"],
        "x86_64": ["pc-i440fx-7.2", "pc", "pc-q35-7.2", "q35"],
    }


def test_machine_max_cpus() -> None:
    assert machine_max_cpus(CAPABILITIES, "x86_64") == 288
    assert machine_max_cpus(CAPABILITIES, "x86_64", "pc") == 255
    assert machine_max_cpus(CAPABILITIES, "i686") is None
    assert machine_max_cpus(CAPABILITIES, "aarch64") is None
