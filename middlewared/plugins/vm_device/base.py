"""The base of every device type: its attribute schema, validation, XML and start-time availability."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from jsonschema import Draft202012Validator
from lxml import etree

from middlewared.errors import ValidationError
from middlewared.plugins.vm_device.model import MASK, Proposal, Slot
from middlewared.schema import apply_defaults, compile_schema, validation_errors

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check


class DeviceType:
    """One dtype: subclasses declare the class variables and override what they need."""

    dtype: ClassVar[str]
    description: ClassVar[str]
    # Attribute properties besides dtype (JSON Schema, each with a description and its default).
    properties: ClassVar[dict[str, Any]]
    required: ClassVar[tuple[str, ...]] = ()
    # Order given to a device created without one (upstream's read-time defaults, stored here).
    default_order: ClassVar[int] = 1002
    # Whether the device takes part in the boot order.
    bootable: ClassVar[bool] = False
    schema: ClassVar[dict[str, Any]]
    validator: ClassVar[Draft202012Validator]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "dtype" not in cls.__dict__:
            return
        cls.schema = {
            "type": "object", "description": cls.description, "additionalProperties": False,
            "required": ["dtype", *cls.required],
            "properties": {"dtype": {"const": cls.dtype, "description": "Device type."}, **cls.properties},
        }
        # Compiled at import: a broken schema is a start-up error.
        cls.validator = compile_schema(cls.schema)

    # -- validation ---------------------------------------------------------------------------
    def merge(self, old: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        """An update's attributes: the given ones over the stored ones; a masked secret keeps the stored one."""
        return {**old, **{k: v for k, v in given.items() if not (v == MASK and k in old)}}

    def schema_errors(self, attributes: Mapping[str, Any], prefix: str) -> list[ValidationError]:
        """Schema errors of complete attributes, with paths under prefix."""
        return validation_errors(self.validator, attributes, prefix)

    def with_defaults(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of attributes with every omitted property at its default."""
        result: dict[str, Any] = apply_defaults(self.schema, dict(attributes))
        return result

    async def normalize(self, p: Proposal, check: "Check") -> dict[str, Any]:
        """Check a proposal against the host and the other devices (errors into check) and return the
        attributes to store (generated values filled in); p is not changed."""
        return dict(p.attributes)

    def live_changeable(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether a change of a running VM's device can be applied to the running domain."""
        return False

    # -- XML and the host ----------------------------------------------------------------------
    def target_prefix(self, attributes: Mapping[str, Any]) -> str | None:
        """Guest disk name prefix (sd, vd) for disks; None for other devices."""
        return None

    def to_xml(self, attributes: Mapping[str, Any], slot: Slot) -> list[etree._Element]:
        """The domain XML elements of the device (pure)."""
        raise NotImplementedError

    async def unavailable(self, attributes: Mapping[str, Any], host: "Host") -> list[str]:
        """Why the device cannot be used for a start now (empty: it can)."""
        return []

    def identity(self, attributes: Mapping[str, Any]) -> str:
        """What the device refers to on the host, for messages."""
        return ""

    def public(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes as API readers see them."""
        return dict(attributes)
