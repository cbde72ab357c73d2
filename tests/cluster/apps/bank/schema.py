from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "accounts": define_table({"name": v.string(), "balance": v.float64()}).index(
            "by_name", ["name"]
        ),
        "counters": define_table({"name": v.string(), "value": v.float64()}).index(
            "by_name", ["name"]
        ),
        "events": define_table({"key": v.string()}),
        "hits": define_table({"key": v.string(), "n": v.float64()}).index("by_key", ["key"]),
    }
)
