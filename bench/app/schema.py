"""Schema of the benchmark app: one table indexed by key."""

from syncline import define_schema, define_table, v

schema = define_schema(
    {"events": define_table({"key": v.string(), "n": v.float64()}).index("by_key", ["key"])}
)
