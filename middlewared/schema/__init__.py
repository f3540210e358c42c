"""JSON Schema helpers: compile a method's arguments once, validate positional params, apply defaults."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, cast

import jsonschema
from jsonschema import Draft202012Validator

from middlewared.errors import ValidationError, ValidationErrors
from middlewared.schema.messages import error_path, message

Schema = Mapping[str, Any]

_FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 15.0 as an integer; the daemon's code (and libvirt's XML) would then get a float.
    # An integer on this API is written without a fraction, as TrueNAS clients send it.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


# An ejson time {"$date": milliseconds}. Clients decode any object with a "$date" key as a time, so a schema
# must not name the key literally (core.get_methods would become undecodable): hence patternProperties.
DATE: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["$date"],
    "patternProperties": {"^[$]date$": {"type": "integer", "description": "Milliseconds since the epoch."}},
    "description": "A time as ejson {\"$date\": milliseconds since the epoch}.",
}
DATE_OR_NULL: dict[str, Any] = {**DATE, "type": ["object", "null"],
                                "description": "A time as ejson {\"$date\": milliseconds}, or null for none."}


def compile_schema(schema: Schema) -> Draft202012Validator:
    """The validator of a schema literal, built once.

    Checking each literal against the JSON Schema meta-schema costs about half a second over all
    methods, so it is not done at every start: tests/unit/test_api_schemas.py checks every one.
    """
    return cast(Draft202012Validator, _Validator(schema, format_checker=_FORMAT_CHECKER))


def validation_errors(validator: Draft202012Validator, value: Any, prefix: str) -> list[ValidationError]:
    """Every error of value against a compiled schema, with attribute paths under prefix."""
    errors = []
    for err in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        errors.append(ValidationError(error_path(prefix, err), message(err)))
    return errors


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Return a copy of value with the schema's property defaults filled in; value is not mutated."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return dict(value)
        out = dict(value)
        for key, sub in props.items():
            if key in out:
                out[key] = apply_defaults(sub, out[key])
            elif isinstance(sub, Mapping) and "default" in sub:
                out[key] = apply_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [apply_defaults(items, v) for v in value]
        return list(value)
    return value


@dataclass(frozen=True)
class Argument:
    """One positional argument of a method: its name (the schema's title) and compiled schema."""

    name: str
    schema: Schema
    validator: Draft202012Validator

    @property
    def required(self) -> bool:
        return "default" not in self.schema


class Arguments:
    """The compiled positional arguments of one API method."""

    def __init__(self, params: Sequence[Schema]) -> None:
        args = []
        for index, schema in enumerate(params):
            name = schema.get("title")
            if not isinstance(name, str) or not name:
                raise ValueError(f"argument {index} needs a 'title' (its name)")
            args.append(Argument(name, schema, compile_schema(schema)))
        self.args: tuple[Argument, ...] = tuple(args)

    def schemas(self) -> list[Schema]:
        """The argument schemas, as published by core.get_methods."""
        return [a.schema for a in self.args]

    def validate(self, params: Sequence[Any]) -> list[Any]:
        """Map positional params onto the arguments, validate all of them, and fill defaults."""
        if not self.args and not params:
            return []
        verrors = ValidationErrors()
        if len(params) > len(self.args):
            verrors.add(None, f"Too many arguments (expected {len(self.args)}, found {len(params)})")
            raise verrors
        values: list[Any] = []
        for index, arg in enumerate(self.args):
            if index >= len(params):
                if arg.required:
                    verrors.add(arg.name, "Field required")
                    continue
                value = copy.deepcopy(arg.schema["default"])
            else:
                value = params[index]
                for error in validation_errors(arg.validator, value, arg.name):
                    verrors.errors.append(error)
            values.append(value)
        verrors.check()
        return [apply_defaults(arg.schema, v) for arg, v in zip(self.args, values)]


def walk_properties(schema: Any, path: str = "") -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Yield (path, subschema) for every named property in a schema, at any depth."""
    if isinstance(schema, Mapping):
        for key, sub in (schema.get("properties") or {}).items():
            yield f"{path}.{key}".lstrip("."), sub
            yield from walk_properties(sub, f"{path}.{key}")
        for keyword in ("items", "additionalProperties", "not", "if", "then", "else"):
            if isinstance(schema.get(keyword), Mapping):
                yield from walk_properties(schema[keyword], path)
        for keyword in ("oneOf", "anyOf", "allOf", "prefixItems"):
            for sub in schema.get(keyword) or ():
                yield from walk_properties(sub, path)
        for sub in (schema.get("$defs") or {}).values():
            yield from walk_properties(sub, path)


__all__ = ["Arguments", "Schema", "apply_defaults", "compile_schema", "validation_errors",
           "walk_properties", "jsonschema"]
