"""The base of every device type: a frozen dataclass of the device's typed attributes, carrying its dtype's
schema, validation, XML, start-time checks and the rules of clone and delete."""
from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Mapping, Self

from jsonschema import Draft202012Validator
from lxml import etree

from middlewared.errors import ValidationError
from middlewared.middleware import SECRET
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.schema import apply_defaults, compile_schema, validation_errors

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.intents import Leftover
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check
    from middlewared.plugins.vm_device.resize import Storage


@dataclasses.dataclass(frozen=True, kw_only=True)
class Device:
    """One device's attributes, typed; subclasses declare the class variables and their fields."""

    dtype: ClassVar[str]
    description: ClassVar[str]
    # Attribute properties besides dtype (JSON Schema, each with a description and its default).
    properties: ClassVar[dict[str, Any]]
    required: ClassVar[tuple[str, ...]] = ()
    # Order given to a device created without one (TrueNAS's read-time defaults, stored here).
    default_order: ClassVar[int] = 1002
    # Whether the device takes part in the boot order.
    bootable: ClassVar[bool] = False
    # Whether the device needs a guest USB controller even when no USB device asks for a model.
    needs_usb: ClassVar[bool] = False
    # Attributes a clone's device gets anew (null: chosen again when the clone is created).
    regenerated: ClassVar[tuple[str, ...]] = ()
    # The vm.device.delete option that also removes the device's storage ("zvol", "raw_file"), if any.
    delete_option: ClassVar[str | None] = None
    # Whether the device owns a disk image that vm.device.resize may grow and vm.device.export_disk copy.
    has_image: ClassVar[bool] = False
    schema: ClassVar[dict[str, Any]]
    validator: ClassVar[Draft202012Validator]
    _converters: ClassVar[dict[str, Callable[[Any], Any]]]

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

    # -- validation: attributes as the API gives them, before typed values exist ---------------------
    @classmethod
    def merge(cls, old: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        """An update's attributes: the given ones over the stored ones; a masked secret keeps the stored one."""
        return {**old, **{k: v for k, v in given.items() if not (v == SECRET and k in old)}}

    @classmethod
    def schema_errors(cls, attributes: Mapping[str, Any], prefix: str) -> list[ValidationError]:
        """Schema errors of complete attributes, with paths under prefix."""
        return validation_errors(cls.validator, attributes, prefix)

    @classmethod
    def with_defaults(cls, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of attributes with every omitted property at its default."""
        result: dict[str, Any] = apply_defaults(cls.schema, dict(attributes))
        return result

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        """Check a proposal against the host and the other devices (errors into check) and return the
        attributes to store (generated values filled in); p is not changed."""
        return dict(p.attributes)

    @classmethod
    def claims(cls, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        """What the device holds that no other device may hold at the same time (a MAC, display ports, a volume),
        each value tagged with what it is; validation looks them up in an index instead of scanning every VM."""
        return frozenset()

    @classmethod
    def public(cls, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes as API readers see them."""
        return dict(attributes)

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> Self:
        """The typed device of validated (or stored) attributes; omitted ones take their defaults."""
        if "_converters" not in cls.__dict__:
            cls._converters = _converters(cls)
        full = cls.with_defaults(attributes)
        return cls(**{name: convert(full.get(name)) for name, convert in cls._converters.items()})

    # -- typed: XML, placement, start-time checks --------------------------------------------------
    def to_xml(self, slot: Slot) -> list[etree._Element]:
        """The domain XML elements of the device (pure)."""
        raise NotImplementedError

    def target_prefix(self) -> str | None:
        """Guest disk name prefix (sd, vd) for disks; None for other devices."""
        return None

    def usb_controller(self) -> str | None:
        """The model of the guest USB controller the device is plugged into (USB devices)."""
        return None

    def live_changeable(self, new: Self) -> bool:
        """Whether this device of a running VM can become `new` on the running domain."""
        return False

    async def unavailable(self, host: "Host") -> list[str]:
        """Why the device cannot be used for a start now (empty: it can)."""
        return []

    def identity(self) -> str:
        """What the device refers to on the host, for messages."""
        return ""

    # -- clone and delete ---------------------------------------------------------------------------
    def volume(self) -> str | None:
        """The storage volume ("<pool>/<volume>") the device owns, removed with vm.delete's zvols."""
        return None

    async def clone_attributes(self, attributes: Mapping[str, Any], new_name: str, host: "Host",
                               linked: bool) -> dict[str, Any] | None:
        """The attributes of this device in a clone named new_name (None: left out of the clone); `linked`: a
        linked clone of a template, whose disks are overlays on the template's (CallError: this device has none)."""
        return {**attributes, **{key: None for key in self.regenerated}}

    async def image(self, host: "Host") -> "Storage":
        """The disk image the device owns, its size and the free space where it lives (has_image types)."""
        raise NotImplementedError(f"{self.dtype} devices have no disk image")

    def resized(self, attributes: Mapping[str, Any], size: int) -> dict[str, Any] | None:
        """Attributes to store once the image has grown to size bytes (None: nothing to store)."""
        return None

    async def storage_missing(self, host: "Host") -> str | None:
        """Why the storage delete_option would remove is not there (None: it is)."""
        return None

    async def remove_storage(self, host: "Host") -> None:
        """Remove the storage delete_option names (CallError on failure)."""
        return None

    def storage_leftover(self) -> Leftover | None:
        """The storage delete_option names, as an intent record names it."""
        return None

    def owned_files(self) -> tuple[str, ...]:
        """Files the daemon made for the device (a cloud-init seed), removed with the device or its VM."""
        return ()


def _converters(cls: type[Device]) -> dict[str, Callable[[Any], Any]]:
    """Per field, how a JSON value becomes the field's type (enums and nested dataclasses; null stays null)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Callable[[Any], Any]] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            out[f.name] = _nullable(kind)
        elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out[f.name] = _nullable(functools.partial(_build, kind))
        else:
            out[f.name] = _same
    return out


def _build(kind: Callable[..., Any], value: Mapping[str, Any]) -> Any:
    return kind(**value)


def _same(value: Any) -> Any:
    return value


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)
