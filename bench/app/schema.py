"""Schema of the benchmark app: events indexed by key; ticks of scheduled jobs;
cursors stored as documents (the baseline of bench/presence.py)."""

from syncline import define_schema, define_table, v

schema = define_schema(
    {
        "events": define_table({"key": v.string(), "n": v.float64()}).index("by_key", ["key"]),
        "ticks": define_table(
            {"run": v.string(), "due": v.float64(), "started": v.float64()}
        ).index("by_run", ["run"]),
        "cursors": define_table({"room": v.string(), "member": v.string(), "state": v.any()}).index(
            "by_room_member", ["room", "member"]
        ),
    }
)
