"""Argument validation: dotted attribute paths, all errors at once, defaults without mutation."""
from __future__ import annotations

import copy

import pytest

from middlewared.errors import ValidationErrors
from middlewared.schema import Arguments, apply_defaults

VM_LIKE = {
    "title": "vm_create", "type": "object", "additionalProperties": False, "required": ["name", "memory"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "memory": {"type": "integer", "minimum": 20},
        "vcpus": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "time": {"type": "string", "enum": ["LOCAL", "UTC"], "default": "LOCAL"},
        "nested": {"type": "object", "default": {}, "properties": {"x": {"type": "integer", "default": 3}}},
    },
}
ARGS = Arguments([{"title": "id", "type": "integer"}, VM_LIKE,
                  {"title": "options", "type": "object", "default": {"force": False}}])


def errors_of(params: list[object]) -> list[list[object]]:
    with pytest.raises(ValidationErrors) as e:
        ARGS.validate(params)
    return [err.as_list() for err in e.value.errors]


def test_all_errors_at_once_with_prefixed_paths() -> None:
    errors = errors_of([1, {"memory": 10, "vcpus": 17, "time": "MARS", "bogus": True}])
    assert ["vm_create.name", "Field required", 22] in errors
    assert ["vm_create.memory", "Input should be greater than or equal to 20", 22] in errors
    assert ["vm_create.vcpus", "Input should be less than or equal to 16", 22] in errors
    assert ["vm_create.time", 'Input should be "LOCAL", "UTC"', 22] in errors
    assert ["vm_create.bogus", "Extra inputs are not permitted", 22] in errors


def test_type_errors_and_booleans_are_not_integers() -> None:
    assert errors_of([True, {"name": "a", "memory": "x"}]) == [
        ["id", "Input should be a valid integer", 22],
        ["vm_create.memory", "Input should be a valid integer", 22],
    ]


def test_numbers_with_a_fraction_are_not_integers() -> None:
    # 15.0 would otherwise pass as an integer and reach the domain XML as "15.0".
    assert errors_of([1, {"name": "a", "memory": 512.0, "vcpus": 2.5}]) == [
        ["vm_create.memory", "Input should be a valid integer", 22],
        ["vm_create.vcpus", "Input should be a valid integer", 22],
    ]


def test_defaults_applied_without_mutating_input() -> None:
    data = {"name": "a", "memory": 32, "nested": {}}
    before = copy.deepcopy(data)
    args = ARGS.validate([1, data])
    assert data == before
    assert args[1] == {"name": "a", "memory": 32, "vcpus": 1, "time": "LOCAL", "nested": {"x": 3}}
    assert args[2] == {"force": False}
    args[2]["force"] = True
    assert ARGS.validate([1, data])[2] == {"force": False}  # defaults are copied, not shared


def test_missing_and_extra_arguments() -> None:
    assert errors_of([]) == [["id", "Field required", 22], ["vm_create", "Field required", 22]]
    assert errors_of([1, {"name": "a", "memory": 32}, {}, 4]) == [
        [None, "Too many arguments (expected 3, found 4)", 22]]


def test_arguments_need_titles_and_valid_schemas() -> None:
    with pytest.raises(ValueError):
        Arguments([{"type": "integer"}])


def test_apply_defaults_on_lists() -> None:
    schema = {"type": "array", "items": {"type": "object", "properties": {"a": {"default": 1}}}}
    assert apply_defaults(schema, [{}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
