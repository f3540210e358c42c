"""Every schema change of the database, in order. Append new migrations; never edit applied ones."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One versioned change: SQL statements applied in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "settings", (
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )),
    Migration(2, "vm and vm_device", (
        """CREATE TABLE vm_vm (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            vcpus INTEGER NOT NULL, cores INTEGER NOT NULL, threads INTEGER NOT NULL,
            memory INTEGER NOT NULL, min_memory INTEGER,
            autostart INTEGER NOT NULL, time TEXT NOT NULL,
            bootloader TEXT NOT NULL, bootloader_ovmf TEXT NOT NULL,
            cpu_mode TEXT NOT NULL, cpu_model TEXT, cpuset TEXT, nodeset TEXT,
            enable_cpu_topology_extension INTEGER NOT NULL, pin_vcpus INTEGER NOT NULL,
            hyperv_enlightenments INTEGER NOT NULL, shutdown_timeout INTEGER NOT NULL,
            hide_from_msr INTEGER NOT NULL, ensure_display_device INTEGER NOT NULL,
            suspend_on_snapshot INTEGER NOT NULL, trusted_platform_module INTEGER NOT NULL,
            enable_secure_boot INTEGER NOT NULL, arch_type TEXT, machine_type TEXT,
            uuid TEXT NOT NULL UNIQUE, command_line_args TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE vm_device (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            vm INTEGER NOT NULL REFERENCES vm_vm (id) ON DELETE CASCADE,
            dtype TEXT NOT NULL,
            attributes TEXT NOT NULL,
            "order" INTEGER
        )""",
        "CREATE INDEX vm_device_vm ON vm_device (vm)",
    )),
)
