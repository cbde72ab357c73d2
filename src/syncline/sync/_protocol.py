"""Convex's WebSocket sync protocol: parsing client frames, building server frames.

Timestamps travel as base64 of a little-endian u64. Server frames that carry
query results are assembled from pre-serialised value JSON, so a result shared
by a thousand sessions is encoded once.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from syncline._errors import ProtocolError

MAX_FRAME_BYTES = 8 * 1024 * 1024
_U64 = struct.Struct("<Q")


def encode_ts(ts: int) -> str:
    return base64.b64encode(_U64.pack(ts)).decode("ascii")


def decode_ts(value: object, what: str) -> int:
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: expected a base64 u64 timestamp")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{what}: invalid base64 timestamp") from exc
    if len(raw) != 8:
        raise ProtocolError(f"{what}: timestamp must be 8 bytes, got {len(raw)}")
    return int(_U64.unpack(raw)[0])


@dataclass(frozen=True)
class Connect:
    session_id: str
    connection_count: int
    max_observed_ts: int | None


@dataclass(frozen=True)
class AddQuery:
    query_id: int
    udf_path: str
    args: Any
    journal: str | None


@dataclass(frozen=True)
class RemoveQuery:
    query_id: int


@dataclass(frozen=True)
class ModifyQuerySet:
    base_version: int
    new_version: int
    modifications: tuple[AddQuery | RemoveQuery, ...]


@dataclass(frozen=True)
class FunctionRequest:
    """A Mutation or Action frame."""

    kind: str
    request_id: int
    udf_path: str
    args: Any


@dataclass(frozen=True)
class Authenticate:
    base_version: int
    token_type: str
    value: str | None


@dataclass(frozen=True)
class Event:
    event_type: str


ClientMessage = Connect | ModifyQuerySet | FunctionRequest | Authenticate | Event


def _int(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ProtocolError(f"{what}.{key}: expected an integer, got {value!r}")
    if not 0 <= value < 2**53:
        raise ProtocolError(f"{what}.{key}: out of range")
    return int(value)


def _str(obj: dict[str, Any], key: str, what: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{what}.{key}: expected a string")
    return value


def _args(obj: dict[str, Any], what: str) -> Any:
    args = obj.get("args")
    # The sync protocol sends [args]; accept a bare object as well.
    if isinstance(args, list):
        if len(args) != 1:
            raise ProtocolError(f"{what}.args: expected [argsObject], got {len(args)} elements")
        return args[0]
    if isinstance(args, dict):
        return args
    raise ProtocolError(f"{what}.args: expected [argsObject]")


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one frame; raises ProtocolError naming what is wrong."""
    if len(text) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(text)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("frame is not valid JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("frame must be a JSON object with a string 'type'")
    kind = obj["type"]
    if kind == "Connect":
        session_id = _str(obj, "sessionId", kind)
        assert session_id is not None
        if not 1 <= len(session_id) <= 128:
            raise ProtocolError("Connect.sessionId: must be 1-128 characters")
        max_observed = obj.get("maxObservedTimestamp")
        return Connect(
            session_id,
            _int(obj, "connectionCount", kind) if "connectionCount" in obj else 0,
            decode_ts(max_observed, "Connect.maxObservedTimestamp") if max_observed else None,
        )
    if kind == "ModifyQuerySet":
        raw_mods = obj.get("modifications")
        if not isinstance(raw_mods, list):
            raise ProtocolError("ModifyQuerySet.modifications: expected a list")
        mods: list[AddQuery | RemoveQuery] = []
        for i, mod in enumerate(raw_mods):
            where = f"ModifyQuerySet.modifications[{i}]"
            if not isinstance(mod, dict):
                raise ProtocolError(f"{where}: expected an object")
            if mod.get("type") == "Add":
                path = _str(mod, "udfPath", where)
                assert path is not None
                journal = mod.get("journal")
                if journal is not None and not isinstance(journal, str):
                    raise ProtocolError(f"{where}.journal: expected a string or null")
                mods.append(AddQuery(_int(mod, "queryId", where), path, _args(mod, where), journal))
            elif mod.get("type") == "Remove":
                mods.append(RemoveQuery(_int(mod, "queryId", where)))
            else:
                raise ProtocolError(f"{where}.type: expected 'Add' or 'Remove'")
        return ModifyQuerySet(
            _int(obj, "baseVersion", kind), _int(obj, "newVersion", kind), tuple(mods)
        )
    if kind in ("Mutation", "Action"):
        path = _str(obj, "udfPath", kind)
        assert path is not None
        return FunctionRequest(kind, _int(obj, "requestId", kind), path, _args(obj, kind))
    if kind == "Authenticate":
        token_type = obj.get("tokenType")
        if token_type not in ("Admin", "User", "None"):
            raise ProtocolError("Authenticate.tokenType: expected 'Admin', 'User' or 'None'")
        value = None if token_type == "None" else _str(obj, "value", kind)
        return Authenticate(_int(obj, "baseVersion", kind), token_type, value)
    if kind == "Event":
        return Event(str(obj.get("eventType", "")))
    raise ProtocolError(f"unknown message type {kind[:40]!r}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def version_json(query_set: int, identity: int, ts: int) -> str:
    return f'{{"querySet":{query_set},"identity":{identity},"ts":"{encode_ts(ts)}"}}'


def transition_frame(start: str, end: str, modifications: list[str]) -> str:
    return (
        f'{{"type":"Transition","startVersion":{start},"endVersion":{end},'
        f'"modifications":[{",".join(modifications)}]}}'
    )


def query_removed(query_id: int) -> str:
    return f'{{"type":"QueryRemoved","queryId":{query_id}}}'
