"""The collab app's tables.

Author fields are optional: a caller who neither signs in nor names a user acts
anonymously, which keeps the app easy to drive from ``syncline run``.
"""

from syncline import define_schema, define_table, v

#: A user's presence status.
USER_STATUS = v.union(v.literal("online"), v.literal("away"), v.literal("offline"))

#: One text edit. Positions count code points; numbers are float64 because clients
#: send JS numbers. ``_ot.parse_op`` checks that they are whole and non-negative.
EDIT_OP = v.union(
    v.object({"type": v.literal("insert"), "pos": v.float64(), "text": v.string()}),
    v.object({"type": v.literal("delete"), "pos": v.float64(), "length": v.float64()}),
)

schema = define_schema(
    {
        "users": define_table(
            {
                "name": v.string(),
                "status": USER_STATUS,
                "lastSeen": v.float64(),
                # Set when the user joined while signed in; only that identity may act as them.
                "tokenIdentifier": v.optional(v.string()),
            }
        )
        .index("by_name", ["name"])
        .index("by_token", ["tokenIdentifier"])
        .index("by_status_last_seen", ["status", "lastSeen"]),
        "rooms": define_table(
            {
                "name": v.string(),
                "createdBy": v.optional(v.id("users")),
                "createdAt": v.float64(),
            }
        ).index("by_name", ["name"]),
        "messages": define_table(
            {
                "roomId": v.id("rooms"),
                "authorId": v.optional(v.id("users")),
                "body": v.string(),
                "timestamp": v.float64(),
            }
        ).index("by_room_timestamp", ["roomId", "timestamp"]),
        "documents": define_table(
            {
                "roomId": v.id("rooms"),
                "title": v.string(),
                "text": v.string(),
                # Number of edits applied; each edit in documentOps carries the version it made.
                "version": v.float64(),
                "updatedAt": v.float64(),
            }
        ).index("by_room", ["roomId"]),
        "documentOps": define_table(
            {
                "documentId": v.id("documents"),
                "version": v.float64(),
                "op": EDIT_OP,
                "authorId": v.optional(v.id("users")),
                "timestamp": v.float64(),
            }
        ).index("by_document_version", ["documentId", "version"]),
    }
)
