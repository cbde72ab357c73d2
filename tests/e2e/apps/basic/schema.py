from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "counters": define_table({"name": v.string(), "value": v.float64()}).index(
            "by_name", ["name"]
        ),
        "notes": define_table(
            {"author": v.string(), "body": v.string(), "tags": v.optional(v.array(v.string()))}
        ).index("by_author", ["author"]),
        "blobs": define_table({"payload": v.any()}),
        "reminders": define_table({"text": v.string()}),
    }
)
