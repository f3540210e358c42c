# Sourced by the init scripts: what the guest tells of its disks.

# The bus a block device is on (usb, sata, virtio, or other), from its device's place in sysfs.
disk_bus() {
    case $(readlink -f "$1/device") in
        */usb[0-9]*) echo usb ;;
        */ata[0-9]*) echo sata ;;
        */virtio[0-9]*) echo virtio ;;
        *) echo other ;;
    esac
}

# The nearest USB device above a sysfs path (the one with an idVendor), or nothing.
usb_device() {
    local dir
    dir=$(readlink -f "$1")
    while [ "${#dir}" -gt 4 ]; do   # up to /sys
        [ -r "$dir/idVendor" ] && { echo "$dir"; return 0; }
        dir=${dir%/*}
    done
}

# A block device's serial number, blanks trimmed. virtio-blk has /sys/block/X/serial; SCSI and SATA disks give
# it in VPD page 0x80 (after a 4-byte header); usb-storage reads no VPD pages (the kernel skips them for USB
# devices), so a USB disk's serial is its USB device's serial string, which QEMU sets from the disk's.
disk_serial() {
    local serial usb
    if [ -r "$1/serial" ]; then
        serial=$(cat "$1/serial")
    elif [ -r "$1/device/vpd_pg80" ]; then
        serial=$(tail -c +5 "$1/device/vpd_pg80" | tr -d '\000')
    fi
    if [ -z "$serial" ]; then
        usb=$(usb_device "$1/device")
        [ -n "$usb" ] && [ -r "$usb/serial" ] && serial=$(cat "$usb/serial")
    fi
    echo "$serial" | sed 's/^ *//; s/ *$//'
}
