"""Checking a call's arguments and a function's return value against its validators."""

from __future__ import annotations

from typing import Any

from syncline._errors import ValidationError
from syncline.functions._decorators import FunctionSpec
from syncline.values import IdTableLookup, check_value


def check_args(
    spec: FunctionSpec, args: object, *, id_table: IdTableLookup | None
) -> dict[str, Any]:
    """``args`` if it is an object of valid values that the function's validator accepts.

    Without ``id_table`` an ``v.id(table)`` argument is only checked to be an id.
    """
    if not isinstance(args, dict):
        raise ValidationError(f"args: expected object, got {type(args).__name__}")
    check_value(args, path="args")
    if spec.args is not None:
        spec.args.validate(args, "args", id_table=id_table)
    return args


def check_returns(spec: FunctionSpec, value: object, *, id_table: IdTableLookup) -> None:
    """Raise unless ``value`` is a valid value that the function's ``returns`` accepts."""
    check_value(value, path="returns")
    if spec.returns is not None:
        spec.returns.validate(value, "returns", id_table=id_table)
