"""The client side of Convex's sync protocol: frames out, parsed frames in.

Pure code with no I/O. Values travel in Convex's JSON encoding
(:func:`syncline.values.to_json`); timestamps as base64 little-endian u64.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncline._errors import ProtocolError, SynclineError
from syncline.client._errors import ClientError
from syncline.sync import decode_ts, encode_ts
from syncline.values import Value, from_json, to_json

JsonObject = dict[str, Any]


class RequestKind(enum.Enum):
    """What a request frame asks the server to run."""

    MUTATION = "Mutation"
    ACTION = "Action"


class TokenType(enum.Enum):
    """How an ``Authenticate`` frame identifies the caller."""

    USER = "User"
    ADMIN = "Admin"
    NONE = "None"


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# -- client -> server ------------------------------------------------------------


def connect_frame(
    *,
    session_id: str,
    connection_count: int,
    last_close_reason: str | None,
    max_observed_ts: int | None,
    client_ts_ms: int,
) -> str:
    frame: JsonObject = {
        "type": "Connect",
        "sessionId": session_id,
        "connectionCount": connection_count,
        "lastCloseReason": last_close_reason,
        "clientTs": client_ts_ms,
    }
    if max_observed_ts:
        frame["maxObservedTimestamp"] = encode_ts(max_observed_ts)
    return _dumps(frame)


def add_query(query_id: int, path: str, args_json: JsonObject) -> JsonObject:
    """A ``ModifyQuerySet`` modification adding a query."""
    return {"type": "Add", "queryId": query_id, "udfPath": path, "args": [args_json]}


def remove_query(query_id: int) -> JsonObject:
    """A ``ModifyQuerySet`` modification removing a query."""
    return {"type": "Remove", "queryId": query_id}


def modify_query_set_frame(
    base_version: int, new_version: int, modifications: Sequence[JsonObject]
) -> str:
    return _dumps(
        {
            "type": "ModifyQuerySet",
            "baseVersion": base_version,
            "newVersion": new_version,
            "modifications": list(modifications),
        }
    )


def encode_args(args: Mapping[str, Any] | None) -> JsonObject:
    """A function's arguments in Convex's JSON encoding; None means no arguments."""
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        raise ClientError(
            f"arguments must be a mapping of names to values, got {type(args).__name__}"
        )
    encoded: JsonObject = to_json(dict(args))
    return encoded


def request_frame(kind: RequestKind, request_id: int, path: str, args_json: JsonObject) -> str:
    return _dumps(
        {"type": kind.value, "requestId": request_id, "udfPath": path, "args": [args_json]}
    )


def authenticate_frame(base_version: int, token_type: TokenType, value: str | None) -> str:
    frame: JsonObject = {
        "type": "Authenticate",
        "baseVersion": base_version,
        "tokenType": token_type.value,
    }
    if token_type is not TokenType.NONE:
        frame["value"] = value
    return _dumps(frame)


# -- server -> client ------------------------------------------------------------


@dataclass(frozen=True)
class StateVersion:
    """Where the server's view of this session stands; Transitions move it forward."""

    query_set: int
    identity: int
    ts: int


INITIAL_VERSION = StateVersion(0, 0, 0)


@dataclass(frozen=True)
class QueryResult:
    """A query's new result: a value, or an error message (with data for AppError)."""

    query_id: int
    value: Value
    error_message: str | None
    """Set when the query failed."""
    error_data: Value
    """The AppError data of a failed query, else None."""
    log_lines: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.error_message is not None


@dataclass(frozen=True)
class QueryRemoved:
    query_id: int


@dataclass(frozen=True)
class Transition:
    start: StateVersion
    end: StateVersion
    modifications: tuple[QueryResult | QueryRemoved, ...]


@dataclass(frozen=True)
class FunctionResponse:
    """A ``MutationResponse`` or ``ActionResponse``."""

    kind: RequestKind
    request_id: int
    value: Value
    error_message: str | None
    """Set when the function failed."""
    error_data: Value
    ts: int | None
    """Commit ts of a successful mutation."""
    log_lines: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.error_message is not None


@dataclass(frozen=True)
class AuthError:
    message: str
    base_version: int | None


@dataclass(frozen=True)
class FatalError:
    message: str


@dataclass(frozen=True)
class Ping:
    pass


ServerMessage = Transition | FunctionResponse | AuthError | FatalError | Ping


def parse_server_message(text: str | bytes) -> ServerMessage | None:
    """Parse one server frame; None for a message type this client does not know.

    Raises :class:`ProtocolError` naming what is malformed.
    """
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("server frame is not valid JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("server frame must be a JSON object with a string 'type'")
    kind = obj["type"]
    try:
        if kind == "Transition":
            return _transition(obj)
        if kind == "MutationResponse":
            return _response(obj, RequestKind.MUTATION)
        if kind == "ActionResponse":
            return _response(obj, RequestKind.ACTION)
        if kind == "AuthError":
            base = obj.get("baseVersion")
            return AuthError(_string(obj, "error", kind), base if isinstance(base, int) else None)
        if kind == "FatalError":
            return FatalError(_string(obj, "error", kind))
        if kind == "Ping":
            return Ping()
    except ProtocolError:
        raise
    except SynclineError as exc:
        # A value that is not valid Convex JSON.
        raise ProtocolError(f"{kind}: {exc.message}") from exc
    return None


def _transition(obj: Mapping[str, Any]) -> Transition:
    mods = obj.get("modifications")
    if not isinstance(mods, list):
        raise ProtocolError("Transition.modifications: expected a list")
    parsed: list[QueryResult | QueryRemoved] = []
    for i, mod in enumerate(mods):
        where = f"Transition.modifications[{i}]"
        if not isinstance(mod, dict):
            raise ProtocolError(f"{where}: expected an object")
        query_id = _integer(mod, "queryId", where)
        mod_type = mod.get("type")
        if mod_type == "QueryUpdated":
            parsed.append(
                QueryResult(query_id, from_json(mod.get("value")), None, None, _logs(mod, where))
            )
        elif mod_type == "QueryFailed":
            parsed.append(
                QueryResult(
                    query_id,
                    None,
                    _string(mod, "errorMessage", where),
                    from_json(mod["errorData"]) if "errorData" in mod else None,
                    _logs(mod, where),
                )
            )
        elif mod_type == "QueryRemoved":
            parsed.append(QueryRemoved(query_id))
        else:
            raise ProtocolError(f"{where}.type: unknown modification {str(mod_type)[:40]!r}")
    return Transition(_version(obj, "startVersion"), _version(obj, "endVersion"), tuple(parsed))


def _response(obj: Mapping[str, Any], kind: RequestKind) -> FunctionResponse:
    where = f"{kind.value}Response"
    request_id = _integer(obj, "requestId", where)
    success = obj.get("success")
    if not isinstance(success, bool):
        raise ProtocolError(f"{where}.success: expected a boolean")
    logs = _logs(obj, where)
    if not success:
        data = from_json(obj["errorData"]) if "errorData" in obj else None
        return FunctionResponse(
            kind, request_id, None, _string(obj, "result", where), data, None, logs
        )
    ts = decode_ts(obj.get("ts"), f"{where}.ts") if kind is RequestKind.MUTATION else None
    return FunctionResponse(kind, request_id, from_json(obj.get("result")), None, None, ts, logs)


def _version(obj: Mapping[str, Any], key: str) -> StateVersion:
    raw = obj.get(key)
    where = f"Transition.{key}"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: expected an object")
    return StateVersion(
        _integer(raw, "querySet", where),
        _integer(raw, "identity", where),
        decode_ts(raw.get("ts"), f"{where}.ts"),
    )


def _integer(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{where}.{key}: expected a string")
    return value


def _logs(obj: Mapping[str, Any], where: str) -> tuple[str, ...]:
    lines = obj.get("logLines", [])
    if not isinstance(lines, list):
        raise ProtocolError(f"{where}.logLines: expected a list")
    return tuple(str(line) for line in lines)
