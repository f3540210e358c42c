"""OVA archives for tests: an OVF descriptor like VMware and VirtualBox write, and VMDK disks made with qemu-img."""
from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import Sequence

ITEM = """<Item><rasd:ElementName>{name}</rasd:ElementName><rasd:InstanceID>{id}</rasd:InstanceID>
<rasd:ResourceType>{kind}</rasd:ResourceType>{extra}</Item>"""


def descriptor(name: str, vcpus: int, memory_mib: int, disks: Sequence[tuple[str, int]], nics: Sequence[str],
               extras: Sequence[tuple[str, str]] = ()) -> str:
    """An OVF 1.0 descriptor: disks as (file name, capacity in bytes), NICs by subtype, extra (name, type) items."""
    files = "".join(f'<File ovf:href="{f}" ovf:id="file{i}"/>' for i, (f, _) in enumerate(disks))
    disk_section = "".join(f'<Disk ovf:capacity="{size >> 20}" ovf:capacityAllocationUnits="byte * 2^20" '
                           f'ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:format="http://www.vmware.com/'
                           f'interfaces/specifications/vmdk.html#streamOptimized"/>'
                           for i, (_, size) in enumerate(disks))
    items = [ITEM.format(name="virtual CPUs", id=1, kind=3,
                         extra=f"<rasd:VirtualQuantity>{vcpus}</rasd:VirtualQuantity>"),
             ITEM.format(name="Memory", id=2, kind=4,
                         extra="<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>"
                         f"<rasd:VirtualQuantity>{memory_mib}</rasd:VirtualQuantity>"),
             ITEM.format(name="SCSI controller", id=3, kind=6,
                         extra="<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>")]
    items += [ITEM.format(name=f"disk{i}", id=10 + i, kind=17, extra=f"<rasd:HostResource>ovf:/disk/vmdisk{i}"
                          "</rasd:HostResource><rasd:Parent>3</rasd:Parent>") for i in range(len(disks))]
    items += [ITEM.format(name=f"Network adapter {i}", id=20 + i, kind=10,
                          extra=f"<rasd:ResourceSubType>{model}</rasd:ResourceSubType>")
              for i, model in enumerate(nics)]
    items += [ITEM.format(name=n, id=30 + i, kind=k, extra="") for i, (n, k) in enumerate(extras)]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
<References>{files}</References>
<DiskSection><Info>Virtual disks</Info>{disk_section}</DiskSection>
<VirtualSystem ovf:id="{name}"><Info>A VM</Info><Name>{name}</Name>
<VirtualHardwareSection><Info>Hardware</Info>{''.join(items)}</VirtualHardwareSection>
</VirtualSystem></Envelope>"""


def make_ova(directory: Path, name: str, source_images: Sequence[Path], **kwargs: object) -> Path:
    """An .ova in directory holding the images (any qemu-img format) as streamOptimized VMDKs."""
    disks = []
    for i, image in enumerate(source_images):
        vmdk = directory / f"{name}-disk{i}.vmdk"
        subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(image), str(vmdk)],
                       check=True, capture_output=True)
        size = int(subprocess.run(["qemu-img", "info", "--output", "json", str(image)], check=True,
                                  capture_output=True, text=True).stdout.split('"virtual-size": ')[1].split(",")[0])
        disks.append((vmdk, size))
    ovf = directory / f"{name}.ovf"
    ovf.write_text(descriptor(name, disks=[(p.name, s) for p, s in disks], **kwargs))  # type: ignore[arg-type]
    ova = directory / f"{name}.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(ovf, arcname=ovf.name)
        for vmdk, _ in disks:
            tar.add(vmdk, arcname=vmdk.name)
    for path in [ovf, *(p for p, _ in disks)]:
        path.unlink()
    return ova
