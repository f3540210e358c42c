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
    # A method generated from class attributes, or inherited from a generic base, is not where its name says.
    hidden = []
    for name, method in middleware.methods.items():
        service = middleware.services[name.rsplit(".", 1)[0]]
        fn = inspect.unwrap(method.fn)
        defined_in = fn.__qualname__.split(".")[0] if hasattr(fn, "__qualname__") else ""
        owners = {cls.__name__ for cls in type(service).__mro__ if cls.__module__.startswith("middlewared.plugins")}
        if defined_in not in owners:
            hidden.append(f"{name} ({defined_in})")
    assert not hidden, f"methods not defined in a plugin's service class: {hidden}"
