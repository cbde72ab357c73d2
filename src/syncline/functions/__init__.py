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
from syncline.functions._logs import (
    LEVELS,
    capture_app_loggers,
    capture_log_lines,
    in_function_call,
    install_print_capture,
    split_level,
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
    "LEVELS",
    "FunctionKind",
    "FunctionRef",
    "FunctionReference",
    "FunctionSpec",
    "Visibility",
    "action",
    "api",
    "canonical_path",
    "capture_app_loggers",
    "capture_log_lines",
    "check_args",
    "check_returns",
    "in_function_call",
    "install_print_capture",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "query",
    "resolve_reference",
    "run_path_to_function_path",
    "split_level",
]
