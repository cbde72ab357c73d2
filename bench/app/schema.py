"""Schema of the benchmark app: events indexed by key; ticks of scheduled jobs."""

from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "events": define_table({"key": v.string(), "n": v.float64()}).index("by_key", ["key"]),
        "ticks": define_table(
            {"run": v.string(), "due": v.float64(), "started": v.float64()}
        ).index("by_run", ["run"]),
    }
)
