"""Shared text documents with versioned edits, merged on the server by OT.

A document's ``version`` counts the edits applied to it, and ``documentOps`` keeps each
edit under the version it produced. A client edits the text of the version it last saw
(``baseVersion``); ``apply_edit`` transforms the edit past everything applied since (see
``_ot``), so concurrent typists never lose each other's work to a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncline import mutation, query, v

from ._ot import InvalidOpError, Op, apply, diff, op_to_dict, parse_op, rebase
from ._shared import Doc, app_error, clean_name, limit_arg, load, now_ms, resolve_author
from .schema import EDIT_OP

# The query named ``list`` below shadows the builtin in this module.

MAX_TEXT_LENGTH = 100_000
MAX_TITLE_LENGTH = 200
#: An edit further behind than this is refused; the client reloads the document instead.
MAX_REBASE_OPS = 500
MAX_LISTED = 100
MAX_OPS_PER_READ = 500

EDIT_RESULT = v.object({"version": v.float64(), "text": v.string(), "transformedOp": EDIT_OP})


@mutation(
    args={"roomId": v.id("rooms"), "title": v.string(), "text": v.optional(v.string())},
    returns=v.id("documents"),
)
async def create(ctx: Any, roomId: str, title: str, text: str = "") -> str:
    """Create a document in a room, at version 0; returns its id."""
    await load(ctx, roomId, "room")
    _check_length(text)
    document = {
        "roomId": roomId,
        "title": clean_name(title, "document title", max_length=MAX_TITLE_LENGTH),
        "text": text,
        "version": 0.0,
        "updatedAt": now_ms(),
    }
    document_id: str = await ctx.db.insert("documents", document)
    return document_id


@query(args={"documentId": v.id("documents")})
async def get(ctx: Any, documentId: str) -> Any:
    """A document with its ``text`` and ``version``, or None."""
    return await ctx.db.get(documentId)


@query(args={"roomId": v.id("rooms"), "limit": v.optional(v.float64())})
async def list(ctx: Any, roomId: str, limit: float | None = None) -> Any:
    """A room's documents, oldest first (at most ``limit``, default and cap 100)."""
    count = limit_arg(limit, default=MAX_LISTED, maximum=MAX_LISTED)
    return (
        await ctx.db.query("documents")
        .with_index("by_room", lambda q: q.eq("roomId", roomId))
        .take(count)
    )


@query(
    args={
        "documentId": v.id("documents"),
        "afterVersion": v.float64(),
        "limit": v.optional(v.float64()),
    }
)
async def ops_since(
    ctx: Any, documentId: str, afterVersion: float, limit: float | None = None
) -> Any:
    """The edits that made versions after ``afterVersion``, in order: a client that
    keeps its own copy of the text catches up with them."""
    count = limit_arg(limit, default=MAX_OPS_PER_READ, maximum=MAX_OPS_PER_READ)
    return await _ops_after(ctx, documentId, afterVersion).take(count)


@mutation(
    args={
        "documentId": v.id("documents"),
        "baseVersion": v.float64(),
        "op": EDIT_OP,
        "authorId": v.optional(v.id("users")),
    },
    returns=EDIT_RESULT,
)
async def apply_edit(
    ctx: Any, documentId: str, baseVersion: float, op: Doc, authorId: str | None = None
) -> Doc:
    """Apply an edit made on version ``baseVersion`` of the text.

    An edit made on an older version is first transformed past the edits applied
    since. Returns the new ``version`` and ``text`` and the edit as applied
    (``transformedOp``); an edit that became empty creates no version.

    Errors: ``VERSION_CONFLICT`` if ``baseVersion`` is ahead of the document or too far
    behind it; ``INVALID_OP`` if the edit is malformed or, once transformed, does not
    fit the text; ``DOCUMENT_TOO_LARGE`` past 100,000 characters.
    """
    document = await load(ctx, documentId, "document")
    author = await resolve_author(ctx, authorId)
    edit = _parse(op)
    base = _version_arg(baseVersion, "baseVersion")
    current = int(document["version"])
    if base > current:
        raise _conflict(document, "baseVersion is ahead of the document", baseVersion=base)
    if current - base > MAX_REBASE_OPS:
        raise _conflict(
            document, "the edit is too far behind; reload the document", baseVersion=base
        )

    transformed = rebase(edit, await _history(ctx, document, base))
    try:
        text = apply(document["text"], transformed)
    except InvalidOpError as exc:
        raise app_error(
            "INVALID_OP",
            str(exc),
            op=op,
            transformedOp=op_to_dict(transformed),
            baseVersion=float(base),
            currentVersion=float(current),
        ) from exc
    _check_length(text)
    version = current
    if not transformed.is_noop:
        version = await _commit(ctx, document, [transformed], text, author)
    return {"version": float(version), "text": text, "transformedOp": op_to_dict(transformed)}


@mutation(
    args={
        "documentId": v.id("documents"),
        "expectedVersion": v.float64(),
        "text": v.string(),
        "authorId": v.optional(v.id("users")),
    },
    returns=v.float64(),
)
async def replace_text(
    ctx: Any, documentId: str, expectedVersion: float, text: str, authorId: str | None = None
) -> float:
    """Set the whole text if the document is still at ``expectedVersion`` (compare and
    set); returns the new version.

    Otherwise ``VERSION_CONFLICT`` carries ``currentVersion``. The change is recorded
    as the smallest delete and insert between the old and new text, so concurrent
    ``apply_edit`` calls still transform past it; the version grows by one per edit.
    """
    document = await load(ctx, documentId, "document")
    author = await resolve_author(ctx, authorId)
    expected = _version_arg(expectedVersion, "expectedVersion")
    if expected != int(document["version"]):
        raise _conflict(
            document, "the document changed since expectedVersion", expectedVersion=expected
        )
    _check_length(text)
    edits = diff(document["text"], text)
    if not edits:
        return float(expected)
    return float(await _commit(ctx, document, edits, text, author))


def _ops_after(ctx: Any, document_id: str, version: float) -> Any:
    """A query over a document's edits after ``version``, in version order."""
    return ctx.db.query("documentOps").with_index(
        "by_document_version",
        lambda q: q.eq("documentId", document_id).gt("version", float(version)),
    )


async def _history(ctx: Any, document: Doc, base: int) -> Sequence[Op]:
    """The edits that turned version ``base`` into the current text, in order."""
    missing = int(document["version"]) - base
    if missing == 0:
        return ()
    rows = await _ops_after(ctx, document["_id"], base).take(missing)
    if [int(row["version"]) for row in rows] != [*range(base + 1, base + missing + 1)]:
        raise _conflict(
            document, "the edit history since baseVersion is incomplete", baseVersion=base
        )
    return [parse_op(row["op"]) for row in rows]


async def _commit(
    ctx: Any, document: Doc, edits: Sequence[Op], text: str, author: str | None
) -> int:
    """Record ``edits`` as the next versions and store ``text``; returns the last version."""
    version = int(document["version"])
    timestamp = now_ms()
    for edit in edits:
        version += 1
        record: Doc = {
            "documentId": document["_id"],
            "version": float(version),
            "op": op_to_dict(edit),
            "timestamp": timestamp,
        }
        if author is not None:
            record["authorId"] = author
        await ctx.db.insert("documentOps", record)
    await ctx.db.patch(
        document["_id"], {"text": text, "version": float(version), "updatedAt": timestamp}
    )
    return version


def _parse(op: Doc) -> Op:
    try:
        return parse_op(op)
    except InvalidOpError as exc:
        raise app_error("INVALID_OP", str(exc), op=op) from exc


def _version_arg(value: float, field: str) -> int:
    """A version sent as a JS number: a whole number, at least 0."""
    if not (value >= 0 and float(value).is_integer()):
        raise app_error("INVALID_ARGUMENT", f"{field} must be a whole number >= 0", field=field)
    return int(value)


def _conflict(document: Doc, reason: str, **client_versions: int) -> Exception:
    """``VERSION_CONFLICT`` with the document's version and the one the client sent."""
    return app_error(
        "VERSION_CONFLICT",
        reason,
        documentId=document["_id"],
        currentVersion=float(document["version"]),
        **{name: float(version) for name, version in client_versions.items()},
    )


def _check_length(text: str) -> None:
    if len(text) > MAX_TEXT_LENGTH:
        raise app_error(
            "DOCUMENT_TOO_LARGE",
            f"a document has at most {MAX_TEXT_LENGTH} characters, this one {len(text)}",
            maxLength=float(MAX_TEXT_LENGTH),
        )
