"""middlewared: a TrueNAS-compatible daemon that manages QEMU/KVM virtual machines through libvirt."""
