"""Declaring functions and referring to them."""

from syncline.functions._checks import check_args, check_returns
from syncline.functions._decorators import (
    FunctionKind,
    FunctionSpec,
    Visibility,
    action,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)
from syncline.functions._paths import canonical_path, run_path_to_function_path
from syncline.functions._references import (
    FunctionRef,
    FunctionReference,
    api,
    internal,
    resolve_reference,
)

__all__ = [
    "FunctionKind",
    "FunctionRef",
    "FunctionReference",
    "FunctionSpec",
    "Visibility",
    "action",
    "api",
    "canonical_path",
    "check_args",
    "check_returns",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "query",
    "resolve_reference",
    "run_path_to_function_path",
]
