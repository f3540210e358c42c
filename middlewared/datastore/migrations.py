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
    Migration(3, "accounts, API keys, VM groups, scoped grants, audit", (
        """CREATE TABLE account_user (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE,
            full_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            locked INTEGER NOT NULL DEFAULT 0,
            builtin INTEGER NOT NULL DEFAULT 0,
            roles TEXT NOT NULL DEFAULT '[]'
        )""",
        """CREATE TABLE account_group (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            builtin INTEGER NOT NULL DEFAULT 0,
            roles TEXT NOT NULL DEFAULT '[]'
        )""",
        """CREATE TABLE account_membership (
            user_id INTEGER NOT NULL REFERENCES account_user (id) ON DELETE CASCADE,
            group_id INTEGER NOT NULL REFERENCES account_group (id) ON DELETE CASCADE,
            PRIMARY KEY (user_id, group_id)
        )""",
        # root has no password until one is set (user.set_root_password); uid 0 on the unix socket
        # is root regardless.
        "INSERT INTO account_user (id, username, full_name, builtin, roles)"
        " VALUES (1, 'root', 'root', 1, '[\"FULL_ADMIN\"]')",
        "INSERT INTO account_group (name, builtin, roles) VALUES"
        " ('builtin_administrators', 1, '[\"FULL_ADMIN\"]'),"
        " ('builtin_readonly_administrators', 1, '[\"READONLY_ADMIN\"]')",
        """CREATE TABLE api_key (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES account_user (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            salt TEXT NOT NULL, iterations INTEGER NOT NULL,
            stored_key TEXT NOT NULL, server_key TEXT NOT NULL,
            created_at REAL NOT NULL, expires_at REAL,
            UNIQUE (user_id, name)
        )""",
        """CREATE TABLE vm_group (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            parent INTEGER REFERENCES vm_group (id) ON DELETE RESTRICT,
            description TEXT NOT NULL DEFAULT ''
        )""",
        # NULL parents are distinct for UNIQUE, hence the expression index.
        "CREATE UNIQUE INDEX vm_group_name ON vm_group (IFNULL(parent, 0), name)",
        """CREATE TABLE vm_group_member (
            vm INTEGER PRIMARY KEY REFERENCES vm_vm (id) ON DELETE CASCADE,
            vm_group INTEGER NOT NULL REFERENCES vm_group (id) ON DELETE CASCADE
        )""",
        """CREATE TABLE acl_grant (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER REFERENCES account_user (id) ON DELETE CASCADE,
            group_id INTEGER REFERENCES account_group (id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            vm_group INTEGER REFERENCES vm_group (id) ON DELETE CASCADE,
            vm INTEGER REFERENCES vm_vm (id) ON DELETE CASCADE,
            CHECK ((user_id IS NULL) != (group_id IS NULL)),
            CHECK ((vm_group IS NULL) != (vm IS NULL))
        )""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp REAL NOT NULL,
            event TEXT NOT NULL,
            username TEXT,
            origin TEXT NOT NULL,
            session TEXT,
            method TEXT,
            params TEXT NOT NULL DEFAULT '[]',
            success INTEGER NOT NULL,
            error TEXT
        )""",
    )),
    # Names this daemon instance in the <metadata> of every domain it defines, so that start-up
    # reconciliation touches only its own domains on a libvirtd other daemons share. A version 4
    # UUID, made once here so it never changes afterwards.
    Migration(4, "daemon instance UUID", (
        "INSERT INTO settings (key, value) VALUES ('instance_uuid', lower(hex(randomblob(4))) || '-'"
        " || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'"
        " || substr('89ab', 1 + abs(random()) % 4, 1) || substr(lower(hex(randomblob(2))), 2) || '-'"
        " || lower(hex(randomblob(6))))",
    )),
    Migration(5, "vm snapshots", (
        # One row per node of a VM's snapshot tree; `tag` names the qcow2 internal snapshots and the state files.
        """CREATE TABLE vm_snapshot (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            vm INTEGER NOT NULL REFERENCES vm_vm (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            parent INTEGER REFERENCES vm_snapshot (id) ON DELETE SET NULL,
            created REAL NOT NULL,
            memory INTEGER NOT NULL,
            vm_state TEXT NOT NULL,
            current INTEGER NOT NULL DEFAULT 0,
            tag TEXT NOT NULL UNIQUE,
            disks TEXT NOT NULL,
            size INTEGER NOT NULL,
            memory_size INTEGER NOT NULL,
            held_ms REAL,
            UNIQUE (vm, name)
        )""",
        "CREATE INDEX vm_snapshot_vm ON vm_snapshot (vm)",
    )),
    Migration(6, "VM group quotas; Velocity media pools, media and VM extras", (
        # null: no quota of the group's own (its ancestors' still apply).
        "ALTER TABLE vm_group ADD COLUMN quota_cpus INTEGER",
        "ALTER TABLE vm_group ADD COLUMN quota_memory_mib INTEGER",
        # vm_group NULL stands for Velocity's root group (the whole host).
        """CREATE TABLE velocity_pool_grant (
            vm_group INTEGER REFERENCES vm_group (id) ON DELETE CASCADE,
            mpid INTEGER NOT NULL,
            quota INTEGER NOT NULL,
            write INTEGER NOT NULL,
            manage INTEGER NOT NULL
        )""",
        "CREATE UNIQUE INDEX velocity_pool_grant_key ON velocity_pool_grant (IFNULL(vm_group, 0), mpid)",
        """CREATE TABLE velocity_media (
            mid TEXT PRIMARY KEY,
            mpid INTEGER NOT NULL,
            vm_group INTEGER REFERENCES vm_group (id) ON DELETE RESTRICT,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            readonly INTEGER NOT NULL,
            size INTEGER NOT NULL,
            UNIQUE (mpid, name)
        )""",
        """CREATE TABLE velocity_vm (
            vm INTEGER PRIMARY KEY REFERENCES vm_vm (id) ON DELETE CASCADE,
            rosetta INTEGER NOT NULL DEFAULT 0,
            displays TEXT NOT NULL DEFAULT '[]'
        )""",
    )),
    # Which API a record came through (TrueNAS' audit field): MIDDLEWARE for JSON-RPC, VELOCITY for REST.
    Migration(7, "audit log service", (
        "ALTER TABLE audit_log ADD COLUMN service TEXT NOT NULL DEFAULT 'MIDDLEWARE'",
    )),
    # Templates and where clones came from. A linked clone's disks are overlays on its template's volumes: the
    # trigger keeps such a template's row, whatever path a delete takes (the API refuses first, naming the clones).
    Migration(8, "vm templates and clone sources", (
        "ALTER TABLE vm_vm ADD COLUMN template INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE vm_clone (
            vm INTEGER PRIMARY KEY REFERENCES vm_vm (id) ON DELETE CASCADE,
            source INTEGER REFERENCES vm_vm (id) ON DELETE SET NULL,
            linked INTEGER NOT NULL
        )""",
        "CREATE INDEX vm_clone_source ON vm_clone (source)",
        """CREATE TRIGGER vm_template_in_use BEFORE DELETE ON vm_vm
            WHEN EXISTS (SELECT 1 FROM vm_clone WHERE source = OLD.id AND linked)
            BEGIN SELECT RAISE(ABORT, 'the template has linked clones'); END""",
    )),
    # Volumes and files a write makes before the row owning them commits (plugins/vm_device/intents.py): what
    # a daemon killed in between leaves is found and removed at the next start.
    Migration(9, "storage intents", (
        """CREATE TABLE storage_intent (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            life TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX storage_intent_target ON storage_intent (target)",
    )),
)
