from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyInterval(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: bytes
    end: bytes
    def __init__(self, start: _Optional[bytes] = ..., end: _Optional[bytes] = ...) -> None: ...

class IndexRead(_message.Message):
    __slots__ = ("index_id", "intervals")
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    index_id: int
    intervals: _containers.RepeatedCompositeFieldContainer[KeyInterval]
    def __init__(self, index_id: _Optional[int] = ..., intervals: _Optional[_Iterable[_Union[KeyInterval, _Mapping]]] = ...) -> None: ...

class IndexKeyChange(_message.Message):
    __slots__ = ("index_id", "old_key", "new_key")
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_KEY_FIELD_NUMBER: _ClassVar[int]
    NEW_KEY_FIELD_NUMBER: _ClassVar[int]
    index_id: int
    old_key: bytes
    new_key: bytes
    def __init__(self, index_id: _Optional[int] = ..., old_key: _Optional[bytes] = ..., new_key: _Optional[bytes] = ...) -> None: ...

class DocumentWrite(_message.Message):
    __slots__ = ("id", "table_number", "new_value_json", "index_changes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TABLE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    INDEX_CHANGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    table_number: int
    new_value_json: str
    index_changes: _containers.RepeatedCompositeFieldContainer[IndexKeyChange]
    def __init__(self, id: _Optional[str] = ..., table_number: _Optional[int] = ..., new_value_json: _Optional[str] = ..., index_changes: _Optional[_Iterable[_Union[IndexKeyChange, _Mapping]]] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("snapshot_ts", "reads", "writes", "idempotency_key", "result_json", "catalog_version", "fresh_key", "traceparent")
    SNAPSHOT_TS_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    FRESH_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    snapshot_ts: int
    reads: _containers.RepeatedCompositeFieldContainer[IndexRead]
    writes: _containers.RepeatedCompositeFieldContainer[DocumentWrite]
    idempotency_key: str
    result_json: str
    catalog_version: int
    fresh_key: bool
    traceparent: str
    def __init__(self, snapshot_ts: _Optional[int] = ..., reads: _Optional[_Iterable[_Union[IndexRead, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[DocumentWrite, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., result_json: _Optional[str] = ..., catalog_version: _Optional[int] = ..., fresh_key: _Optional[bool] = ..., traceparent: _Optional[str] = ...) -> None: ...

class CommitBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CommitRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CommitRequest, _Mapping]]] = ...) -> None: ...

class Committed(_message.Message):
    __slots__ = ("ts", "result_json", "deduplicated")
    TS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    ts: int
    result_json: str
    deduplicated: bool
    def __init__(self, ts: _Optional[int] = ..., result_json: _Optional[str] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("reason", "catalog_changed")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CATALOG_CHANGED_FIELD_NUMBER: _ClassVar[int]
    reason: str
    catalog_changed: bool
    def __init__(self, reason: _Optional[str] = ..., catalog_changed: _Optional[bool] = ...) -> None: ...

class CommitError(_message.Message):
    __slots__ = ("code", "message", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("committed", "conflict", "error")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    committed: Committed
    conflict: Conflict
    error: CommitError
    def __init__(self, committed: _Optional[_Union[Committed, _Mapping]] = ..., conflict: _Optional[_Union[Conflict, _Mapping]] = ..., error: _Optional[_Union[CommitError, _Mapping]] = ...) -> None: ...

class CommitBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[CommitResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[CommitResponse, _Mapping]]] = ...) -> None: ...

class FindCommitRequest(_message.Message):
    __slots__ = ("idempotency_key",)
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    def __init__(self, idempotency_key: _Optional[str] = ...) -> None: ...

class FindCommitResponse(_message.Message):
    __slots__ = ("committed",)
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    committed: Committed
    def __init__(self, committed: _Optional[_Union[Committed, _Mapping]] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("bundle_json", "dry_run", "authorization")
    BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    bundle_json: str
    dry_run: bool
    authorization: str
    def __init__(self, bundle_json: _Optional[str] = ..., dry_run: _Optional[bool] = ..., authorization: _Optional[str] = ...) -> None: ...

class DeployResponse(_message.Message):
    __slots__ = ("app_version", "changes_json", "applied")
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_JSON_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    app_version: int
    changes_json: str
    applied: bool
    def __init__(self, app_version: _Optional[int] = ..., changes_json: _Optional[str] = ..., applied: _Optional[bool] = ...) -> None: ...

class ClientFrame(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ServerFrame(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("path", "kind", "args_json", "authorization")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: str
    args_json: str
    authorization: str
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[str] = ..., args_json: _Optional[str] = ..., authorization: _Optional[str] = ...) -> None: ...

class SessionFrame(_message.Message):
    __slots__ = ("session", "json", "delivered", "end", "traceparent")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    session: int
    json: str
    delivered: int
    end: str
    traceparent: str
    def __init__(self, session: _Optional[int] = ..., json: _Optional[str] = ..., delivered: _Optional[int] = ..., end: _Optional[str] = ..., traceparent: _Optional[str] = ...) -> None: ...

class SessionFrames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[SessionFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[SessionFrame, _Mapping]]] = ...) -> None: ...

class CallResponse(_message.Message):
    __slots__ = ("http_status", "body_json")
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    http_status: int
    body_json: str
    def __init__(self, http_status: _Optional[int] = ..., body_json: _Optional[str] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "role", "epoch", "last_ts")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[HealthResponse.Status]
        SERVING: _ClassVar[HealthResponse.Status]
        NOT_SERVING: _ClassVar[HealthResponse.Status]
    UNKNOWN: HealthResponse.Status
    SERVING: HealthResponse.Status
    NOT_SERVING: HealthResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_TS_FIELD_NUMBER: _ClassVar[int]
    status: HealthResponse.Status
    role: str
    epoch: int
    last_ts: int
    def __init__(self, status: _Optional[_Union[HealthResponse.Status, str]] = ..., role: _Optional[str] = ..., epoch: _Optional[int] = ..., last_ts: _Optional[int] = ...) -> None: ...
