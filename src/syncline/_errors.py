"""Syncline's exception tree.

Every error Syncline raises descends from :class:`SynclineError` and carries a
stable ``code`` and a ``retryable`` flag. The transport layers map codes to HTTP
status and Convex wire errors in one table (:data:`HTTP_STATUS_BY_CODE`).

    SynclineError
    ├── InvalidValueError        a value is not a Convex value, or exceeds a limit
    ├── ValidationError          a value does not match its validator (names the path)
    ├── InvalidIdError           malformed id, or an id of another table
    ├── SchemaError              a schema definition is malformed
    │   └── SchemaViolationError existing documents violate a new schema
    ├── FunctionNotFoundError    no public function by that path (also for internal ones)
    ├── FunctionTypeError        e.g. a mutation called through run_query
    ├── DocumentNotFoundError    patch/replace/delete of a missing document
    ├── OccConflictError         optimistic concurrency conflict (retryable)
    │   └── CatalogChangedError  tables or indexes changed meanwhile (reload, retry)
    ├── FencedError              a deposed committer's write was refused (retryable elsewhere)
    ├── UnavailableError         a service or its storage is unreachable now (retryable)
    ├── InvalidWriteSetError     a commit's read or write set is malformed or inconsistent
    ├── AuthenticationError      invalid, expired or unverifiable token
    ├── ConfigError              an app's configuration (auth_config.py, CLI flags) is invalid
    ├── ProtocolError            malformed frame or request body, bad version chain
    ├── RequestTooLargeError     a request body or frame over the limit
    ├── LimitExceededError       a function went past an execution limit
    ├── PresenceError            ctx.presence used without a store or a session
    ├── RateLimitedError         too many requests from one address, user or app key
    └── AppError                 raised by application code, data reaches clients
"""

from __future__ import annotations

from typing import Any, ClassVar


class SynclineError(Exception):
    """Root of every error Syncline raises on purpose."""

    code: ClassVar[str] = "InternalError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidValueError(SynclineError):
    code = "InvalidValue"


class ValidationError(SynclineError):
    code = "ValidationFailed"


class InvalidIdError(SynclineError):
    code = "InvalidId"


class SchemaError(SynclineError):
    code = "SchemaInvalid"


class SchemaViolationError(SchemaError):
    """Existing documents do not satisfy a schema that is being applied."""

    code = "SchemaViolation"

    def __init__(self, message: str, *, offending_ids: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.offending_ids = offending_ids


class FunctionNotFoundError(SynclineError):
    code = "FunctionNotFound"


class FunctionTypeError(SynclineError):
    code = "WrongFunctionType"


class DocumentNotFoundError(SynclineError):
    code = "DocumentNotFound"


class OccConflictError(SynclineError):
    code = "OptimisticConcurrencyControlFailure"
    retryable = True


class CatalogChangedError(OccConflictError):
    """The tables or indexes changed while a transaction ran: reload them and re-run."""

    code = "CatalogChanged"


class FencedError(SynclineError):
    """The committer's leader epoch is no longer current: another leader took over."""

    code = "Fenced"
    retryable = True


class UnavailableError(SynclineError):
    code = "Unavailable"
    retryable = True


class InvalidWriteSetError(SynclineError):
    code = "InvalidWriteSet"


class AuthenticationError(SynclineError):
    code = "Unauthenticated"


class PermissionDeniedError(SynclineError):
    """Valid credentials that do not allow this (an admin key without the scope)."""

    code = "Forbidden"


class ConfigError(SynclineError):
    code = "InvalidConfig"


class ProtocolError(SynclineError):
    code = "BadProtocol"


class RequestTooLargeError(SynclineError):
    code = "RequestTooLarge"


class LimitExceededError(SynclineError):
    """A function went past one of its execution limits (reads, writes, time); the
    message names the limit. Nothing it wrote is committed."""

    code = "LimitExceeded"


class RateLimitedError(SynclineError):
    """Too many requests from one client address, user, or (``ctx.rate_limiter``) an
    app's own key. The message says how long to wait; nothing was run."""

    code = "RateLimited"
    retryable = True

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PresenceError(SynclineError):
    """``ctx.presence`` used where it cannot work: no presence store on this server,
    or a join or leave without a client session to act as."""

    code = "PresenceUnavailable"


class AppError(SynclineError):
    """Raise from a function to send structured ``data`` to the client.

    The client receives it as Convex ``errorData`` (``ConvexError.data`` in the
    official clients); the message is derived from the data.
    """

    code = "AppError"

    def __init__(self, data: Any) -> None:
        message = data if isinstance(data, str) else "AppError"
        super().__init__(message)
        self.data = data


#: HTTP status for each error code; anything else is a 500 ``InternalError``.
#: Function-level failures use Convex's 560 so official clients read the body.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    ProtocolError.code: 400,
    ConfigError.code: 400,
    RequestTooLargeError.code: 413,
    AuthenticationError.code: 401,
    PermissionDeniedError.code: 403,
    InvalidValueError.code: 560,
    ValidationError.code: 560,
    InvalidIdError.code: 560,
    SchemaError.code: 560,
    SchemaViolationError.code: 560,
    FunctionNotFoundError.code: 560,
    FunctionTypeError.code: 560,
    DocumentNotFoundError.code: 560,
    OccConflictError.code: 560,
    CatalogChangedError.code: 560,
    InvalidWriteSetError.code: 560,
    FencedError.code: 503,
    UnavailableError.code: 503,
    AppError.code: 560,
    LimitExceededError.code: 560,
    PresenceError.code: 560,
    RateLimitedError.code: 429,
}
