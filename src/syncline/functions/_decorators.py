"""The decorators that turn ``async def f(ctx, **args)`` into Syncline functions.

Each is usable bare (``@query``) or configured (``@query(args={...}, returns=v.x())``).
The loader assigns every decorated function its path (``module:name``) from the
module it lives in and the name it is exported under.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from syncline.values import Validator, as_validator

Handler = Callable[..., Awaitable[Any]]


class FunctionKind(enum.Enum):
    QUERY = "query"
    MUTATION = "mutation"
    ACTION = "action"


class Visibility(enum.Enum):
    PUBLIC = "public"
    INTERNAL = "internal"


@dataclass(eq=False)
class FunctionSpec:
    """A registered function: its handler, kind, visibility and validators."""

    handler: Handler
    kind: FunctionKind
    visibility: Visibility
    args: Validator | None
    returns: Validator | None
    path: str | None = field(default=None)
    """Assigned by the app loader; None until the module is loaded."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Syncline function {self.path or self.handler.__qualname__} cannot be called "
            "directly; use ctx.run_query / ctx.run_mutation / ctx.run_action or a client"
        )

    def __repr__(self) -> str:
        return (
            f"<{self.visibility.value} {self.kind.value} {self.path or self.handler.__qualname__}>"
        )


F = TypeVar("F", bound=Handler)


def _make(kind: FunctionKind, visibility: Visibility) -> Any:
    @overload
    def decorator(fn: Handler, /) -> FunctionSpec: ...
    @overload
    def decorator(
        *, args: Mapping[str, Validator] | Validator | None = None, returns: Validator | None = None
    ) -> Callable[[Handler], FunctionSpec]: ...

    def decorator(
        fn: Handler | None = None,
        /,
        *,
        args: Mapping[str, Validator] | Validator | None = None,
        returns: Validator | None = None,
    ) -> FunctionSpec | Callable[[Handler], FunctionSpec]:
        args_validator = as_validator(args) if args is not None else None
        if returns is not None and not isinstance(returns, Validator):
            raise TypeError(f"returns= must be a validator such as v.string(), got {returns!r}")

        def wrap(handler: Handler) -> FunctionSpec:
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(
                    f"{handler.__qualname__}: Syncline functions must be 'async def f(ctx, ...)'"
                )
            return FunctionSpec(handler, kind, visibility, args_validator, returns)

        if fn is not None:
            return wrap(fn)
        return wrap

    decorator.__name__ = kind.value if visibility is Visibility.PUBLIC else f"internal_{kind.value}"
    decorator.__doc__ = f"Declare a {visibility.value} {kind.value}."
    return decorator


query = _make(FunctionKind.QUERY, Visibility.PUBLIC)
mutation = _make(FunctionKind.MUTATION, Visibility.PUBLIC)
action = _make(FunctionKind.ACTION, Visibility.PUBLIC)
internal_query = _make(FunctionKind.QUERY, Visibility.INTERNAL)
internal_mutation = _make(FunctionKind.MUTATION, Visibility.INTERNAL)
internal_action = _make(FunctionKind.ACTION, Visibility.INTERNAL)
