"""CRUDService: the query/get_instance/create/update/delete a service over a collection builds its API methods
on (each service declares them with @api_method and a docstring of its own), and their schemas."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, ClassVar

from middlewared.errors import InstanceNotFound, MatchNotFound, ValidationError, ValidationErrors
from middlewared.schema import Schema
from middlewared.service import GET_OPTIONS, QUERY_FILTERS, QUERY_OPTIONS, Service, id_param
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
    """A service over a collection of records with ids; subclasses implement rows() and do_*(), and expose
    query/get_instance/create/update/delete as API methods of their own over these implementations.

    A `<namespace>.query` event is declared for every service with a role_prefix and an entry_schema."""

    verbose_name: ClassVar[str]
    role_prefix: ClassVar[str]
    entry_schema: ClassVar[Schema]

    async def rows(self) -> list[dict[str, Any]]:
        """Every record, extended (status, devices, ...), in id order."""
        raise NotImplementedError

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
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

    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete a record and announce it."""
        rv = await self.do_delete(id_, options)
        self.middleware.send_event(f"{self.namespace}.query", "REMOVED", id=id_)
        return rv


@dataclass(frozen=True)
class CrudSchemas:
    """The schemas of one collection's query/get_instance/create/update/delete, for their @api_method lines."""

    query: tuple[Schema, ...]
    query_result: Schema
    get_instance: tuple[Schema, ...]
    entry: Schema
    create: tuple[Schema, ...]
    update: tuple[Schema, ...]
    delete: tuple[Schema, ...]
    deleted: Schema
    read: tuple[str, ...]
    write: tuple[str, ...]


def crud_schemas(namespace: str, what: str, role_prefix: str, entry: Schema, create: Schema, update: Schema,
                 delete_options: tuple[Schema, ...] = ()) -> CrudSchemas:
    """The CRUD schemas of a collection; create/update parameters are titled `<namespace>_create|update` (the
    prefix of their validation errors' attributes)."""
    base = namespace.replace(".", "_")
    return CrudSchemas(
        query=(QUERY_FILTERS, QUERY_OPTIONS),
        query_result={"title": "result", "description": f"{what} records, one record (get), or a count (count).",
                      "anyOf": [{"type": "array", "items": entry}, entry, {"type": "integer"}]},
        get_instance=(id_param(), GET_OPTIONS),
        entry=entry,
        create=({**create, "title": f"{base}_create"},),
        update=(id_param(), {**update, "title": f"{base}_update"}),
        delete=(id_param(), *delete_options),
        deleted={"title": "result", "type": "boolean", "description": "True once deleted."},
        read=(f"{role_prefix}_READ",),
        write=(f"{role_prefix}_WRITE",),
    )
