"""CRUDService: query/get_instance/create/update/delete with automatic ``<ns>.query`` events."""
from __future__ import annotations

import errno
from typing import Any, Awaitable, Callable, ClassVar

from middlewared.errors import InstanceNotFound, MatchNotFound, ValidationError, ValidationErrors
from middlewared.schema import Arguments, Schema
from middlewared.service import GET_OPTIONS, QUERY_FILTERS, QUERY_OPTIONS, MethodSpec, Service, id_param
from middlewared.utils.filter_list import FilterError, OptionsError, filter_list


def query_rows(rows: list[dict[str, Any]], filters: Any, options: Any) -> Any:
    """filter_list with malformed filters/options reported as validation errors."""
    try:
        return filter_list(rows, filters, options)
    except FilterError as e:
        raise ValidationErrors([ValidationError("filters", str(e), errno.EINVAL)]) from None
    except OptionsError as e:
        raise ValidationErrors([ValidationError("options", str(e), errno.EINVAL)]) from None


class CRUDService(Service):
    """A service over a collection of records with ids; subclasses implement rows() and do_*()."""

    verbose_name: ClassVar[str]
    role_prefix: ClassVar[str]
    entry_schema: ClassVar[Schema]
    create_schema: ClassVar[Schema]
    update_schema: ClassVar[Schema]
    delete_params: ClassVar[tuple[Schema, ...]] = ()

    async def rows(self) -> list[dict[str, Any]]:
        """Every record, extended (status, devices, ...), in id order."""
        raise NotImplementedError

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def do_delete(self, id_: int, *args: Any) -> bool:
        raise NotImplementedError

    async def visible_rows(self, app: Any) -> list[dict[str, Any]]:
        """Every record the calling connection may read (all of them for internal calls)."""
        rows = await self.rows()
        if app is None:
            return rows
        return self.middleware.visible_rows(f"{self.namespace}.query", (f"{self.role_prefix}_READ",), rows,
                                            app.credentials)

    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """Records matching filters, shaped by options."""
        return query_rows(await self.visible_rows(app), filters or [], options or {})

    async def row(self, id_: int) -> dict[str, Any] | None:
        """One extended record by id (services with an index override this; the default scans)."""
        return next((r for r in await self.rows() if r.get("id") == id_), None)

    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """The record with this id, or InstanceNotFound."""
        opts = {**(options or {}), "get": True}
        row = await self.row(id_)
        rows = [] if row is None else [row]
        if rows and app is not None:
            rows = self.middleware.visible_rows(f"{self.namespace}.query", (f"{self.role_prefix}_READ",), rows,
                                                app.credentials)
        try:
            result: dict[str, Any] = query_rows(rows, [], opts)
        except MatchNotFound:
            raise InstanceNotFound(f"{self.verbose_name} {id_} does not exist") from None
        return result

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a record and announce it."""
        rv = await self.do_create(data)
        self.middleware.send_event(f"{self.namespace}.query", "ADDED", id=rv["id"], fields=rv)
        return rv

    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Update a record and announce it."""
        rv = await self.do_update(id_, data)
        self.middleware.send_event(f"{self.namespace}.query", "CHANGED", id=rv["id"], fields=rv)
        return rv

    async def delete(self, id_: int, *args: Any) -> bool:
        """Delete a record and announce it."""
        rv = await self.do_delete(id_, *args)
        self.middleware.send_event(f"{self.namespace}.query", "REMOVED", id=id_)
        return rv

    def api_methods(self) -> list[tuple[str, MethodSpec, Arguments, Callable[..., Awaitable[Any]]]]:
        out = super().api_methods()
        cls = type(self)
        # Compiled when the service is registered (start-up), once for the class actually served.
        specs = cls.__dict__.get("_crud_specs")
        if specs is None:
            specs = _build_specs(cls)
            setattr(cls, "_crud_specs", specs)
        for short, (spec, arguments) in specs.items():
            out.append((short, spec, arguments, getattr(self, short)))
        return out


def _build_specs(cls: type[CRUDService]) -> dict[str, tuple[MethodSpec, Arguments]]:
    prefix = cls.role_prefix
    read, write = (f"{prefix}_READ",), (f"{prefix}_WRITE",)
    base = cls.namespace.replace(".", "_")
    entry = cls.entry_schema
    what = cls.verbose_name
    specs = {
        "query": MethodSpec(
            (QUERY_FILTERS, QUERY_OPTIONS),
            {"title": "result", "description": f"{what} records, one record (get), or a count (count).",
             "anyOf": [{"type": "array", "items": entry}, entry, {"type": "integer"}]}, read),
        "get_instance": MethodSpec(
            (id_param(), GET_OPTIONS), entry, read),
        "create": MethodSpec(
            ({**cls.create_schema, "title": f"{base}_create"},), entry, write),
        "update": MethodSpec(
            (id_param(), {**cls.update_schema, "title": f"{base}_update"}), entry, write),
        "delete": MethodSpec(
            (id_param(), *cls.delete_params),
            {"title": "result", "type": "boolean", "description": "True once deleted."}, write),
    }
    return {name: (spec, Arguments(spec.params)) for name, spec in specs.items()}
