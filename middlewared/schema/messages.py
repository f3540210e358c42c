"""Turn jsonschema's errors into short, pydantic-like messages with dotted attribute paths."""
from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaError

_TYPE_NAMES = {
    "integer": "a valid integer", "number": "a valid number", "string": "a valid string",
    "boolean": "a valid boolean", "object": "a valid dictionary", "array": "a valid list",
    "null": "null",
}


def _join(path: list[Any]) -> str:
    return ".".join(str(p) for p in path)


def error_path(prefix: str, err: SchemaError) -> str:
    """The dotted attribute an error is about, e.g. ``vm_create.memory``."""
    path = [prefix, *err.absolute_path]
    if err.validator == "required":
        missing = _missing_key(err)
        if missing is not None:
            path.append(missing)
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set((err.schema.get("properties") or {}) if isinstance(err.schema, dict) else ())
        extras = sorted(k for k in err.instance if k not in allowed)
        if len(extras) == 1:
            path.append(extras[0])
    return _join(path)


def _missing_key(err: SchemaError) -> str | None:
    # jsonschema words it "'name' is a required property"; the key is the quoted repr.
    text = err.message
    if text.endswith(" is a required property"):
        quoted = text[: -len(" is a required property")]
        if len(quoted) >= 2 and quoted[0] == quoted[-1] == "'":
            return quoted[1:-1]
    return None


def _type_message(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return "Input should be " + " or ".join(_TYPE_NAMES.get(n, str(n)) for n in names)


def message(err: SchemaError) -> str:
    """A one-line message for one schema error."""
    v, arg = err.validator, err.validator_value
    if v == "required":
        return "Field required"
    if v == "type":
        return _type_message(arg)
    if v == "minimum":
        return f"Input should be greater than or equal to {arg}"
    if v == "maximum":
        return f"Input should be less than or equal to {arg}"
    if v == "exclusiveMinimum":
        return f"Input should be greater than {arg}"
    if v == "exclusiveMaximum":
        return f"Input should be less than {arg}"
    if v in ("enum", "const"):
        choices: list[Any] = list(arg) if v == "enum" and isinstance(arg, list) else [arg]
        return "Input should be " + ", ".join(json.dumps(c) for c in choices)
    if v == "minLength":
        return f"String should have at least {arg} character{'s' if arg != 1 else ''}"
    if v == "maxLength":
        return f"String should have at most {arg} characters"
    if v == "pattern":
        return f"String should match pattern {arg!r}"
    if v == "additionalProperties":
        return "Extra inputs are not permitted"
    if v == "minItems":
        return f"List should have at least {arg} item{'s' if arg != 1 else ''}"
    if v == "maxItems":
        return f"List should have at most {arg} items"
    if v in ("oneOf", "anyOf"):
        return "Input does not match any allowed form"
    if v == "format":
        return f"Input should be a valid {arg}"
    return err.message
