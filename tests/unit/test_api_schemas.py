"""Every public method: a docstring, roles, and a description on every schema property."""
from __future__ import annotations

import pytest

from middlewared.config import Config
from middlewared.middleware import Middleware
from middlewared.plugins import PLUGINS
from jsonschema import Draft202012Validator

from middlewared.schema import walk_properties


@pytest.fixture(scope="module")
def middleware() -> Middleware:
    return Middleware(Config(), PLUGINS)


def test_every_method_is_documented(middleware: Middleware) -> None:
    for name, method in middleware.methods.items():
        assert (method.fn.__doc__ or "").strip(), name
        assert method.spec.roles or not method.spec.authentication_required, name
        for arg in method.arguments.schemas():
            assert arg.get("description"), f"{name}: argument {arg.get('title')}"
        assert method.spec.result.get("description"), f"{name}: result"


def test_every_property_has_a_description(middleware: Middleware) -> None:
    missing = []
    for name, method in middleware.methods.items():
        for schema in [*method.arguments.schemas(), method.spec.result]:
            for path, sub in walk_properties(schema):
                if not isinstance(sub, dict) or not sub.get("description"):
                    missing.append(f"{name}: {schema.get('title')}.{path}")
    assert not missing, "\n".join(missing)


def test_events_have_roles(middleware: Middleware) -> None:
    assert middleware.events["core.get_jobs"].roles == ()
    assert middleware.events["vm.query"].roles == ("VM_READ",)


def test_every_schema_is_valid_json_schema(middleware: Middleware) -> None:
    """The daemon does not check schemas against the meta-schema at start-up (it costs): this does."""
    for name, method in middleware.methods.items():
        for schema in [*method.arguments.schemas(), method.spec.result]:
            Draft202012Validator.check_schema(schema)


def _ejson_keys(value: object, path: str) -> list[str]:
    """Paths of objects with a key clients decode specially ({"$date": ...} becomes a time)."""
    if isinstance(value, dict):
        found = [path] if "$date" in value else []
        return found + [p for k, v in value.items() for p in _ejson_keys(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _ejson_keys(v, f"{path}[{i}]")]
    return []


def test_no_schema_names_an_ejson_key(middleware: Middleware) -> None:
    # TrueNAS clients decode every object holding "$date" as a time: a schema naming that key literally
    # would make core.get_methods undecodable for them.
    found = [p for name, method in middleware.methods.items()
             for schema in [*method.arguments.schemas(), method.spec.result] for p in _ejson_keys(schema, name)]
    assert not found, found
