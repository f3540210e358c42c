"""Every API method, CRUD included, says what it does in a docstring of its own (what core.get_methods shows),
and is defined visibly in its service's own class: found in one step from its dotted name."""
from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import pytest

from middlewared.config import Config
from middlewared.crud import CRUDService
from middlewared.middleware import Middleware
from middlewared.plugins import PLUGINS

# What the shared base class says of any collection: as an API method's docstring it tells a reader nothing.
GENERIC = {inspect.getdoc(getattr(CRUDService, name)) for name in ("query", "get_instance", "create", "update",
                                                                    "delete")}


@pytest.fixture(scope="module")
def methods() -> dict[str, Any]:
    import asyncio

    middleware = Middleware(Config(), PLUGINS)
    result: dict[str, Any] = asyncio.run(middleware.call("core.get_methods", "WS"))
    return result


@pytest.fixture(scope="module")
def middleware() -> Middleware:
    return Middleware(Config(), PLUGINS)


def test_every_method_has_a_docstring(methods: dict[str, Any]) -> None:
    missing = [name for name, method in methods.items() if len(method["description"]) < 12]
    assert not missing, f"methods without a (real) docstring: {missing}"


def test_no_docstring_is_generic(methods: dict[str, Any]) -> None:
    assert len(GENERIC) == 5 and all(GENERIC)
    generic = [name for name, method in methods.items() if method["description"] in GENERIC]
    assert not generic, f"methods with a generic docstring: {generic}"


def test_no_two_methods_share_a_docstring(methods: dict[str, Any]) -> None:
    counts = Counter(method["description"] for method in methods.values())
    shared = {text: [n for n, m in methods.items() if m["description"] == text]
              for text, count in counts.items() if count > 1}
    assert not shared, f"methods sharing one docstring: {shared}"


def test_every_method_is_defined_in_its_services_own_class(middleware: Middleware) -> None:
    # Not generated from class attributes, not inherited from a generic base or a mixin in another file: the
    # service's own class, in the file that declares it, shows every method with its schemas and roles.
    hidden = []
    for name, method in middleware.methods.items():
        service_class = type(middleware.services[name.rsplit(".", 1)[0]])
        fn = inspect.unwrap(method.fn)
        if fn.__qualname__.split(".")[0] != service_class.__name__ or fn.__module__ != service_class.__module__:
            hidden.append(f"{name} ({fn.__module__}.{fn.__qualname__})")
    assert not hidden, f"methods not defined in their service's own class: {hidden}"
